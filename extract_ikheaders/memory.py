"""Crash images: find the headers archive in a dump's physical memory.

A CONFIG_IKHEADERS=y kernel keeps the archive in .rodata, which is physically contiguous, so a
carve over the physical address space finds it whole. Each dump format (containers/elfcore.py,
kdump.py, flattened.py, lime.py) presents its memory as a PhysicalMemory; this module picks the
reader, carves (the kernel's own region first when VMCOREINFO says where it is) and decodes the
candidate to its exact end, which also checks every block's CRC.

A CONFIG_IKHEADERS=m kernel with kheaders.ko loaded keeps it in the module's vmalloc pages: a
candidate whose stream header lies in a page mapped in module/vmalloc space is read forward through
the kernel's page tables instead (pagewalk.py).

A candidate that runs into memory missing from the dump is reported as Damaged naming the missing
physical (or virtual) range: a cut-short archive is never returned.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import lzma
import mmap
import re
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import imagetext, xzstream
from .errors import Damaged, NotFound, NotMine
from .model import Found, Layer, Method
from .xzstream import Buffer

if TYPE_CHECKING:
    from .pagewalk import Resolver, VirtualHit

MAX_ARCHIVE = 64 << 20  # a kheaders archive is ~4-10 MB; anything longer is not one (and RSS stays low)
_STEP = 1 << 20  # bytes read per step while following a candidate stream
_PROBE = 64 * 1024
_PAGE = 4096  # the smallest page size: the stream header's page is contiguous with it
_KERNEL_WINDOW = 128 << 20  # searched first, from the kernel's physical start (VMCOREINFO)
_BANNER_WINDOW = 64 << 20  # either side of the archive, for the `Linux version` banner
RELEASE_EVERY = 16 << 20  # mapped bytes touched before dropping them from our page tables
_START_KERNEL_MAP = 0xFFFFFFFF80000000  # x86_64 __START_KERNEL_map: __pa_symbol(x) = x - it + phys_base
_BANNER = re.compile(rb"Linux version (\d+\.\d+[^\s\x00]*) \(")


@dataclass(frozen=True)
class Gap:
    """Physical memory absent from the dump: [start, end) and why (end None: to the end of memory)."""

    start: int
    end: int | None
    why: str

    def describe(self) -> str:
        span = f"{self.start:#x}-{self.end - 1:#x}" if self.end is not None else f"{self.start:#x} onwards"
        return f"physical {span} is not in the dump ({self.why})"


@dataclass
class DumpInfo:
    """What a reader learnt from the dump's metadata."""

    format: str  # Layer name: "elf-core", "kdump", "lime"
    detail: str
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    release: str | None = None  # from the format's own header (kdump utsname)
    outer: tuple[Layer, ...] = ()  # layers around the dump itself (flattened)
    length: int | None = None  # the dump's size when it is not the input's (rebuilt from flattened)


class PhysicalMemory(ABC):
    """The physical address space a dump holds: present ranges in address order, read, find."""

    info: DumpInfo

    @abstractmethod
    def ranges(self) -> Iterator[tuple[int, int]]:
        """Maximal runs [start, end) of present bytes, in address order."""

    @abstractmethod
    def read_some(self, paddr: int, size: int) -> bytes:
        """Up to `size` bytes from `paddr`, stopping at the first absent byte (b"" if absent)."""

    @abstractmethod
    def gap(self, paddr: int) -> Gap:
        """The absent range that starts at `paddr` (called when read_some returned short)."""

    def find(self, pattern: bytes, start: int, end: int) -> int:
        """Lowest address in [start, end) at which `pattern` lies in present memory, or -1.

        A match may run past `end` (regions searched one after the other miss nothing).
        """
        keep = len(pattern) - 1
        for run_start, run_end in self.ranges():
            if run_start >= end:
                break
            lo, hi = max(start, run_start), min(run_end, end + keep)
            tail = b""
            at = lo
            while at < hi and at - len(tail) < end:
                data = self.read_some(at, min(_STEP, hi - at))
                if not data:
                    break
                chunk = tail + data
                hit = chunk.find(pattern)
                if hit != -1:
                    found = at - len(tail) + hit
                    return found if found < end else -1
                tail = chunk[len(chunk) - keep :] if keep else b""
                at += len(data)
        return -1

    def read(self, paddr: int, size: int) -> bytes:
        """Exactly `size` bytes; Damaged naming the missing range otherwise."""
        data = self.read_some(paddr, size)
        if len(data) < size:
            raise Damaged(self.gap(paddr + len(data)).describe(), offset=paddr + len(data))
        return data


