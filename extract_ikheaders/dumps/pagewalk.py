"""A loaded kheaders.ko's archive, rebuilt through the kernel's own x86_64 page tables.

With CONFIG_IKHEADERS=m the archive lives in the module's vmalloc memory: virtually contiguous,
physically scattered 4 KiB pages. The dump holds the kernel's page tables too, so:

1. Find the top-level table: the per-CPU "QEMU" note of QEMU dump-guest-memory files
   (QEMUCPUState: CR3, and CR4 whose bit 12, LA57, means 5-level paging), else VMCOREINFO
   (`SYMBOL(init_top_pgt)`, `NUMBER(phys_base)`, `NUMBER(pgtable_l5_enabled)`;
   physical = virtual - __START_KERNEL_map + phys_base).
2. Walk the kernel half (4 or 5 levels, 1 GiB / 2 MiB pages) into linear runs; the direct map
   (the linear offset covering most memory below __START_KERNEL_map) and the kernel image
   (__START_KERNEL_map + phys_base) are left out: what remains is module/vmalloc space.
3. A carved stream start whose page is mapped there is read forward virtually, page by page,
   and decoded as it goes (the decoder finds the exact end and checks every CRC); the result
   must be a tar of ./include/ headers.

A stream that runs into an unmapped page, or a page the dump left out, is reported as
Unreachable (a Damaged) naming the virtual and physical range: a cut-short archive is never
returned. Every table entry and note field is bounds-checked before use.
"""

from __future__ import annotations

import lzma
import struct
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from ..archive import xzstream
from ..archive.xzstream import MAX_ARCHIVE
from ..buffer import Buffer
from ..elf.reader import CorruptElf, ElfImage, parse_notes
from ..errors import Damaged
from .kdump import (
    KdumpMemory,
    read_sub_header,  # offset_note/size_note are not kept
)
from .physical import PhysicalMemory
from .split import SplitSetMemory

PAGE = 4096
START_KERNEL_MAP = 0xFFFFFFFF80000000  # __START_KERNEL_map
ADDR_MASK = 0x000F_FFFF_FFFF_F000  # physical address bits 12..51 of an entry
PRESENT = 1 << 0
PAGE_SIZE_BIT = 1 << 7  # PS: a 1 GiB (PUD) or 2 MiB (PMD) leaf
CR4_LA57 = 1 << 12
CR3_ADDR_MASK = 0x000F_FFFF_FFFF_F000  # CR3 bits 12..51 (the low bits are PCID/flags)
_ENTRIES = struct.Struct("<512Q")
_TABLE_CACHE = 256  # tables kept while translating (the walk itself caches nothing)
_MAX_TABLES = 1 << 18  # tables one walk reads at most: 1 GiB of tables, a 512 GiB machine in 4 KiB pages
_QEMU_CR_OFFSET = 392  # QEMUCPUState: version, size, 18 u64 registers, 10 x 24-byte segments, cr[5]
_QEMU_MIN_SIZE = _QEMU_CR_OFFSET + 5 * 8
_MAX_NOTES = 1 << 24
_FEED = 1 << 20  # bytes gathered before each decoder step


@dataclass(frozen=True)
class TopTable:
    """The top-level page table: its physical address, the paging depth, and where we learnt it."""

    paddr: int
    levels: int  # 4 or 5
    source: str  # "CR3 from QEMU note (CPU 0)", "VMCOREINFO init_top_pgt"

    def describe(self) -> str:
        return f"pagewalk, {self.levels}-level, {self.source}"


@dataclass(frozen=True)
class Run:
    """Virtually and physically contiguous mapped bytes."""

    vaddr: int
    paddr: int
    size: int

    @property
    def delta(self) -> int:
        return self.vaddr - self.paddr


class Unreachable(Damaged):
    """A candidate the tables cannot complete: an unmapped page, or a page absent from the dump."""


# Top-level table sources ---------------------------------------------------------------------


