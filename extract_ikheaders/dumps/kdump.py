"""kdump-compressed dumps (makedumpfile -c/-l/-p/-z, QEMU dump-guest-memory -z/-l/-s).

Layout (makedumpfile's diskdump_mod.h; QEMU's dump.h writes the same 64-bit layout), in blocks
of block_size (the page size):
  block 0         disk_dump_header: "KDUMP   ", header_version, utsname, ..., block_size,
                  sub_hdr_size, bitmap_blocks, max_mapnr, ...
  block 1..       kdump_sub_header: phys_base, dump_level, split, start_pfn, end_pfn,
                  offset_vmcoreinfo, size_vmcoreinfo, ..., max_mapnr_64 (header_version >= 6)
  then            bitmap_blocks blocks: 1st bitmap (pages that exist), 2nd bitmap (pages dumped)
  then            one page_desc {offset, size, flags, page_flags} per set bit of the 2nd bitmap
Each page is compressed on its own (flags: zlib 0x1, lzo 0x2, snappy 0x4, zstd 0x20); a page
stored as is has no codec flag and size == block_size. Pages are decoded one at a time: the dump
is never read whole. Everything read from the file is bounds-checked before use.
"""

from __future__ import annotations

import bisect
import re
import struct
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .. import imagetext
from ..buffer import Buffer
from ..compression import decode_lzo1x
from ..errors import Damaged, NotMine
from ..model import Layer, uname_platform
from .physical import RELEASE_EVERY, DumpInfo, Gap, PhysicalMemory, coalesced, parse_vmcoreinfo, release_mapping

SIGNATURE = b"KDUMP   "
ZLIB, LZO, SNAPPY, ZSTD = 0x1, 0x2, 0x4, 0x20
CODECS = {ZLIB: "zlib", LZO: "lzo", SNAPPY: "snappy", ZSTD: "zstd"}
_DESC = struct.Struct("<qIIQ")  # page_desc: offset, size, flags, page_flags
_BLOCK_BITS = 4096 * 8  # pfns per rank-table entry (one 4 KiB bitmap block)
_MAX_VMCOREINFO = 1 << 20
_DESC_BATCH = 512  # descriptors read at once while walking pages in order
_ONES = re.compile("1+")


class Source(Protocol):
    """The kdump file's bytes: the mapped file itself, or a flattened file's virtual image."""

    def __len__(self) -> int: ...

    def read(self, offset: int, size: int) -> bytes:
        """Exactly `size` bytes at `offset` (the caller has checked the bounds)."""
        ...


class BufferSource:
    """A mapped kdump file; drops touched pages from our page tables now and then (RSS)."""

    def __init__(self, buf: Buffer) -> None:
        self._buf = buf
        self._touched = 0

    def __len__(self) -> int:
        return len(self._buf)

    def read(self, offset: int, size: int) -> bytes:
        self._touched += size
        if self._touched >= RELEASE_EVERY:
            self._touched = 0
            release_mapping(self._buf)
        return bytes(self._buf[offset : offset + size])


@dataclass(frozen=True)
class Layout:
    name: str
    header: struct.Struct
    sub_header: struct.Struct


# disk_dump_header: signature, header_version, utsname (6 x 65), timestamp (struct timeval), status,
# block_size, sub_hdr_size, bitmap_blocks, max_mapnr, total_ram_blocks, device_blocks,
# written_blocks, current_cpu, nr_cpus. 464 bytes on 64-bit (the timeval is 8-aligned).
LAYOUTS = (
    Layout("64-bit little-endian", struct.Struct("<8si390s6xqqIiiIIIIIIi"), struct.Struct("<QiiQQqQqQqQQQQ")),
    Layout("64-bit big-endian", struct.Struct(">8si390s6xqqIiiIIIIIIi"), struct.Struct(">QiiQQqQqQqQQQQ")),
    Layout("32-bit little-endian", struct.Struct("<8si390s2xiiIiiIIIIIIi"), struct.Struct("<IiiIIqIqIqIQQQ")),
    Layout("32-bit big-endian", struct.Struct(">8si390s2xiiIiiIIIIIIi"), struct.Struct(">IiiIIqIqIqIQQQ")),
)