# Memory backed by extents of a mapped file (ELF cores, LiME) ----------------------------------


@dataclass(frozen=True)
class Extent:
    paddr: int
    size: int
    offset: int  # in the file


class ExtentTable:
    """Where each range of physical memory lies in the file, as three columns of 64-bit integers
    (24 bytes a range): a 64 MiB LiME file can declare two million ranges, which as Extent objects
    took 0.9 GB. Readers append in file order; `disjoint` sorts and trims overlaps."""

    def __init__(self) -> None:
        self.paddr, self.size, self.offset = array("Q"), array("Q"), array("Q")

    @classmethod
    def of(cls, extents: Iterable[Extent]) -> ExtentTable:
        table = cls()
        for e in extents:
            table.append(e.paddr, e.size, e.offset)
        return table

    def append(self, paddr: int, size: int, offset: int) -> None:
        self.paddr.append(paddr)
        self.size.append(size)
        self.offset.append(offset)

    def __len__(self) -> int:
        return len(self.paddr)

    def __getitem__(self, i: int) -> Extent:
        return Extent(self.paddr[i], self.size[i], self.offset[i])

    def disjoint(self) -> ExtentTable:
        """Sorted by address, empty extents dropped, overlaps trimmed. Overlaps (kdump's /proc/vmcore
        maps the kernel text twice) are the same bytes; the extent sorted first keeps them."""
        paddr = self.paddr
        in_order = all(a <= b for a, b in itertools.pairwise(paddr))
        order: Iterable[int] = range(len(paddr)) if in_order else sorted(range(len(paddr)), key=paddr.__getitem__)
        result = ExtentTable()
        covered = -1
        for i in order:
            start, end, offset = paddr[i], paddr[i] + self.size[i], self.offset[i]
            if end <= max(start, covered):
                continue
            if start < covered:
                start, offset = covered, offset + covered - start
            result.append(start, end - start, offset)
            covered = end
        return result


class MappedMemory(PhysicalMemory):
    """Physical memory stored verbatim in the file: find runs at bytes.find speed on the mmap."""

    def __init__(self, buf: Buffer, extents: ExtentTable | Sequence[Extent], info: DumpInfo,
                 explain: Callable[[int], Gap | None] | None = None) -> None:
        self.buf = buf
        self.info = info
        table = extents if isinstance(extents, ExtentTable) else ExtentTable.of(extents)
        self._table = table.disjoint()
        self._starts, self._sizes, self._offsets = self._table.paddr, self._table.size, self._table.offset
        self._explain = explain
        self._touched = 0

    @property
    def extents(self) -> tuple[Extent, ...]:
        return tuple(self._table[i] for i in range(len(self._table)))

    def ranges(self) -> Iterator[tuple[int, int]]:
        run: tuple[int, int] | None = None
        for start, size in zip(self._starts, self._sizes, strict=True):
            if run is not None and run[1] == start:
                run = (run[0], start + size)
                continue
            if run is not None:
                yield run
            run = (start, start + size)
        if run is not None:
            yield run

    def _extent_at(self, paddr: int) -> int:
        """Index of the extent holding paddr, or -1."""
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0 and paddr < self._starts[i] + self._sizes[i]:
            return i
        return -1

    def read_some(self, paddr: int, size: int) -> bytes:
        parts: list[bytes] = []
        i = self._extent_at(paddr)
        while size > 0 and i != -1:
            skip = paddr - self._starts[i]
            take = min(size, self._sizes[i] - skip)
            at = self._offsets[i] + skip
            parts.append(bytes(self.buf[at : at + take]))
            self._touch(take)
            paddr, size = paddr + take, size - take
            nxt = i + 1
            i = nxt if nxt < len(self._starts) and self._starts[nxt] == paddr else -1
        return b"".join(parts)

    def gap(self, paddr: int) -> Gap:
        explained = self._explain(paddr) if self._explain is not None else None
        if explained is not None:
            return explained
        i = bisect.bisect_right(self._starts, paddr)
        end = self._starts[i] if i < len(self._starts) else None
        return Gap(paddr, end, "no range of the dump covers it")

    def find(self, pattern: bytes, start: int, end: int) -> int:
        keep = len(pattern) - 1
        first = max(0, bisect.bisect_right(self._starts, start) - 1)  # not a walk from the first extent:
        for i in range(first, len(self._starts)):  # a search per window would make n ranges cost n²
            e_start, e_end, offset = self._starts[i], self._starts[i] + self._sizes[i], self._offsets[i]
            if e_start >= end:
                break
            lo, hi = max(start, e_start), min(end, e_end)
            if lo >= hi:
                continue
            stop = min(e_end, hi + keep)
            hit = self._find_in_file(pattern, offset + lo - e_start, offset + stop - e_start)
            if hit != -1:
                return e_start + hit - offset
            # A pattern straddling two physically adjacent extents.
            adjacent = i + 1 < len(self._starts) and self._starts[i + 1] == e_end
            if keep and adjacent and hi > e_end - keep:
                seam_at = max(lo, e_end - keep)
                at = self.read_some(seam_at, e_end - seam_at + keep).find(pattern)
                if at != -1 and seam_at + at < hi:
                    return seam_at + at
        return -1

    def _find_in_file(self, pattern: bytes, lo: int, hi: int) -> int:
        """buf.find over [lo, hi) in slices, dropping mapped pages behind us to bound RSS."""
        slice_len = RELEASE_EVERY
        for at in range(lo, hi, slice_len):
            stop = min(hi, at + slice_len + len(pattern) - 1)
            hit = self.buf.find(pattern, at, stop)
            self._touch(stop - at)
            if hit != -1:
                return hit
        return -1

    def _touch(self, count: int) -> None:
        self._touched += count
        if self._touched >= RELEASE_EVERY:
            self._touched = 0
            release_mapping(self.buf)