def top_tables(mem: PhysicalMemory, buf: Buffer) -> list[TopTable]:
    """Every usable top-level table, best first: QEMU's CR3 (one per distinct CR3), then VMCOREINFO."""
    tables = [t for t in qemu_cr3_tables(dump_notes(mem, buf)) if t.paddr]
    from_info = vmcoreinfo_table(mem.info.vmcoreinfo)
    if from_info is not None:
        tables.append(from_info)
    seen: set[tuple[int, int]] = set()
    unique = []
    for table in tables:
        if (table.paddr, table.levels) not in seen:
            seen.add((table.paddr, table.levels))
            unique.append(table)
    return unique


def dump_notes(mem: PhysicalMemory, buf: Buffer) -> list[tuple[str, bytes]]:
    """(name, desc) of the dump's ELF notes: the core's PT_NOTEs, or a kdump sub-header's notes."""
    if isinstance(mem, SplitSetMemory):
        return _kdump_notes(mem.lead)  # every part repeats the notes
    if isinstance(mem, KdumpMemory):
        return _kdump_notes(mem)
    if mem.info.format != "elf-core":
        return []
    try:
        return [(n.name, n.desc) for n in ElfImage(buf).notes()]
    except CorruptElf:
        return []


def _kdump_notes(mem: KdumpMemory) -> list[tuple[str, bytes]]:
    """The notes a kdump-compressed file keeps at offset_note/size_note of its sub-header."""
    header, src = mem.header, mem.source
    if header.version < 4 or header.sub_hdr_size == 0:
        return []  # offset_note/size_note arrived with header version 4
    sub = read_sub_header(src, header.layout, header.version, header.block_size, header.sub_hdr_size)
    offset, size = sub.get("offset_note", 0), sub.get("size_note", 0)
    if not (offset > 0 and 0 < size <= _MAX_NOTES and offset + size <= len(src)):
        return []
    return [(note.name, note.desc) for note in parse_notes(src.read(offset, size))]


def qemu_cr3_tables(notes: list[tuple[str, bytes]]) -> list[TopTable]:
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
        levels = 5 if cr4 & CR4_LA57 else 4
        tables.append(TopTable(cr3 & CR3_ADDR_MASK, levels, f"CR3 from QEMU note (CPU {cpu})"))
    return tables


def vmcoreinfo_table(info: dict[str, str]) -> TopTable | None:
    """init_top_pgt's physical address from VMCOREINFO (x86_64), or None."""
    try:
        vaddr = int(info["SYMBOL(init_top_pgt)"], 16)
        phys_base = int(info["NUMBER(phys_base)"], 0)
        levels = 5 if int(info.get("NUMBER(pgtable_l5_enabled)", "0"), 0) else 4
    except (KeyError, ValueError):
        return None
    paddr = vaddr - START_KERNEL_MAP + phys_base
    if vaddr < START_KERNEL_MAP or paddr < 0 or paddr % PAGE:
        return None
    return TopTable(paddr, levels, "VMCOREINFO init_top_pgt")


def phys_base(info: dict[str, str]) -> int | None:
    try:
        return int(info["NUMBER(phys_base)"], 0)
    except (KeyError, ValueError):
        return None


# The tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Miss:
    """Why a virtual address has no physical page: [start, end) of the hole and the level."""

    start: int
    end: int
    why: str