@dataclass(frozen=True)
class Header:
    layout: Layout
    version: int
    release: str
    machine: str
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    dump_level: int
    split: bool
    start_pfn: int
    end_pfn: int
    vmcoreinfo: dict[str, str]
    # What every part of one makedumpfile --split run repeats: the layout, the header version, utsname,
    # the timestamp (taken once per run), the codec, the block and bitmap geometry and max_mapnr.
    identity: tuple[object, ...] = ()

    def split_range(self) -> str:
        """'pfns 0x0-0x57ff of 0x17fda' (a split part's own range; an empty one says so)."""
        if self.end_pfn <= self.start_pfn:
            return f"no pfns (an empty range at {self.start_pfn:#x}) of {self.max_mapnr:#x}"
        return f"pfns {self.start_pfn:#x}-{self.end_pfn - 1:#x} of {self.max_mapnr:#x}"


def open_memory(buf: Buffer) -> KdumpMemory:
    """A kdump-compressed file's physical memory; NotMine unless it starts with `KDUMP   `."""
    if bytes(buf[:8]) != SIGNATURE:
        raise NotMine("no KDUMP signature")
    return open_source(BufferSource(buf))


def open_source(src: Source, outer: tuple[Layer, ...] = ()) -> KdumpMemory:
    """The memory of the kdump file in `src` (which the flattened reader also provides)."""
    if len(src) < 8 or src.read(0, 8) != SIGNATURE:
        raise Damaged("no KDUMP signature where the dump should start")
    return KdumpMemory(src, read_header(src), outer)


def read_header(src: Source) -> Header:
    head = src.read(0, min(len(src), 512))
    layout = next((lay for lay in LAYOUTS if _plausible(lay, head)), None)
    if layout is None:
        raise Damaged("kdump header is damaged (no sane header_version/block_size in any known layout)")
    (_, version, uts, tv_sec, tv_usec, status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr,
     *_rest, nr_cpus) = layout.header.unpack_from(head)
    if sub_hdr_size < 0 or bitmap_blocks <= 0 or bitmap_blocks % 2:
        raise Damaged(f"kdump header is damaged (sub_hdr_size {sub_hdr_size}, bitmap_blocks {bitmap_blocks})")
    data_start = (1 + sub_hdr_size + bitmap_blocks) * block_size
    if data_start > len(src):
        raise Damaged(f"kdump file is truncated: its bitmaps end at {data_start:#x}, the file at {len(src):#x}")
    sub = read_sub_header(src, layout, version, block_size, sub_hdr_size)
    max_mapnr = sub.get("max_mapnr_64", max_mapnr) if version >= 6 else max_mapnr
    fields = [imagetext.decode(uts[i * 65 : (i + 1) * 65].split(b"\0", 1)[0]) for i in range(6)]
    split = bool(sub.get("split", 0)) and version >= 2
    start_pfn = sub.get("start_pfn_64" if version >= 6 else "start_pfn", 0) if split else 0
    end_pfn = sub.get("end_pfn_64" if version >= 6 else "end_pfn", max_mapnr) if split else max_mapnr
    identity = (layout.name, version, uts, tv_sec, tv_usec, status, block_size, sub_hdr_size, bitmap_blocks,
                max_mapnr, nr_cpus)
    return Header(layout, version, fields[2], fields[4], status, block_size, sub_hdr_size, bitmap_blocks,
                  max_mapnr, sub.get("dump_level", -1), split, start_pfn, end_pfn,
                  _read_vmcoreinfo(src, sub, version), identity)


def _plausible(layout: Layout, head: bytes) -> bool:
    if len(head) < layout.header.size:
        return False
    fields = layout.header.unpack_from(head)
    version, block_size = int(fields[1]), int(fields[6])
    return 0 <= version < 100 and 512 <= block_size <= (1 << 20) and block_size & (block_size - 1) == 0


