"""arm64 kernel page tables (TTBR1): 4, 16 or 64 KiB granules, 36- to 52-bit virtual addresses.

The geometry follows from the granule (VMCOREINFO `PAGESIZE`) and the virtual-address size the MMU
uses (`NUMBER(TCR_EL1_T1SZ)`: 64 - T1SZ; kernels before 5.12 do not export it, and use
`NUMBER(VA_BITS)`): each level indexes granule_shift - 3 bits, the top level what is left. The
top table is `SYMBOL(swapper_pg_dir)`, a kernel-image symbol: physical = virtual -
`NUMBER(kimage_voffset)`.

What a kernel built for 52 bits does on a CPU without them (arch/arm64/include/asm/assembler.h,
offset_ttbr1; pgtable.h, pgtable_l4_enabled): with 64 KiB pages TTBR1 points into swapper_pg_dir
at TTBR1_BADDR_4852_OFFSET, the last 64 of its 1,024 entries; with 4 or 16 KiB pages (LPA2) the
top level is folded away and swapper_pg_dir is walked as the 48- (or 47-) bit top table.

Descriptors (Arm ARM D8.3): bit 0 valid; above the last level bit 1 set is a table, clear a
block (only at the levels that allow blocks); at the last level bits 1:0 = 0b11 is a page. The
output address is bits 49..granule; with 64 KiB pages bits 15:12 hold address bits 51:48 (LPA);
with 4/16 KiB pages and 52-bit addressing (LPA2, TCR.DS=1) bits 9:8 hold bits 51:50 (and are the
shareability field otherwise, so they are read as address only then).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from .paging import Kind, Paging, TopTable, ones_above

GRANULES = (12, 14, 16)  # 4, 16 and 64 KiB
_ADDRESS_LOW = (1 << 50) - 1  # bits 49..0; the granule's offset bits are cleared per entry
_VALID = 1
_TABLE_OR_PAGE = 2
_MAX_VA_BITS = 52


@dataclass(frozen=True)
class Arm64Paging(Paging):
    granule_shift: int  # 12, 14 or 16
    va_bits_: int  # what the MMU translates: 64 - TCR_EL1.T1SZ

    arch: ClassVar[str] = "arm64"

    def __post_init__(self) -> None:
        if self.granule_shift not in GRANULES:
            raise ValueError(f"unsupported arm64 granule 2**{self.granule_shift}")
        if not self.granule_shift + (self.granule_shift - 3) < self.va_bits_ <= _MAX_VA_BITS:
            raise ValueError(f"unsupported arm64 virtual-address size {self.va_bits_}")

    @cached_property
    def shifts(self) -> tuple[int, ...]:
        stride = self.granule_shift - 3
        levels = -(-(self.va_bits_ - self.granule_shift) // stride)
        return tuple(self.granule_shift + stride * (levels - 1 - depth) for depth in range(levels))

    @cached_property
    def va_bits(self) -> int:
        return self.va_bits_

    @cached_property
    def lpa2(self) -> bool:
        """52-bit output addresses in 4/16 KiB descriptors: only a 52-bit VA kernel turns it on."""
        return self.granule_shift != 16 and self.va_bits_ == _MAX_VA_BITS

    @cached_property
    def block_shifts(self) -> frozenset[int]:
        """The block sizes a level may map (Arm ARM D8.2: 1 GiB and 2 MiB with 4 KiB, 32 MiB with
        16 KiB, 512 MiB with 64 KiB; one level more with 52-bit addresses)."""
        return frozenset({12: (30, 21, 39) if self.lpa2 else (30, 21), 14: (25, 36) if self.lpa2 else (25,),
                          16: (29, 42)}[self.granule_shift])

    def kernel_entries(self) -> range:
        return range(self.entries(0))  # TTBR1's tables map the kernel half only

    def kernel_vaddr(self, bits: int) -> int:
        return ones_above(bits, self.va_bits_)

    def decode(self, entry: int, depth: int) -> tuple[Kind, int]:
        if not entry & _VALID:
            return Kind.ABSENT, 0
        last = depth == len(self.shifts) - 1
        if entry & _TABLE_OR_PAGE:
            return (Kind.LEAF if last else Kind.TABLE), self._address(entry, self.granule_shift)
        shift = self.shifts[depth]
        if last or shift not in self.block_shifts:
            return Kind.RESERVED, 0
        return Kind.LEAF, self._address(entry, shift)

    def _address(self, entry: int, shift: int) -> int:
        address = entry & _ADDRESS_LOW & ~((1 << shift) - 1)
        if self.granule_shift == 16:
            address |= (entry >> 12 & 0xF) << 48
        elif self.lpa2:
            address |= (entry >> 8 & 0x3) << 50
        return address

    def level_name(self, depth: int) -> str:
        return f"level {4 - len(self.shifts) + depth}"  # the Arm ARM counts up to level 3, the last

    def describe(self) -> str:
        return f"arm64 {1 << self.granule_shift >> 10} KiB granule, {self.va_bits_}-bit VA, {self.levels}-level"


def vmcoreinfo_table(info: dict[str, str]) -> TopTable | None:
    """swapper_pg_dir from an arm64 kernel's VMCOREINFO, or None when it is not one's or lacks a field."""
    try:
        vaddr = int(info["SYMBOL(swapper_pg_dir)"], 16)
        voffset = int(info["NUMBER(kimage_voffset)"], 16)
        granule_shift = int(info.get("PAGESIZE", "4096"), 10).bit_length() - 1
        configured = int(info["NUMBER(VA_BITS)"], 10)
        t1sz = info.get("NUMBER(TCR_EL1_T1SZ)")
        actual = 64 - int(t1sz, 16) if t1sz is not None else configured
        paging = Arm64Paging(granule_shift, actual)
    except (KeyError, ValueError):
        return None
    paddr = vaddr - voffset
    if paddr < 0 or paddr % 64:  # a TTBR's base is at least 64-byte aligned
        return None
    if granule_shift == 16 and configured == _MAX_VA_BITS and actual == 48:
        paddr += ((1 << (_MAX_VA_BITS - paging.shifts[0])) - paging.entries(0)) * 8  # TTBR1_BADDR_4852_OFFSET
    return TopTable(paddr, paging, "VMCOREINFO swapper_pg_dir", voffset)