class PageTables:
    """x86_64 page tables rooted at `top`, read from the dump's physical memory."""

    def __init__(self, mem: PhysicalMemory, top: TopTable) -> None:
        if top.levels not in (4, 5):
            raise ValueError(f"unsupported paging depth {top.levels}")
        self.mem = mem
        self.top = top
        self.shifts = (48, 39, 30, 21, 12) if top.levels == 5 else (39, 30, 21, 12)
        self._va_bits = self.shifts[0] + 9
        self._cache: OrderedDict[int, tuple[int, ...]] = OrderedDict()
        self._visits = 0
        self.truncated = False

    def table(self, paddr: int) -> tuple[int, ...] | None:
        """The 512 entries of the table at `paddr`, or None if the dump lacks that page."""
        entries = self._cache.get(paddr)
        if entries is None:
            data = self.mem.read_some(paddr, PAGE)
            if len(data) < PAGE:
                return None
            entries = _ENTRIES.unpack(data)
            self._cache[paddr] = entries
            if len(self._cache) > _TABLE_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(paddr)
        return entries

    def canonical(self, vaddr: int) -> int:
        """Sign-extend a virtual address from the paging depth's top bit."""
        top_bit = 1 << (self._va_bits - 1)
        vaddr &= (1 << self._va_bits) - 1
        return vaddr | (~((1 << self._va_bits) - 1) & ((1 << 64) - 1)) if vaddr & top_bit else vaddr

    def translate(self, vaddr: int) -> int | Miss:
        """The physical address of `vaddr`, or a Miss naming the unmapped range."""
        table_paddr = self.top.paddr
        for depth, shift in enumerate(self.shifts):
            entries = self.table(table_paddr)
            span = 1 << shift
            start = vaddr & ~(span - 1) & ((1 << 64) - 1)
            if entries is None:
                return Miss(start, start + span, f"unreachable: its level-{len(self.shifts) - depth} table at "
                                                 f"physical {table_paddr:#x} is not in the dump")
            entry = entries[(vaddr >> shift) & 511]
            if not entry & PRESENT:
                return Miss(start, start + span, f"not mapped (level-{len(self.shifts) - depth} entry not present)")
            if shift == 12 or (entry & PAGE_SIZE_BIT and shift in (21, 30)):
                return _leaf_base(entry, shift) + (vaddr & (span - 1))
            if entry & PAGE_SIZE_BIT:
                return Miss(start, start + span, f"unreachable: its level-{len(self.shifts) - depth} entry has "
                                                 f"the reserved page-size bit set")
            table_paddr = entry & ADDR_MASK
        raise AssertionError("unreachable")

    def leaves(self) -> Iterator[Run]:
        """Every present leaf (4 KiB, 2 MiB or 1 GiB page) of the kernel half, in virtual order.
        At most _MAX_TABLES tables are read (`truncated` says so): tables that point back at each
        other (a corrupt or hostile dump) cannot make the walk endless."""
        self._visits = 0
        self.truncated = False
        return self._leaves(self.top.paddr, 0, 0)

    def runs(self) -> Iterator[Run]:
        """The kernel half's mappings in virtual order, merged into maximal linear runs."""
        return merge_runs(self.leaves())

    def _leaves(self, table_paddr: int, depth: int, base: int) -> Iterator[Run]:
        self._visits += 1
        if self._visits > _MAX_TABLES:
            self.truncated = True
            return
        entries = self._peek(table_paddr)
        if entries is None:
            return
        shift = self.shifts[depth]
        first = 256 if depth == 0 else 0  # the top table's lower half maps user space
        for index in range(first, 512):
            entry = entries[index]
            if not entry & PRESENT:
                continue
            vaddr = self.canonical(base | index << shift) if depth == 0 else base | index << shift
            if shift == 12 or (entry & PAGE_SIZE_BIT and shift in (21, 30)):
                yield Run(vaddr, _leaf_base(entry, shift), 1 << shift)
            elif not entry & PAGE_SIZE_BIT:
                yield from self._leaves(entry & ADDR_MASK, depth + 1, vaddr)

    def _peek(self, paddr: int) -> tuple[int, ...] | None:
        """A table's entries without filling the cache (the walk reads each table once)."""
        cached = self._cache.get(paddr)
        if cached is not None:
            return cached
        data = self.mem.read_some(paddr, PAGE)
        return _ENTRIES.unpack(data) if len(data) == PAGE else None


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


def _leaf_base(entry: int, shift: int) -> int:
    """The physical base of a leaf entry (large pages: bit 12 is PAT, not address)."""
    return entry & ADDR_MASK & ~((1 << shift) - 1)


