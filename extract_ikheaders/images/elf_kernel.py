"""An ELF kernel: a vmlinux (ET_EXEC/ET_DYN) or a kernel module such as kheaders.ko (ET_REL).

The layer is searched by its symbols first (archive/locate.py); a module's release comes from its
.modinfo vermagic. A core file is a dump, read by dumps/, never peeled here.
"""

from __future__ import annotations

import re

from .. import imagetext
from ..buffer import Buffer
from ..elf.reader import ELF_MAGIC, CorruptElf, ElfImage, ElfType
from ..errors import NotFound
from ..model import Layer
from .peeler import Format, Peeled

_VERMAGIC = re.compile(rb"vermagic=(\d+\.\d+[^\s\x00]*)")


def is_elf(data: Buffer) -> bool:
    return bytes(data[:4]) == ELF_MAGIC


def peel(data: Buffer, path: str) -> Peeled:
    try:
        elf = ElfImage(data)
        if elf.type == ElfType.CORE:
            raise NotFound("an ELF core file inside a container is not searched; give the core itself", path=path)
        layer = Layer("elf", 0, len(data), elf.describe())
        release = module_release(elf) if elf.type == ElfType.REL else None
        elf.sections()  # parse now: a corrupt table should fail here, not halfway through a search
    except CorruptElf as exc:
        # A broken ELF may still hold an intact archive: search its raw bytes.
        return Peeled((), data=data, notes=(f"ELF structures unusable ({exc}); searched raw bytes",))
    return Peeled((layer,), data=data, elf=elf, release=release)


def module_release(elf: ElfImage) -> str | None:
    """The release a module was built for (.modinfo vermagic=)."""
    section = elf.section(".modinfo")
    if section is None:
        return None
    match = _VERMAGIC.search(elf.section_bytes(section))
    return imagetext.decode(match.group(1)) if match else None


FORMAT = Format("elf", is_elf, peel)  # a vmlinux or a kernel module
