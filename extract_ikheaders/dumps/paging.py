"""A kernel's page tables read from a dump's physical memory, whatever the architecture.

`PageTables` walks and translates; a `Paging` says what one architecture's tables look like: the
index bits of each level, which top-level entries map the kernel half, and how an entry reads
(absent, a next-level table, a leaf page or block, or reserved). `paging_x86_64` and
`paging_arm64` are the two there are. Every entry is read bounds-checked from the dump; a walk
reads at most `MAX_TABLES` tables, so tables that point back at each other cannot make it endless.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from .physical import PhysicalMemory

_TABLE_CACHE = 256  # tables kept while translating (the walk itself caches nothing)
MAX_TABLES = 1 << 18  # tables one walk reads at most: 1 GiB of 4 KiB tables, a 512 GiB machine
_ALL_ONES = (1 << 64) - 1


class Kind(Enum):
    ABSENT = "absent"
    TABLE = "table"
    LEAF = "leaf"
    RESERVED = "reserved"


class Paging(ABC):
    """One architecture's kernel page-table format: the geometry and how an entry reads."""

    arch: ClassVar[str]

    @property
    @abstractmethod
    def shifts(self) -> tuple[int, ...]:
        """The lowest virtual-address bit each level indexes, top level first."""

    @property
    @abstractmethod
    def va_bits(self) -> int:
        """The virtual-address bits the top level's index ends at."""

    @property
    def levels(self) -> int:
        return len(self.shifts)

    @property
    def page(self) -> int:
        return 1 << self.shifts[-1]

    def entries(self, depth: int) -> int:
        """How many entries a table at `depth` (0 = top) has."""
        upper = self.va_bits if depth == 0 else self.shifts[depth - 1]
        return 1 << (upper - self.shifts[depth])

    @abstractmethod
    def kernel_entries(self) -> range:
        """The top-level entries that map the kernel half."""

    @abstractmethod
    def kernel_vaddr(self, bits: int) -> int:
        """The kernel-half virtual address whose low `va_bits` bits are `bits`."""

    @abstractmethod
    def decode(self, entry: int, depth: int) -> tuple[Kind, int]:
        """What an entry at `depth` is, and the physical address it gives (a leaf's page base)."""

    @abstractmethod
    def level_name(self, depth: int) -> str:
        """The architecture's own name for a level, in messages."""

    @abstractmethod
    def describe(self) -> str:
        """The format in a few words: "4-level", "arm64 4 KiB granule, 39-bit VA, 3-level"."""


@dataclass(frozen=True)
class TopTable:
    """The top-level page table: its physical address, its format, where we learnt it, and the
    kernel image's virtual-physical offset where the same source gives it (else None)."""

    paddr: int
    paging: Paging
    source: str  # "CR3 from QEMU note (CPU 0)", "VMCOREINFO init_top_pgt"
    image_delta: int | None = None

    @property
    def levels(self) -> int:
        return self.paging.levels

    def describe(self) -> str:
        return f"pagewalk, {self.paging.describe()}, {self.source}"


@dataclass(frozen=True)
class Run:
    """Virtually and physically contiguous mapped bytes."""

    vaddr: int
    paddr: int
    size: int

    @property
    def delta(self) -> int:
        return self.vaddr - self.paddr


@dataclass(frozen=True)
class Miss:
    """Why a virtual address has no physical page: [start, end) of the hole and the level."""

    start: int
    end: int
    why: str