# Module/vmalloc space ------------------------------------------------------------------------


class ModuleSpace:
    """The mappings outside the direct map and the kernel image: where a module's pages are."""

    def __init__(self, tables: PageTables, kernel_phys_base: int | None) -> None:
        self.tables = tables
        leaves = list(tables.leaves())
        self.mapped_bytes = sum(leaf.size for leaf in leaves)
        self.direct_delta = _dominant_delta(r for r in leaves if r.vaddr < START_KERNEL_MAP)
        self.image_delta = (START_KERNEL_MAP - kernel_phys_base if kernel_phys_base is not None
                            else _image_delta(leaves))
        runs = merge_runs(leaf for leaf in leaves if not self._linear_alias(leaf))
        self.runs = sorted(runs, key=lambda r: r.paddr)

    def _linear_alias(self, run: Run) -> bool:
        if run.vaddr < START_KERNEL_MAP:
            return run.delta == self.direct_delta
        return run.delta == self.image_delta

    def aliases(self, paddr: int) -> list[int]:
        """Module/vmalloc virtual addresses of the physical byte at `paddr`."""
        return [r.vaddr + paddr - r.paddr for r in self.runs if r.paddr <= paddr < r.paddr + r.size]


_LARGE = 2 << 20
_IMAGE_SPACE = 1 << 30  # KERNEL_IMAGE_SIZE with KASLR: the image lies in the first GiB above __START_KERNEL_map


def image_vaddr(tables: PageTables, paddr: int) -> int | None:
    """The kernel-image virtual address (__START_KERNEL_map and up) of physical `paddr`, or None.
    The image is mapped with 2 MiB pages there (level2_kernel_pgt): at most 512 lookups."""
    page = paddr - paddr % _LARGE
    for vaddr in range(START_KERNEL_MAP, START_KERNEL_MAP + _IMAGE_SPACE, _LARGE):
        mapped = tables.translate(vaddr)
        if isinstance(mapped, int) and mapped - mapped % _LARGE == page:
            return paddr + vaddr - mapped
    return None


def _image_delta(leaves: list[Run]) -> int | None:
    """The kernel image's offset without VMCOREINFO: it is mapped with 2 MiB pages (level2_kernel_pgt),
    modules with 4 KiB pages, so the large pages above __START_KERNEL_map decide."""
    high = [leaf for leaf in leaves if leaf.vaddr >= START_KERNEL_MAP]
    large = [leaf for leaf in high if leaf.size > PAGE]
    return _dominant_delta(iter(large or high))


def _dominant_delta(runs: Iterator[Run]) -> int | None:
    """The virtual-physical offset that maps the most bytes (the direct map, the kernel image)."""
    weights: Counter[int] = Counter()
    for run in runs:
        weights[run.delta] += run.size
    return weights.most_common(1)[0][0] if weights else None


# Reading forward virtually -------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualHit:
    """An archive rebuilt through the page tables."""

    vaddr: int
    paddr: int  # of the stream header
    archive: bytes
    top: TopTable

    @property
    def pages(self) -> int:
        return (self.vaddr % PAGE + len(self.archive) + PAGE - 1) // PAGE


def read_virtual(tables: PageTables, vaddr: int, size: int) -> tuple[bytes, Unreachable | None]:
    """Up to `size` bytes from `vaddr`, page by page; the reason when it stops short."""
    parts: list[bytes] = []
    at, end = vaddr, vaddr + size
    while at < end:
        take = min(end, (at | (PAGE - 1)) + 1) - at
        paddr = tables.translate(at)
        if isinstance(paddr, Miss):
            return b"".join(parts), Unreachable(f"virtual {paddr.start:#x}-{paddr.end - 1:#x} is {paddr.why}",
                                                offset=at)
        data = tables.mem.read_some(paddr, take)
        parts.append(data)
        if len(data) < take:
            gap = tables.mem.gap(paddr + len(data))
            missing = at + len(data)
            page_end = (missing | (PAGE - 1))
            return b"".join(parts), Unreachable(
                f"virtual {missing:#x}-{page_end:#x} maps to {gap.describe()}", offset=missing)
        at += take
    return b"".join(parts), None


