"""Which architecture, word size and byte order an image is for, from the first thing that says so.

In order: an ELF header (e_machine, EI_CLASS, EI_DATA), a boot image's own header (x86 bzImage,
ARM zImage, arm64/riscv Image, s390 bzImage, the PE header of an EFI zboot image) and, when
nothing outside says it (raw memory, a bare archive), the archive itself: arch/<arch>/include
names the architecture and include/generated/autoconf.h the rest. Architecture names are the
kernel's own (ARCH=/SRCARCH: x86, arm, arm64, riscv, s390, powerpc, ...), so they match the
archive's arch/<arch>/ directory.
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING

from . import lazy
from .buffer import Buffer
from .elf.reader import ELF_MAGIC, MACHINES
from .model import Platform, uname_platform

if TYPE_CHECKING:  # read only for an image without an ELF header; loaded then (lazy.py)
    from .images import arm64_image, armzimage, bzimage, s390
else:
    arm64_image = lazy.module("extract_ikheaders.images.arm64_image")
    armzimage = lazy.module("extract_ikheaders.images.armzimage")
    bzimage = lazy.module("extract_ikheaders.images.bzimage")
    s390 = lazy.module("extract_ikheaders.images.s390")

# PE/COFF machine -> (architecture, bits); PE images are little-endian throughout.
PE_MACHINES = {0x14C: ("x86", 32), 0x8664: ("x86", 64), 0x1C0: ("arm", 32), 0x1C2: ("arm", 32), 0x1C4: ("arm", 32),
               0xAA64: ("arm64", 64), 0x5032: ("riscv", 32), 0x5064: ("riscv", 64), 0x6232: ("loongarch", 32),
               0x6264: ("loongarch", 64)}

# Architectures with one byte order; the others (arm, arm64, powerpc, mips, sh) say it in CONFIG_CPU_*_ENDIAN.
FIXED_ENDIAN = {"x86": "little", "riscv": "little", "loongarch": "little", "ia64": "little", "s390": "big",
                "sparc": "big", "parisc": "big"}

ARM_ZIMAGE_ENDIAN_AT = 0x30  # .word 0x04030201, in the kernel's byte order
X86_XLOADFLAGS = 0x236
X86_XLF_KERNEL_64 = 1
PE_OFFSET_AT = 0x3C
_ARCH_DIR = re.compile(r"^\./arch/([^/\x00]+)/")


def from_elf_header(buf: Buffer, source: str = "ELF header") -> Platform | None:
    """From e_machine, EI_CLASS and EI_DATA (the header alone: works on damaged files too)."""
    head = bytes(buf[:20])
    if len(head) < 20 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    known = MACHINES.get(machine)
    arch = known[1] if known else f"machine {machine}"
    return Platform(arch, "little" if head[5] == 1 else "big", 32 if head[4] == 1 else 64, source)


def from_image(buf: Buffer) -> Platform | None:
    """From a boot image's header: ARM zImage, arm64/riscv Image, s390 and x86 bzImage, PE (zboot)."""
    for probe in (_arm_zimage, _arm64_image, _riscv_image, _s390_bzimage, _x86_bzimage, _pe):
        found = probe(buf)
        if found is not None:
            return found
    return None


def _u32(buf: Buffer, offset: int, order: str = "<") -> int | None:
    raw = bytes(buf[offset : offset + 4])
    return int(struct.unpack(f"{order}I", raw)[0]) if len(raw) == 4 else None


def _arm_zimage(buf: Buffer) -> Platform | None:
    # The magic is stored little-endian even in big-endian zImages (head.S's `.word _magic_sig`
    # is byte-swapped by the ARM_BE8 macro); the 0x04030201 word that follows is not.

    if not armzimage.is_zimage(buf):
        return None
    endian = "big" if _u32(buf, ARM_ZIMAGE_ENDIAN_AT) == 0x01020304 else "little"
    return Platform("arm", endian, 32, "ARM zImage header")


def _arm64_image(buf: Buffer) -> Platform | None:
    if not arm64_image.is_arm64_image(buf):
        return None
    flags = int.from_bytes(bytes(buf[0x18:0x20]), "little")
    image_size = int.from_bytes(bytes(buf[0x10:0x18]), "little")
    # Before 3.17 (image_size 0) the flags field did not exist and such kernels were little-endian.
    endian = "big" if image_size and flags & 1 else "little"
    return Platform("arm64", endian, 64, "arm64 Image header")


