"""A loaded kheaders.ko's archive, rebuilt through the kernel's own page tables (x86_64, arm64).

With CONFIG_IKHEADERS=m the archive lives in the module's vmalloc memory: virtually contiguous,
physically scattered pages. The dump holds the kernel's page tables too, so:

1. Find the top-level table (`top_tables`): on x86_64 QEMU's per-CPU CR3 or VMCOREINFO's
   init_top_pgt (paging_x86_64.py); on arm64 VMCOREINFO's swapper_pg_dir (paging_arm64.py).
2. Walk the kernel half into linear runs (paging.py); the linear map (the offset that maps the
   most memory) and the kernel image (its own offset) are left out: what remains is
   module/vmalloc space.
3. A carved stream start whose page is mapped there is read forward virtually, page by page,
   and decoded as it goes (the decoder finds the exact end and checks every CRC); the result
   must be a tar of ./include/ headers.

A stream that runs into an unmapped page, or a page the dump left out, is reported as
Unreachable (a Damaged) naming the virtual and physical range: a cut-short archive is never
returned. Every table entry and note field is bounds-checked before use.
"""

from __future__ import annotations

import lzma
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from ..archive import xzstream
from ..archive.xzstream import MAX_ARCHIVE
from ..buffer import Buffer
from ..elf.reader import CorruptElf, ElfImage, parse_notes
from ..errors import Damaged
from . import paging_arm64, paging_x86_64
from .kdump import (
    KdumpMemory,
    read_sub_header,  # offset_note/size_note are not kept
)
from .paging import Miss, PageTables, Run, TopTable, merge_runs
from .physical import PhysicalMemory
from .split import SplitSetMemory

_MAX_NOTES = 1 << 24
_FEED = 1 << 20  # bytes gathered before each decoder step


class Unreachable(Damaged):
    """A candidate the tables cannot complete: an unmapped page, or a page absent from the dump."""


# Top-level table sources ---------------------------------------------------------------------


def top_tables(mem: PhysicalMemory, buf: Buffer) -> list[TopTable]:
    """Every usable top-level table, best first: QEMU's CR3 (one per distinct CR3), then VMCOREINFO."""
    info = mem.info.vmcoreinfo
    tables = [t for t in paging_x86_64.qemu_cr3_tables(dump_notes(mem, buf), paging_x86_64.image_delta(info))
              if t.paddr]
    from_info = vmcoreinfo_table(info)
    if from_info is not None:
        tables.append(from_info)
    seen: set[tuple[int, object]] = set()
    unique = []
    for table in tables:
        if (table.paddr, table.paging) not in seen:
            seen.add((table.paddr, table.paging))
            unique.append(table)
    return unique


def vmcoreinfo_table(info: dict[str, str]) -> TopTable | None:
    """The kernel's own top-level table as its VMCOREINFO names it (x86_64 or arm64), or None."""
    return paging_x86_64.vmcoreinfo_table(info) or paging_arm64.vmcoreinfo_table(info)


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


# Module/vmalloc space ------------------------------------------------------------------------


class ModuleSpace:
    """The mappings outside the linear map and the kernel image: where a module's pages are."""

    def __init__(self, tables: PageTables) -> None:
        self.tables = tables
        leaves = list(tables.leaves())
        self.mapped_bytes = sum(leaf.size for leaf in leaves)
        self.image_delta = tables.top.image_delta
        if self.image_delta is None and tables.paging.arch == "x86_64":
            self.image_delta = paging_x86_64.guess_image_delta(leaves)
        self.direct_delta = _dominant_delta(r for r in leaves if r.delta != self.image_delta)
        linear = {self.direct_delta, self.image_delta}
        runs = merge_runs(leaf for leaf in leaves if leaf.delta not in linear)
        self.runs = sorted(runs, key=lambda r: r.paddr)

    def aliases(self, paddr: int) -> list[int]:
        """Module/vmalloc virtual addresses of the physical byte at `paddr`."""
        return [r.vaddr + paddr - r.paddr for r in self.runs if r.paddr <= paddr < r.paddr + r.size]


def _dominant_delta(runs: Iterator[Run]) -> int | None:
    """The virtual-physical offset that maps the most bytes: the linear (direct) map."""
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
        page = self.top.paging.page
        return (self.vaddr % page + len(self.archive) + page - 1) // page


def read_virtual(tables: PageTables, vaddr: int, size: int) -> tuple[bytes, Unreachable | None]:
    """Up to `size` bytes from `vaddr`, page by page; the reason when it stops short."""
    parts: list[bytes] = []
    page = tables.paging.page
    at, end = vaddr, vaddr + size
    while at < end:
        take = min(end, (at | (page - 1)) + 1) - at
        paddr = tables.translate(at)
        if isinstance(paddr, Miss):
            return b"".join(parts), Unreachable(f"virtual {paddr.start:#x}-{paddr.end - 1:#x} is {paddr.why}",
                                                offset=at)
        data = tables.mem.read_some(paddr, take)
        parts.append(data)
        if len(data) < take:
            gap = tables.mem.gap(paddr + len(data))
            missing = at + len(data)
            page_end = missing | (page - 1)
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
            return ("the dump has no QEMU CPU note (CR3) and no VMCOREINFO top-level table "
                    "(init_top_pgt on x86_64, swapper_pg_dir with kimage_voffset on arm64)")
        if len(self._spaces) == len(self._tops) and not any(self._spaces.values()):
            return "no page table the dump names could be walked"
        return ""

    def _space(self, index: int) -> ModuleSpace | None:
        if index not in self._spaces:
            assert self._tops is not None
            space = ModuleSpace(PageTables(self._mem, self._tops[index]))
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