class PageTables:
    """The kernel half of the page tables rooted at `top`, read from the dump's physical memory."""

    def __init__(self, mem: PhysicalMemory, top: TopTable) -> None:
        self.mem = mem
        self.top = top
        self.paging = top.paging
        self.shifts = self.paging.shifts
        self._formats = {depth: struct.Struct(f"<{self.paging.entries(depth)}Q") for depth in range(self.paging.levels)}
        self._cache: OrderedDict[tuple[int, int], tuple[int, ...]] = OrderedDict()
        self._visits = 0
        self.truncated = False

    def table(self, paddr: int, depth: int = 0) -> tuple[int, ...] | None:
        """The entries of the table at `paddr` (a level-`depth` table), or None if the dump lacks it."""
        key = (paddr, depth)
        entries = self._cache.get(key)
        if entries is None:
            entries = self._read(paddr, depth)
            if entries is None:
                return None
            self._cache[key] = entries
            if len(self._cache) > _TABLE_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return entries

    def _read(self, paddr: int, depth: int) -> tuple[int, ...] | None:
        layout = self._formats[depth]
        data = self.mem.read_some(paddr, layout.size)
        return layout.unpack(data) if len(data) == layout.size else None

    def translate(self, vaddr: int) -> int | Miss:
        """The physical address of `vaddr`, or a Miss naming the unmapped range."""
        table_paddr = self.top.paddr
        paging = self.paging
        for depth, shift in enumerate(self.shifts):
            entries = self.table(table_paddr, depth)
            span = 1 << shift
            start = vaddr & ~(span - 1) & _ALL_ONES
            level = paging.level_name(depth)
            if entries is None:
                return Miss(start, start + span, f"unreachable: its {level} table at physical {table_paddr:#x} "
                                                 "is not in the dump")
            kind, address = paging.decode(entries[(vaddr >> shift) % len(entries)], depth)
            if kind is Kind.ABSENT:
                return Miss(start, start + span, f"not mapped ({level} entry not present)")
            if kind is Kind.RESERVED:
                return Miss(start, start + span, f"unreachable: its {level} entry is reserved "
                                                 f"({self._reserved_why(depth)})")
            if kind is Kind.LEAF:
                return address + (vaddr & (span - 1))
            table_paddr = address
        raise AssertionError("the last level holds leaves only")

    def _reserved_why(self, depth: int) -> str:
        return "a page-size/block bit where this level allows none" if depth < self.paging.levels - 1 else \
            "not a page descriptor"

    def leaves(self) -> Iterator[Run]:
        """Every present leaf of the kernel half, in virtual order. At most MAX_TABLES tables are
        read (`truncated` says so)."""
        self._visits = 0
        self.truncated = False
        return self._leaves(self.top.paddr, 0, 0)

    def runs(self) -> Iterator[Run]:
        """The kernel half's mappings in virtual order, merged into maximal linear runs."""
        return merge_runs(self.leaves())

    def _leaves(self, table_paddr: int, depth: int, base: int) -> Iterator[Run]:
        self._visits += 1
        if self._visits > MAX_TABLES:
            self.truncated = True
            return
        entries = self._peek(table_paddr, depth)
        if entries is None:
            return
        shift = self.shifts[depth]
        paging = self.paging
        indices = paging.kernel_entries() if depth == 0 else range(len(entries))
        for index in indices:
            kind, address = paging.decode(entries[index], depth)
            if kind is Kind.ABSENT or kind is Kind.RESERVED:
                continue
            vaddr = paging.kernel_vaddr(index << shift) if depth == 0 else base | index << shift
            if kind is Kind.LEAF:
                yield Run(vaddr, address, 1 << shift)
            else:
                yield from self._leaves(address, depth + 1, vaddr)

    def _peek(self, paddr: int, depth: int) -> tuple[int, ...] | None:
        """A table's entries without filling the cache (the walk reads each table once)."""
        cached = self._cache.get((paddr, depth))
        return cached if cached is not None else self._read(paddr, depth)


def merge_runs(leaves: Iterator[Run]) -> Iterator[Run]:
    """Virtually ordered leaves merged where they are contiguous both virtually and physically."""
    run: Run | None = None
    for leaf in leaves:
        if run is not None and leaf.vaddr == run.vaddr + run.size and leaf.paddr == run.paddr + run.size:
            run = Run(run.vaddr, run.paddr, run.size + leaf.size)
            continue
        if run is not None:
            yield run
        run = leaf
    if run is not None:
        yield run


def sign_extended(bits: int, va_bits: int) -> int:
    """`bits` (the low `va_bits` of an address) with the top one copied upwards, as x86_64 requires."""
    bits &= (1 << va_bits) - 1
    return bits | (_ALL_ONES ^ ((1 << va_bits) - 1)) if bits >> (va_bits - 1) else bits


def ones_above(bits: int, va_bits: int) -> int:
    """`bits` with every bit above `va_bits` set: arm64's TTBR1 half."""
    return (bits & ((1 << va_bits) - 1)) | (_ALL_ONES ^ ((1 << va_bits) - 1))