def release_mapping(buf: object) -> None:
    """Drop an mmap's pages from our page tables (the page cache keeps them): RSS stays small
    however much of a big dump is scanned. A no-op for in-memory buffers."""
    if isinstance(buf, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):  # only an optimisation
            buf.madvise(mmap.MADV_DONTNEED)


# VMCOREINFO ----------------------------------------------------------------------------------


def parse_vmcoreinfo(data: bytes) -> dict[str, str]:
    """KEY=value lines (SYMBOL(x)=..., NUMBER(x)=..., OSRELEASE=...)."""
    info: dict[str, str] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b"=")
        if sep and key:
            info[imagetext.decode(key)] = imagetext.decode(value.rstrip(b"\0"))
    return info


def kernel_start(vmcoreinfo: dict[str, str]) -> int | None:
    """Physical address of _stext when VMCOREINFO tells it (x86_64 and arm64), else None."""
    try:
        stext = int(vmcoreinfo["SYMBOL(_stext)"], 16)
        if "NUMBER(phys_base)" in vmcoreinfo and stext >= _START_KERNEL_MAP:
            return stext - _START_KERNEL_MAP + int(vmcoreinfo["NUMBER(phys_base)"], 0)
        if "NUMBER(kimage_voffset)" in vmcoreinfo:  # arm64: __pa_symbol(x) = x - kimage_voffset
            return stext - int(vmcoreinfo["NUMBER(kimage_voffset)"], 16)
    except (KeyError, ValueError):
        return None
    return None


# The search ----------------------------------------------------------------------------------


def open_dump(buf: Buffer) -> PhysicalMemory:
    """The reader for this dump's format; NotMine if it is none of them."""
    from .containers import elfcore, flattened, kdump, lime

    for reader in (elfcore.open, kdump.open, flattened.open, lime.open):
        try:
            return reader(buf)
        except NotMine:
            continue
    raise NotMine("not a crash dump")


Progress = Callable[[int, int], None]  # (bytes searched, bytes to search)
_WINDOW = 256 << 20  # progress granularity of a scan


def find_in_dump(buf: Buffer, path: str, layers: tuple[Layer, ...] = (), progress: Progress | None = None) -> Found:
    """The headers archive in a crash image (ELF core, kdump-compressed, flattened, LiME).

    Raises NotMine (not a dump), NotFound (no archive in its memory) or Damaged (an archive that
    runs into memory missing from the dump, or breaks off).
    """
    return _find(open_dump(buf), buf, path, layers, progress)


