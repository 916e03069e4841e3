"""ELF cores as physical memory: kdump's /proc/vmcore copy, QEMU dump-guest-memory, makedumpfile -E.

PT_LOAD segments carry physical memory at p_paddr: p_filesz bytes at p_offset; a p_memsz beyond
p_filesz is memory the dump left out (makedumpfile's excluded pages), not zeros. PT_NOTE holds
VMCOREINFO (kdump; QEMU too when the guest registered it through -device vmcoreinfo).
"""

from __future__ import annotations

import bisect

from ..errors import Damaged, NotMine
from ..memory import DumpInfo, Extent, Gap, MappedMemory, parse_vmcoreinfo
from ..xzstream import Buffer
from .elf import ELF_MAGIC, PT_LOAD, CorruptElf, ElfImage, ElfType, Segment


def open(buf: Buffer) -> MappedMemory:
    """The core's physical memory; NotMine unless `buf` is an ELF ET_CORE."""
    if len(buf) < 64 or bytes(buf[:4]) != ELF_MAGIC:
        raise NotMine("not ELF")
    try:
        elf = ElfImage(buf)
    except CorruptElf:
        raise NotMine("not a usable ELF header") from None  # the caller's raw search may still help
    if elf.type != ElfType.CORE:
        raise NotMine("ELF, but not a core")
    try:
        loads = [s for s in elf.segments() if s.type == PT_LOAD]
    except CorruptElf as exc:
        raise Damaged(f"the ELF core's program headers are unusable: {exc}") from None
    try:
        notes = elf.notes()
    except CorruptElf:
        notes = ()  # VMCOREINFO is only a hint (search order, release): do without it
    vmcoreinfo = next((parse_vmcoreinfo(n.desc) for n in notes if n.name == "VMCOREINFO"), {})
    extents = [Extent(s.paddr, _present(s, len(buf)), s.offset) for s in loads]
    info = DumpInfo("elf-core", _detail(elf, loads, {n.name for n in notes}, vmcoreinfo), vmcoreinfo)
    return MappedMemory(buf, extents, info, _Explainer(loads, len(buf)))


def _present(seg: Segment, file_size: int) -> int:
    """Bytes of the segment that are really in the file (a truncated dump ends early)."""
    if seg.offset >= file_size:
        return 0
    return max(0, min(seg.filesz, seg.memsz or seg.filesz, file_size - seg.offset))


def _detail(elf: ElfImage, loads: list[Segment], note_names: set[str], vmcoreinfo: dict[str, str]) -> str:
    origin = "QEMU dump-guest-memory, " if "QEMU" in note_names else ""
    extra = "VMCOREINFO" if vmcoreinfo else "no VMCOREINFO"
    return f"{origin}{elf.describe()}, {len(loads)} PT_LOAD, {extra}"


class _Explainer:
    """Why a physical address is absent: the messages name the segment and the cause."""

    def __init__(self, loads: list[Segment], file_size: int) -> None:
        self._loads = sorted(loads, key=lambda s: s.paddr)
        self._file_size = file_size

    def __call__(self, paddr: int) -> Gap:
        for seg in self._loads:
            if not seg.paddr <= paddr < seg.paddr + max(seg.memsz, seg.filesz):
                continue
            if seg.offset + seg.filesz > self._file_size and paddr < seg.paddr + seg.filesz:
                return Gap(paddr, seg.paddr + seg.filesz,
                           f"the file ends at {self._file_size:#x}, inside the PT_LOAD for "
                           f"{seg.paddr:#x}-{seg.paddr + seg.filesz - 1:#x}: the dump is truncated")
            return Gap(paddr, seg.paddr + seg.memsz,
                       f"beyond p_filesz of the PT_LOAD at {seg.paddr:#x}: pages the dump excluded")
        starts = [s.paddr for s in self._loads]
        i = bisect.bisect_right(starts, paddr)
        return Gap(paddr, self._loads[i].paddr if i < len(self._loads) else None, "no PT_LOAD covers it")
