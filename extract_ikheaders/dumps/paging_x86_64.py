"""x86_64 kernel page tables: 4 or 5 levels of 512 entries, 1 GiB / 2 MiB / 4 KiB pages.

The top table comes from the per-CPU "QEMU" note of QEMU dump-guest-memory files (QEMUCPUState:
CR3, and CR4 whose bit 12, LA57, means 5-level paging), else from VMCOREINFO
(`SYMBOL(init_top_pgt)`, `NUMBER(phys_base)`, `NUMBER(pgtable_l5_enabled)`; physical = virtual -
__START_KERNEL_map + phys_base). The kernel image is mapped with 2 MiB pages from
__START_KERNEL_map; modules with 4 KiB pages above it.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from .paging import Kind, Miss, PageTables, Paging, Run, TopTable, sign_extended

PAGE = 4096
START_KERNEL_MAP = 0xFFFFFFFF80000000  # __START_KERNEL_map
ADDR_MASK = 0x000F_FFFF_FFFF_F000  # physical address bits 12..51 of an entry
PRESENT = 1 << 0
PAGE_SIZE_BIT = 1 << 7  # PS: a 1 GiB (PUD) or 2 MiB (PMD) leaf
CR4_LA57 = 1 << 12
CR3_ADDR_MASK = 0x000F_FFFF_FFFF_F000  # CR3 bits 12..51 (the low bits are PCID/flags)
_QEMU_CR_OFFSET = 392  # QEMUCPUState: version, size, 18 u64 registers, 10 x 24-byte segments, cr[5]
_QEMU_MIN_SIZE = _QEMU_CR_OFFSET + 5 * 8
_LARGE = 2 << 20
_IMAGE_SPACE = 1 << 30  # KERNEL_IMAGE_SIZE with KASLR: the image lies in the first GiB above __START_KERNEL_map


@dataclass(frozen=True)
class X86_64Paging(Paging):
    levels_: int  # 4 or 5

    arch: ClassVar[str] = "x86_64"

    def __post_init__(self) -> None:
        if self.levels_ not in (4, 5):
            raise ValueError(f"unsupported paging depth {self.levels_}")

    @cached_property
    def shifts(self) -> tuple[int, ...]:
        return (48, 39, 30, 21, 12) if self.levels_ == 5 else (39, 30, 21, 12)

    @cached_property
    def va_bits(self) -> int:
        return self.shifts[0] + 9

    def kernel_entries(self) -> range:
        return range(256, 512)  # the top table's lower half maps user space

    def kernel_vaddr(self, bits: int) -> int:
        return sign_extended(bits, self.va_bits)

    def decode(self, entry: int, depth: int) -> tuple[Kind, int]:
        if not entry & PRESENT:
            return Kind.ABSENT, 0
        shift = self.shifts[depth]
        if shift == 12:
            return Kind.LEAF, entry & ADDR_MASK
        if not entry & PAGE_SIZE_BIT:
            return Kind.TABLE, entry & ADDR_MASK
        if shift in (21, 30):  # large pages: bit 12 is PAT, not address
            return Kind.LEAF, entry & ADDR_MASK & ~((1 << shift) - 1)
        return Kind.RESERVED, 0

    def level_name(self, depth: int) -> str:
        return f"level-{self.levels_ - depth}"

    def describe(self) -> str:
        return f"{self.levels_}-level"


def qemu_cr3_tables(notes: list[tuple[str, bytes]], image_delta: int | None = None) -> list[TopTable]:
    """One TopTable per CPU whose QEMU note holds a plausible long-mode CR3."""
    tables = []
    cpus = [desc for name, desc in notes if name == "QEMU"]
    for cpu, desc in enumerate(cpus):
        if len(desc) < _QEMU_MIN_SIZE:
            continue
        version, size = struct.unpack_from("<II", desc, 0)
        if version != 1 or size < _QEMU_MIN_SIZE:
            continue
        cr0, _, _, cr3, cr4 = struct.unpack_from("<5Q", desc, _QEMU_CR_OFFSET)
        if not cr0 & (1 << 31) or not cr4 & (1 << 5):  # paging and PAE: long mode
            continue
        paging = X86_64Paging(5 if cr4 & CR4_LA57 else 4)
        tables.append(TopTable(cr3 & CR3_ADDR_MASK, paging, f"CR3 from QEMU note (CPU {cpu})", image_delta))
    return tables


def vmcoreinfo_table(info: dict[str, str]) -> TopTable | None:
    """init_top_pgt's physical address from an x86_64 kernel's VMCOREINFO, or None."""
    try:
        vaddr = int(info["SYMBOL(init_top_pgt)"], 16)
        phys_base = int(info["NUMBER(phys_base)"], 0)
        levels = 5 if int(info.get("NUMBER(pgtable_l5_enabled)", "0"), 0) else 4
    except (KeyError, ValueError):
        return None
    paddr = vaddr - START_KERNEL_MAP + phys_base
    if vaddr < START_KERNEL_MAP or paddr < 0 or paddr % PAGE:
        return None
    return TopTable(paddr, X86_64Paging(levels), "VMCOREINFO init_top_pgt", START_KERNEL_MAP - phys_base)


def image_delta(info: dict[str, str]) -> int | None:
    """The kernel image's virtual-physical offset from VMCOREINFO's phys_base, or None."""
    try:
        return START_KERNEL_MAP - int(info["NUMBER(phys_base)"], 0)
    except (KeyError, ValueError):
        return None


def guess_image_delta(leaves: list[Run]) -> int | None:
    """The kernel image's offset without VMCOREINFO: it is mapped with 2 MiB pages (level2_kernel_pgt),
    modules with 4 KiB pages, so the large pages above __START_KERNEL_map decide."""
    high = [leaf for leaf in leaves if leaf.vaddr >= START_KERNEL_MAP]
    large = [leaf for leaf in high if leaf.size > PAGE]
    weights: Counter[int] = Counter()
    for run in large or high:
        weights[run.delta] += run.size
    return weights.most_common(1)[0][0] if weights else None


def image_vaddr(tables: PageTables, paddr: int) -> int | None:
    """The kernel-image virtual address (__START_KERNEL_map and up) of physical `paddr`, or None.
    The image is mapped with 2 MiB pages there (level2_kernel_pgt): at most 512 lookups."""
    page = paddr - paddr % _LARGE
    for vaddr in range(START_KERNEL_MAP, START_KERNEL_MAP + _IMAGE_SPACE, _LARGE):
        mapped = tables.translate(vaddr)
        if not isinstance(mapped, Miss) and mapped - mapped % _LARGE == page:
            return paddr + vaddr - mapped
    return None