def _find(mem: PhysicalMemory, buf: Buffer, path: str, layers: tuple[Layer, ...],
          progress: Progress | None = None) -> Found:
    from .pagewalk import Resolver, VirtualHit

    regions, hint = _search_order(mem)
    resolver = Resolver(mem, buf)
    hit, misses = _carve(mem, regions, resolver, progress)
    length = mem.info.length if mem.info.length is not None else len(buf)
    outer = (*layers, *mem.info.outer, Layer(mem.info.format, 0, length, mem.info.detail))
    if hit is None:
        raise _not_found(path, mem, misses, resolver)
    paddr, archive = hit
    notes = [hint] if hint else []
    if misses.count:
        notes.append(f"{misses.count} incomplete copy(ies) of the archive's start seen elsewhere in memory "
                     f"(first at physical {misses.first_at:#x})")
    release, source = _release(mem, paddr)
    if source:
        notes.append(source)
    if isinstance(archive, VirtualHit):
        notes.append(_virtual_note(archive))
        layer = Layer("virtual memory", archive.vaddr, len(archive.archive), archive.top.describe())
        return Found(path=path, method=Method.PAGEWALK, offset=archive.vaddr, archive=archive.archive,
                     layers=(*outer, layer), release=release, notes=tuple(notes), verified=True)
    layer = Layer("physical memory", paddr, len(archive), _describe_memory(mem))
    return Found(path=path, method=Method.CARVE, offset=paddr, archive=archive, layers=(*outer, layer),
                 release=release, notes=tuple(notes), verified=True)  # decoded whole while carving


def _virtual_note(hit: VirtualHit) -> str:
    return (f"page walk: the stream header at physical {hit.paddr:#x} is mapped at virtual {hit.vaddr:#x} "
            f"(module/vmalloc space); read {hit.pages} pages through the {hit.top.levels}-level page tables "
            f"({hit.top.source}, top table at physical {hit.top.paddr:#x})")


def find_in_raw(buf: Buffer, path: str, layers: tuple[Layer, ...] = ()) -> Found:
    """The archive in headerless physical memory (pmemsave, /dev/mem copies), address 0 at offset 0.

    Unlike a plain carve it passes over copies that break off (a module's first page) to a whole
    one further on, and names what it saw when there is none.
    """
    if len(buf) == 0:
        raise NotFound(f"{path}: empty file")
    info = DumpInfo("raw memory", "no dump header: physical memory assumed to start at address 0")
    return _find(MappedMemory(buf, [Extent(0, len(buf), 0)], info), buf, path, layers)


def _search_order(mem: PhysicalMemory) -> tuple[list[tuple[int, int]], str]:
    """The kernel's own region first when VMCOREINFO locates it, then everything else."""
    everything = [(0, 1 << 64)]
    start = kernel_start(mem.info.vmcoreinfo)
    if start is None or start < 0:
        return everything, ""
    end = start + _KERNEL_WINDOW
    note = f"VMCOREINFO puts the kernel at physical {start:#x}; searched there first"
    return [(start, end), (0, start), (end, 1 << 64)], note


Hit = tuple[int, "bytes | VirtualHit"]  # where the archive's stream header is, and the archive


class _Misses:
    """Incomplete candidates: counted, and only the ones a report names kept (memory full of xz
    magics would otherwise keep an exception per candidate)."""

    def __init__(self) -> None:
        self.count = 0
        self.first_at = -1
        self._first: Damaged | None = None
        self._incomplete: Damaged | None = None
        self._unreachable: Damaged | None = None

    def add(self, pos: int, damage: Damaged) -> None:
        from .pagewalk import Unreachable

        if not self.count:
            self.first_at, self._first = pos, damage
        self.count += 1
        if isinstance(damage, Unreachable) and self._unreachable is None:
            self._unreachable = damage
        elif isinstance(damage, _Incomplete) and self._incomplete is None:
            self._incomplete = damage

    def telling(self) -> Damaged | None:
        """Memory missing from the dump explains more than a stream that breaks off."""
        return self._unreachable or self._incomplete or self._first