_SUB_FIELDS = ("phys_base", "dump_level", "split", "start_pfn", "end_pfn", "offset_vmcoreinfo",
               "size_vmcoreinfo", "offset_note", "size_note", "offset_eraseinfo", "size_eraseinfo",
               "start_pfn_64", "end_pfn_64", "max_mapnr_64")


def read_sub_header(src: Source, layout: Layout, version: int, block_size: int, blocks: int) -> dict[str, int]:
    if version < 1 or blocks == 0:
        return {}
    size = min(layout.sub_header.size, blocks * block_size)
    raw = src.read(block_size, size).ljust(layout.sub_header.size, b"\0")
    return dict(zip(_SUB_FIELDS, layout.sub_header.unpack(raw), strict=True))


def _read_vmcoreinfo(src: Source, sub: dict[str, int], version: int) -> dict[str, str]:
    offset, size = sub.get("offset_vmcoreinfo", 0), sub.get("size_vmcoreinfo", 0)
    if version < 3 or size == 0:
        return {}
    if not (offset > 0 and 0 < size <= _MAX_VMCOREINFO and offset + size <= len(src)):
        return {}  # only a hint for the search order and the release: do without it
    return parse_vmcoreinfo(src.read(offset, size))


def _codec_names(flags: int) -> str:
    names = [name for bit, name in CODECS.items() if flags & bit]
    return "+".join(names) if names else "uncompressed"


@dataclass(frozen=True)
class _Desc:
    offset: int
    size: int
    flags: int