def _riscv_image(buf: Buffer) -> Platform | None:
    if not arm64_image.is_riscv_image(buf):
        return None
    pe = _pe(buf)
    bits = pe.bits if pe is not None else None
    return Platform("riscv", "little", bits, "riscv Image header" + (" and PE machine" if bits else ""))


def _s390_bzimage(buf: Buffer) -> Platform | None:
    if not s390.is_s390_bzimage(buf):
        return None
    return Platform("s390", "big", 64, "s390 bzImage (S390EP)")


def _x86_bzimage(buf: Buffer) -> Platform | None:
    # Both the boot flag and "HdrS" (bzimage.is_bzimage takes either): the flags below must be real.
    flag = int.from_bytes(bytes(buf[bzimage.BOOT_FLAG : bzimage.BOOT_FLAG + 2]), "little")
    if flag != bzimage.BOOT_FLAG_MAGIC or bytes(buf[bzimage.HEADER : bzimage.HEADER + 4]) != bzimage.HEADER_MAGIC:
        return None
    flags = bytes(buf[X86_XLOADFLAGS : X86_XLOADFLAGS + 2])
    bits = 64 if len(flags) == 2 and flags[0] & X86_XLF_KERNEL_64 else None
    return Platform("x86", "little", bits, "x86 bzImage header")


def _pe(buf: Buffer) -> Platform | None:
    if bytes(buf[:2]) != b"MZ":
        return None
    pe_at = _u32(buf, PE_OFFSET_AT)
    if pe_at is None or bytes(buf[pe_at : pe_at + 4]) != b"PE\0\0":
        return None
    machine = int.from_bytes(bytes(buf[pe_at + 4 : pe_at + 6]), "little")
    if machine not in PE_MACHINES:
        return None
    arch, bits = PE_MACHINES[machine]
    return Platform(arch, "little", bits, "PE header")


def from_archive(members: list[str], autoconf: bytes | None) -> Platform | None:
    """From the archive: arch/<arch>/include names it, autoconf.h says the word size and byte order."""
    arch = next((m.group(1) for name in members if (m := _ARCH_DIR.match(name))), None)
    if arch is None:
        return None
    defined = None if autoconf is None else set(re.findall(rb"^#define CONFIG_([A-Z0-9_]+) 1$", autoconf, re.M))
    return _from_options(arch, defined, "the archive's arch/ and autoconf.h")


def from_config(arch: str, config: bytes) -> Platform:
    """From a .config: the architecture its title names, CONFIG_64BIT and CONFIG_CPU_BIG_ENDIAN."""
    defined = set(re.findall(rb"^CONFIG_([A-Z0-9_]+)=y$", config, re.M))
    return _from_options(arch, defined, ".config")


def _from_options(arch: str, defined: set[bytes] | None, source: str) -> Platform:
    endian = FIXED_ENDIAN.get(arch)
    if endian is None and defined is not None:
        endian = "big" if b"CPU_BIG_ENDIAN" in defined else "little"
    bits = (64 if b"64BIT" in defined else 32) if defined is not None else None
    return Platform(arch, endian, bits, source)


# makedumpfile's disk_dump_header: signature[8], header_version, then struct new_utsname (6 x 65
# bytes); utsname.machine is the 5th field.
KDUMP_SIGNATURE = b"KDUMP   "
KDUMP_MACHINE_AT = 8 + 4 + 4 * 65
UTS_FIELD = 65


def from_dump_header(buf: Buffer) -> Platform | None:
    """From an ELF core's header, or a kdump-compressed dump's utsname.machine."""
    found = from_elf_header(buf, "ELF core header")
    if found is not None or bytes(buf[: len(KDUMP_SIGNATURE)]) != KDUMP_SIGNATURE:
        return found
    raw = bytes(buf[KDUMP_MACHINE_AT : KDUMP_MACHINE_AT + UTS_FIELD]).split(b"\0", 1)[0]
    machine = raw.decode("ascii", errors="replace")
    return uname_platform(machine, f"kdump header (machine {machine})")