def _carve(mem: PhysicalMemory, regions: list[tuple[int, int]], resolver: Resolver | None = None,
           progress: Progress | None = None) -> tuple[Hit | None, _Misses]:
    """The first complete headers archive in the regions, and the incomplete candidates seen.
    A candidate whose first page is mapped in module/vmalloc space is read through the page tables.
    Windows are made as they are searched: a dump may declare millions of ranges."""
    from .pagewalk import VirtualHit

    misses = _Misses()
    total = sum(size for _, _, size in _windows(mem, regions)) if progress is not None else 0
    done, top = 0, max(h for _, h in regions)
    for lo, hi, size in _windows(mem, regions):
        # A magic may straddle two windows: search a little past the end, accept starts before it.
        stop = min(hi + len(xzstream.MAGIC) - 1, top)
        pos = mem.find(xzstream.MAGIC, lo, stop)
        while pos != -1 and pos < hi:
            outcome = _follow(mem, pos, resolver)
            if isinstance(outcome, bytes | VirtualHit):
                return (pos, outcome), misses
            if outcome is not None:
                misses.add(pos, outcome)
            pos = mem.find(xzstream.MAGIC, pos + 1, stop)
        done += size
        if progress is not None:
            progress(done, total)
    return None, misses


def _windows(mem: PhysicalMemory, regions: list[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """(lo, hi, bytes present) spans of the regions holding about _WINDOW present bytes each.
    Regions may span terabytes of address space and a dump may hold millions of short runs: a span
    covers as many runs as fill it (mem.find skips the gaps between them), so the number of
    searches follows the bytes present, not the number of runs."""
    for lo, hi in regions:
        span_lo, last_hi, present = -1, -1, 0
        for run_lo, run_hi in mem.ranges():
            a, b = max(lo, run_lo), min(hi, run_hi)
            if run_lo >= hi:
                break
            if a >= b:
                continue
            if span_lo < 0:
                span_lo = a
            while present + (b - a) >= _WINDOW:  # cut inside this run at the window's size
                cut = a + _WINDOW - present
                yield span_lo, cut, _WINDOW
                span_lo, present, a = cut, 0, cut
            present += b - a
            last_hi = b
        if present:
            yield span_lo, last_hi, present


def _follow(mem: PhysicalMemory, pos: int, resolver: Resolver | None = None) -> bytes | VirtualHit | Damaged | None:
    """The whole archive starting at `pos`; Damaged if it starts but cannot be completed; None if
    the bytes there are not a headers archive at all. Read through the page tables when its page is
    mapped in module/vmalloc space, physically otherwise."""
    try:
        head = mem.read_some(pos, _PROBE)
    except Damaged:
        return None
    if xzstream.header_flags(head, 0) is None or not _looks_like_headers(head, pos):
        return None
    virtual = resolver.follow(pos) if resolver is not None else None
    if virtual is not None:
        return virtual
    try:
        return _decode_from(mem, pos)
    except Damaged as exc:
        return exc


def _looks_like_headers(head: bytes, pos: int) -> bool:
    """The probe, then again on the header's own page alone: a module's archive in vmalloc space
    continues elsewhere, and the garbage after its first page must not hide what that page is."""
    if xzstream.looks_like_headers(head, 0):
        return True
    cut = _PAGE - pos % _PAGE
    return cut < len(head) and xzstream.looks_like_headers(head[:cut], 0)


def _decode_from(mem: PhysicalMemory, pos: int) -> bytes:
    """Read forward, decoding as we go: the decoder finds the exact end and checks every CRC."""
    decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    archive = bytearray()
    while not decoder.eof:
        at = pos + len(archive)
        chunk = mem.read_some(at, _STEP)
        if not chunk:
            gap = mem.gap(at)
            raise _Incomplete(f"the headers archive at physical {pos:#x} is incomplete after {len(archive):,} "
                          f"bytes: {gap.describe()}", offset=at)
        archive += chunk
        try:
            xzstream.feed_discarding(decoder, chunk)
        except lzma.LZMAError:
            raise Damaged(_broken_message(pos, at, len(chunk)), offset=at) from None
        if len(archive) > MAX_ARCHIVE:
            raise Damaged(f"the xz stream at physical {pos:#x} does not end within {MAX_ARCHIVE:,} bytes",
                          offset=pos)
    return bytes(archive[: len(archive) - len(decoder.unused_data)])


class _Incomplete(Damaged):
    """A candidate that runs into memory missing from the dump (the most telling failure)."""


def _broken_message(pos: int, at: int, size: int) -> str:
    return (f"a headers archive starts at physical {pos:#x} but its xz data breaks off in "
            f"{at:#x}-{at + size - 1:#x}: the archive is not physically contiguous here (a kernel built "
            f"with CONFIG_IKHEADERS=m keeps it in the kheaders module's vmalloc memory, where only the "
            f"first page follows the stream header; reassembling it would need the kernel's page tables)")


def _not_found(path: str, mem: PhysicalMemory, misses: _Misses,
               resolver: Resolver | None = None) -> NotFound | Damaged:
    first = misses.telling()
    if first is not None:
        more = f" ({misses.count - 1} more incomplete candidate(s))" if misses.count > 1 else ""
        why = f"; no page walk: {resolver.unavailable}" if resolver is not None and resolver.unavailable else ""
        return Damaged(f"{path}: {first}{more}{why}", offset=first.offset)
    return NotFound(f"{path}: cannot find kernel headers in the dump's memory ({_describe_memory(mem)}); "
                    f"was the kernel built with CONFIG_IKHEADERS=y? (=m keeps them in a module, which a "
                    f"dump holds only if kheaders.ko was loaded, and then scattered over vmalloc pages)")


def _describe_memory(mem: PhysicalMemory) -> str:
    count = total = 0
    last = 0
    for start, end in mem.ranges():
        count, total, last = count + 1, total + end - start, end
    return f"{total:,} bytes of physical memory in {count} range(s) up to {last:#x}"


# Release -------------------------------------------------------------------------------------


def _release(mem: PhysicalMemory, paddr: int) -> tuple[str | None, str]:
    """The running kernel's release, from what every dump of it holds whatever its layout: VMCOREINFO,
    else the dump header, else the kernel's own utsname (init_uts_ns), else a banner near the archive.
    (The banner alone depended on where a loaded kheaders.ko's pages happened to land.)"""
    release = mem.info.vmcoreinfo.get("OSRELEASE") or mem.info.release
    if release:
        return release, ""
    uts = utsname_release(mem)
    if uts is not None:
        return uts[0], f"release from the kernel's utsname at physical {uts[1]:#x}"
    banner = banner_release(mem, max(0, paddr - _BANNER_WINDOW), paddr + _BANNER_WINDOW)
    if banner is None:
        return None, ""
    release, at = banner
    return release, f"release from the banner at physical {at:#x}"


# struct new_utsname: six 65-byte fields, sysname "Linux" first, then nodename, release, version.
_UTS_FIELD = 65
_UTS_SYSNAME = b"Linux".ljust(_UTS_FIELD, b"\0")
_UTS_RELEASE = re.compile(rb"(\d+\.\d+[\x21-\x7e]{0,60})\x00+")


def utsname_release(mem: PhysicalMemory) -> tuple[str, int] | None:
    """The release in the first struct new_utsname in physical memory (the kernel's init_uts_ns, or
    a copy uname() made of it), and where it is: the sysname field "Linux" padded with NULs, a
    release field of digits and dots padded with NULs, and a version field starting with '#'."""
    for lo, hi in mem.ranges():
        at = mem.find(_UTS_SYSNAME, lo, hi)
        while at != -1:
            fields = mem.read_some(at, 4 * _UTS_FIELD)
            release = fields[2 * _UTS_FIELD : 3 * _UTS_FIELD]
            match = _UTS_RELEASE.fullmatch(release)
            if match and fields[3 * _UTS_FIELD : 3 * _UTS_FIELD + 1] == b"#":
                return match.group(1).decode("ascii"), at
            at = mem.find(_UTS_SYSNAME, at + 1, hi)
    return None


def banner_release(mem: PhysicalMemory, lo: int, hi: int) -> tuple[str, int] | None:
    """The release of the first `Linux version X (` banner in physical [lo, hi), and where it is."""
    at = mem.find(b"Linux version ", lo, hi)
    while at != -1:
        match = _BANNER.match(mem.read_some(at, 200))
        if match:
            return imagetext.decode(match.group(1)), at
        at = mem.find(b"Linux version ", at + 1, hi)
    return None