class KdumpMemory(PhysicalMemory):
    """Pages of a kdump file, decoded one at a time (a small cache serves the carver's re-reads)."""

    def __init__(self, src: Source, header: Header, outer: tuple[Layer, ...] = ()) -> None:
        self._src = src
        self.header = header
        self.page_size = header.block_size
        half = header.bitmap_blocks // 2 * header.block_size
        self._bitmap1 = (1 + header.sub_hdr_size) * header.block_size
        self._bitmap2 = self._bitmap1 + half
        # Only the bitmap bytes the file holds are read: a header may declare bitmaps of terabytes
        # that a small file does not have, and every scan of them is linear in what is read.
        present = max(0, min(half, len(src) - self._bitmap2))
        self._pfn_limit = min(header.max_mapnr, present * 8, header.end_pfn)
        self._descs_at = (1 + header.sub_hdr_size + header.bitmap_blocks) * header.block_size
        self._desc_count = (len(src) - self._descs_at) // _DESC.size  # fewer if the file is truncated
        self._ranks = self._rank_table(min(half, (self._pfn_limit + 7) // 8))
        self._rank_base = 0  # a split dump's descriptors start at its start_pfn
        self._rank_base = self._rank(header.start_pfn) if header.split else 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._runs_cache: tuple[int, list[tuple[int, int]]] = (-1, [])
        self._cache_pages = max(4, (4 << 20) // header.block_size)
        self._decoders: dict[int, Callable[[bytes], bytes]] = {}
        level = f", dump level {header.dump_level}" if header.dump_level >= 0 else ""
        detail = (f"kdump-compressed v{header.version}, {_codec_names(header.status)}{level}, "
                  f"{header.layout.name}, page size {header.block_size}")
        if header.release:
            detail += f", {header.machine or 'unknown machine'} {header.release}"
        partial = None
        if header.split:
            detail += f", makedumpfile --split part: {header.split_range()}"
            partial = (f"this file is one part of a makedumpfile --split dump and holds only its "
                       f"{header.split_range()}; the other parts are needed for the rest (give them together)")
        platform = uname_platform(header.machine, f"kdump header (machine {header.machine})")
        self.info = DumpInfo("kdump", detail, header.vmcoreinfo, header.release or None, outer, len(src),
                             partial=partial, platform=platform)

    @property
    def source(self) -> Source:
        return self._src

    # Bitmaps -----------------------------------------------------------------------------------

    def _rank_table(self, length: int) -> array[int]:
        """Set bits of the 2nd bitmap before each 4 KiB block: a pfn's descriptor index in O(1) reads."""
        ranks, total = array("q"), 0
        for at in range(0, length, _BLOCK_BITS // 8):
            ranks.append(total)
            block = self._src.read(self._bitmap2 + at, min(_BLOCK_BITS // 8, length - at))
            total += int.from_bytes(block, "little").bit_count()
        ranks.append(total)
        return ranks

    def _rank(self, pfn: int) -> int:
        """Number of dumped pages below pfn (its descriptor's index when it is dumped)."""
        block, bit = divmod(pfn, _BLOCK_BITS)
        if block >= len(self._ranks) - 1:
            return self._ranks[-1] - self._rank_base
        data = self._src.read(self._bitmap2 + block * (_BLOCK_BITS // 8), (bit + 7) // 8)
        below = int.from_bytes(data, "little") & ((1 << bit) - 1)
        return self._ranks[block] + below.bit_count() - self._rank_base

    def _bit(self, bitmap: int, pfn: int) -> bool:
        if not 0 <= pfn < self._pfn_limit:
            return False
        return bool(self._src.read(bitmap + pfn // 8, 1)[0] >> (pfn % 8) & 1)

    def _dumped(self, pfn: int) -> bool:
        return self._pfn_limit > pfn >= self.header.start_pfn and self._bit(self._bitmap2, pfn)

    def _pfn_runs(self, start_pfn: int = 0) -> Iterator[tuple[int, int]]:
        """Runs [first, end) of dumped pfns from start_pfn on, in order, read block by block from the
        2nd bitmap. The carver calls this once per candidate it tries, so the runs of the block it
        starts in are kept and entered by bisection: each call costs what it walks, not the block."""
        start = max(start_pfn, self.header.start_pfn)
        return coalesced(self._clipped_runs(start))

    def _clipped_runs(self, start: int) -> Iterator[tuple[int, int]]:
        for block in range(start // _BLOCK_BITS, (self._pfn_limit + _BLOCK_BITS - 1) // _BLOCK_BITS):
            runs = self._block_runs(block)
            for first, end in runs[max(0, bisect.bisect_right(runs, (start, start)) - 1):]:
                if end > start:
                    yield max(first, start), end

    def _block_runs(self, block: int) -> list[tuple[int, int]]:
        if self._runs_cache[0] != block:
            base = block * _BLOCK_BITS
            count = min(_BLOCK_BITS, self._pfn_limit - base)
            bits = self._src.read(self._bitmap2 + base // 8, (count + 7) // 8)
            self._runs_cache = (block, [(base + first, base + end) for first, end in _bit_runs(bits, count)])
        return self._runs_cache[1]

    # PhysicalMemory ----------------------------------------------------------------------------

    def ranges(self) -> Iterator[tuple[int, int]]:
        for first, end in self._pfn_runs():
            first = max(first, self.header.start_pfn)
            if end > first:
                yield first * self.page_size, end * self.page_size

    def read_some(self, paddr: int, size: int) -> bytes:
        """Stops before an absent page; raises Damaged only when the very first page is corrupt."""
        parts: list[bytes] = []
        while size > 0:
            pfn, skip = divmod(paddr, self.page_size)
            try:
                page = self._page(pfn)
            except Damaged:
                if parts:
                    break
                raise
            if page is None:
                break
            take = min(size, self.page_size - skip)
            parts.append(page[skip : skip + take])
            paddr, size = paddr + take, size - take
        return b"".join(parts)

    def find(self, pattern: bytes, start: int, end: int) -> int:
        """Walk the dumped pages in order, decoding each once; absent or corrupt pages break
        the byte sequence (a pattern cannot straddle them)."""
        keep, size = len(pattern) - 1, self.page_size
        index = -1  # descriptor of the run's first page: ranked once, then counted along the runs
        for first, stop in self._pfn_runs(start // size):
            if first * size >= end:
                break
            first = max(first, start // size)
            index = self._rank(first) if index < 0 else index
            tail = b""
            for pfn, desc in zip(range(first, stop), self._descs(index, stop - first), strict=True):
                chunk_at = pfn * size - len(tail)
                if chunk_at >= end:
                    return -1
                page = self._page_quietly(pfn, desc)
                if page is None:
                    tail = b""
                    continue
                chunk = tail + page
                hit = chunk.find(pattern, max(0, start - chunk_at))
                if hit != -1:
                    return chunk_at + hit if chunk_at + hit < end else -1
                tail = chunk[len(chunk) - keep :] if keep else b""
            index += stop - first
        return -1

    def gap(self, paddr: int) -> Gap:
        pfn = paddr // self.page_size
        why = self._why_absent(pfn) or "a page that could not be read"
        end_pfn = pfn + 1
        while end_pfn < self._pfn_limit and end_pfn - pfn < (1 << 16) and self._why_absent(end_pfn) == why:
            end_pfn += 1
        return Gap(paddr, end_pfn * self.page_size, f"pfn {pfn:#x}-{end_pfn - 1:#x}: {why}")

    def _why_absent(self, pfn: int) -> str | None:
        if self.header.split and not self.header.start_pfn <= pfn < self.header.end_pfn:
            return f"in another part of the makedumpfile --split dump (this file holds its {self.header.split_range()})"
        if pfn >= self._pfn_limit or pfn < self.header.start_pfn:
            return "beyond the pages this dump file covers"
        if not self._bit(self._bitmap2, pfn):
            if self._bit(self._bitmap1, pfn):
                return f"excluded by makedumpfile (dump level {self.header.dump_level})"
            return "not RAM (absent from the dump's memory bitmap)"
        index = self._rank(pfn)
        if index >= self._desc_count:
            return "the file is truncated before this page's descriptor"
        desc = self._desc(index)
        if desc.offset <= 0 or desc.offset + desc.size > len(self._src):
            return (f"its data (offset {desc.offset:#x}, {desc.size} bytes) lies outside the file: "
                    f"truncated or corrupt")
        return None

    # Pages -------------------------------------------------------------------------------------

    def page_location(self, pfn: int) -> tuple[int, int, int] | None:
        """(offset in the kdump file, stored size, flags) of a dumped page, or None (diagnostics)."""
        if not self._dumped(pfn) or self._rank(pfn) >= self._desc_count:
            return None
        desc = self._desc(self._rank(pfn))
        return desc.offset, desc.size, desc.flags

    def _desc(self, index: int) -> _Desc:
        offset, size, flags, _ = _DESC.unpack(self._src.read(self._descs_at + index * _DESC.size, _DESC.size))
        return _Desc(offset, size, flags)

    def _descs(self, index: int, count: int) -> Iterator[_Desc | None]:
        """Descriptors index.. in batches (None past the end of a truncated table)."""
        while count > 0:
            batch = max(0, min(count, _DESC_BATCH, self._desc_count - index))
            raw = self._src.read(self._descs_at + index * _DESC.size, batch * _DESC.size)
            for offset, size, flags, _ in _DESC.iter_unpack(raw):
                yield _Desc(offset, size, flags)
            if batch == 0:
                yield from (None for _ in range(count))
                return
            index, count = index + batch, count - batch

    def _page_quietly(self, pfn: int, desc: _Desc | None) -> bytes | None:
        try:
            return self._page(pfn, desc) if desc is not None else None
        except Damaged:
            return None  # searching: a corrupt page elsewhere must not stop the search

    def _page(self, pfn: int, desc: _Desc | None = None) -> bytes | None:
        """The decoded page; None when the dump has no data for it; Damaged when it is corrupt.
        `desc`: the page's descriptor when the caller already has it (pfn known to be dumped)."""
        page = self._cache.get(pfn)
        if page is not None:
            self._cache.move_to_end(pfn)
            return page
        if desc is None:
            if not self._dumped(pfn) or self._rank(pfn) >= self._desc_count:
                return None
            desc = self._desc(self._rank(pfn))
        if desc.offset <= 0 or desc.offset + desc.size > len(self._src):
            return None  # gap() explains: truncated file or a descriptor pointing past its end
        page = self._decode(pfn, desc)
        self._cache[pfn] = page
        if len(self._cache) > self._cache_pages:
            self._cache.popitem(last=False)
        return page

    def _decode(self, pfn: int, desc: _Desc) -> bytes:
        where = f"kdump page at pfn {pfn:#x} (physical {pfn * self.page_size:#x})"
        if not 0 < desc.size <= self.page_size:
            raise Damaged(f"{where} has an impossible size {desc.size:#x}", offset=pfn * self.page_size)
        data = self._src.read(desc.offset, desc.size)
        codec = desc.flags & (ZLIB | LZO | SNAPPY | ZSTD)
        if not codec:
            if desc.size != self.page_size:
                raise Damaged(f"{where} is stored uncompressed but is {desc.size:#x} bytes, not "
                              f"{self.page_size:#x}", offset=pfn * self.page_size)
            return data
        try:
            page = self._decoder(codec)(data)
        except Damaged:
            raise
        except Exception as exc:  # each codec library has its own error types
            raise Damaged(f"{where} does not decode ({_codec_names(codec)}: {exc})",
                          offset=pfn * self.page_size) from None
        if len(page) != self.page_size:
            raise Damaged(f"{where} decodes to {len(page)} bytes, not {self.page_size}", offset=pfn * self.page_size)
        return page

    def _decoder(self, codec: int) -> Callable[[bytes], bytes]:
        if codec not in self._decoders:
            self._decoders[codec] = _make_decoder(codec, self.page_size)
        return self._decoders[codec]


def _make_decoder(codec: int, page_size: int) -> Callable[[bytes], bytes]:
    """A page decoder whose output is bounded by the page size, whatever the page claims; the codec
    libraries are imported only when a dump needs them."""
    if codec & (codec - 1):
        raise Damaged(f"kdump page claims several compressions at once (flags {codec:#x})")
    if codec == ZLIB:
        return lambda data: zlib.decompressobj().decompress(data, page_size + 1)
    if codec == LZO:
        return lambda data: decode_lzo1x(data, page_size)
    if codec == SNAPPY:
        import cramjam

        def snappy(data: bytes) -> bytes:
            _declared_at_most(_snappy_length(data), page_size, "snappy")  # cramjam allocates what it says
            return bytes(cramjam.snappy.decompress_raw(data))
        return snappy
    if codec == ZSTD:
        import zstandard

        zstd = zstandard.ZstdDecompressor()

        def zstd_page(data: bytes) -> bytes:
            _declared_at_most(zstandard.frame_content_size(data), page_size, "zstd")
            return bytes(zstd.decompress(data, max_output_size=page_size))
        return zstd_page
    raise Damaged(f"kdump page uses an unknown compression (flags {codec:#x})")


def _declared_at_most(declared: int, page_size: int, codec: str) -> None:
    if declared > page_size:
        raise Damaged(f"its {codec} data declares {declared:,} bytes, more than a page ({page_size:,})")


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block starts with (a little-endian base-128 varint)."""
    value = 0
    for i, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value
    raise Damaged("its snappy length field is malformed")


def _bit_runs(bitmap: bytes, count: int) -> Iterator[tuple[int, int]]:
    """Runs [first, end) of set bits among the first `count` bits of a little-endian bitmap, lowest
    first; linear in its length (the bits as text, searched by re, bit i at index i)."""
    value = int.from_bytes(bitmap, "little") & ((1 << count) - 1)
    text = format(value, f"0{count}b")[::-1] if count else ""
    for run in _ONES.finditer(text):
        yield run.start(), run.end()