def follow(tables: PageTables, vaddr: int, paddr: int) -> VirtualHit:
    """Decode the xz stream at `vaddr` to its end through the tables; Damaged if it cannot be."""
    decoder = xzstream.decoder_for_archive()
    archive = bytearray()
    where = f"the headers archive at virtual {vaddr:#x} (physical {paddr:#x}; {tables.top.describe()})"
    while not decoder.eof:
        chunk, stop = read_virtual(tables, vaddr + len(archive), _FEED)
        at = vaddr + len(archive)
        archive += chunk
        try:
            xzstream.feed_discarding(decoder, chunk)
        except lzma.LZMAError as exc:
            raise Damaged(f"{where} does not decode near virtual {at:#x}-{at + len(chunk) - 1:#x}: "
                          f"{xzstream.decode_error(exc)}", offset=at) from None
        if decoder.eof:
            break
        if stop is not None:
            raise Unreachable(f"{where} is incomplete after {len(archive):,} bytes: {stop}", offset=stop.offset)
        if len(archive) > MAX_ARCHIVE:
            raise Damaged(f"{where} does not end within {MAX_ARCHIVE:,} bytes", offset=vaddr)
    data = bytes(archive[: len(archive) - len(decoder.unused_data)])
    if not xzstream.looks_like_headers(data, 0):
        raise Damaged(f"{where} decodes, but not to a tar of ./include/ headers", offset=vaddr)
    return VirtualHit(vaddr, paddr, data, tables.top)


# What search.py asks -------------------------------------------------------------------------


class Resolver:
    """Per dump: is a carved stream start in module/vmalloc space, and if so, the whole archive.

    The tables are found and walked only when a candidate asks (a dump without any headers
    candidate costs nothing), one top-level table at a time: the next one (another CPU's CR3,
    VMCOREINFO) only when the earlier ones cannot be walked or cannot complete the candidate."""

    def __init__(self, mem: PhysicalMemory, buf: Buffer) -> None:
        self._mem = mem
        self._buf = buf
        self._tops: list[TopTable] | None = None
        self._spaces: dict[int, ModuleSpace | None] = {}

    @property
    def unavailable(self) -> str:
        """Why no page table could be used ("" when one could, or when none was asked for)."""
        if self._tops is None:
            return ""
        if not self._tops:
            return "the dump has no QEMU CPU note (CR3) and no VMCOREINFO init_top_pgt"
        if len(self._spaces) == len(self._tops) and not any(self._spaces.values()):
            return "no page table the dump names could be walked"
        return ""

    def _space(self, index: int) -> ModuleSpace | None:
        if index not in self._spaces:
            assert self._tops is not None
            space = ModuleSpace(PageTables(self._mem, self._tops[index]), phys_base(self._mem.info.vmcoreinfo))
            self._spaces[index] = space if space.mapped_bytes else None
        return self._spaces[index]

    def follow(self, paddr: int) -> VirtualHit | Damaged | None:
        """The archive whose stream header is at physical `paddr`, read through the page tables;
        None when that page is not mapped in module/vmalloc space (a physical carve applies)."""
        if self._tops is None:
            self._tops = top_tables(self._mem, self._buf)
        first: Damaged | None = None
        for index in range(len(self._tops)):
            space = self._space(index)
            if space is None:
                continue  # its top table is not in the dump: try the next source
            aliases = space.aliases(paddr)
            if not aliases:
                break  # every top table shares the kernel half: the others would not map it either
            for vaddr in aliases:
                try:
                    return follow(space.tables, vaddr, paddr)
                except Damaged as exc:
                    first = first or exc
        return first
