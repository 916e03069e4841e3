"""Crash images: find the headers archive in a dump's physical memory.

A CONFIG_IKHEADERS=y kernel keeps the archive in .rodata, which is physically contiguous, so a
carve over the physical address space finds it whole. Each dump format (elfcore.py, kdump.py,
flattened.py, lime.py) presents its memory as a PhysicalMemory (physical.py); this module picks the
reader, carves (the kernel's own region first when VMCOREINFO says where it is) and decodes the
candidate to its exact end, which also checks every block's CRC.

A CONFIG_IKHEADERS=m kernel with kheaders.ko loaded keeps it in the module's vmalloc pages: a
candidate whose stream header lies in a page mapped in module/vmalloc space is read forward through
the kernel's page tables instead (pagewalk.py).

A candidate that runs into memory missing from the dump is reported as Damaged naming the missing
physical (or virtual) range: a cut-short archive is never returned.
"""

from __future__ import annotations

import lzma
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import imagetext
from ..archive import xzstream
from ..buffer import Buffer
from ..errors import Damaged, NotFound, NotMine
from ..model import Check, Found, Layer, Method
from . import elfcore, flattened, kdump, lime, split
from .pagewalk import Resolver, Unreachable, VirtualHit
from .physical import DumpInfo, Extent, MappedMemory, PhysicalMemory, kernel_start, vmcoreinfo_in_memory

if TYPE_CHECKING:
    from .pagewalk import Resolver, VirtualHit

_STEP = 1 << 20  # bytes read per step while following a candidate stream
_PROBE = 64 * 1024
_PAGE = 4096  # the smallest page size: the stream header's page is contiguous with it
_KERNEL_WINDOW = 128 << 20  # searched first, from the kernel's physical start (VMCOREINFO)
_BANNER_WINDOW = 64 << 20  # either side of the archive, for the `Linux version` banner


# The search ----------------------------------------------------------------------------------


def open_dump(buf: Buffer) -> PhysicalMemory:
    """The reader for this dump's format (a split set's when `buf` stands for one: split.attached);
    NotMine if it is none of them."""
    whole_set = split.attached_set(buf)
    if whole_set is not None:
        return whole_set
    for reader in (elfcore.open_memory, kdump.open_memory, flattened.open_memory, lime.open_memory):
        try:
            mem = reader(buf)
        except NotMine:
            continue
        return with_vmcoreinfo_from_memory(mem) if mem.info.format == "lime" else mem
    raise NotMine("not a crash dump")


def with_vmcoreinfo_from_memory(mem: PhysicalMemory) -> PhysicalMemory:
    """`mem`, its VMCOREINFO taken from the kernel's own copy in memory when the format has no notes
    (LiME, raw): what places kallsyms and finds the page tables there too."""
    found = vmcoreinfo_in_memory(mem)
    if found:
        mem.info = replace(mem.info, vmcoreinfo=found, detail=f"{mem.info.detail}, VMCOREINFO found in memory")
    return mem


Progress = Callable[[int, int], None]  # (bytes searched, bytes to search)
_WINDOW = 256 << 20  # progress granularity of a scan


def find_in_dump(buf: Buffer, path: str, layers: tuple[Layer, ...] = (), progress: Progress | None = None) -> Found:
    """The headers archive in a crash image (ELF core, kdump-compressed, flattened, LiME).

    Raises NotMine (not a dump), NotFound (no archive in its memory) or Damaged (an archive that
    runs into memory missing from the dump, or breaks off).
    """
    mem = open_dump(buf)
    try:
        return _find(mem, buf, path, layers, progress)
    except (NotFound, Damaged) as exc:
        raise with_partial(exc, mem) from None


def with_partial(exc: NotFound | Damaged, mem: PhysicalMemory) -> NotFound | Damaged:
    """`exc`, saying which memory the input lacks by design (a split dump's parts not given)."""
    if mem.info.partial and mem.info.partial not in exc.reason:
        exc.reason = f"{exc.reason}; {mem.info.partial}"
        exc.args = (exc.reason,)
    return exc


def _find(mem: PhysicalMemory, buf: Buffer, path: str, layers: tuple[Layer, ...],
          progress: Progress | None = None) -> Found:
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
                     layers=(*outer, layer), release=release, notes=tuple(notes), verified=Check.CONTENT)
    layer = Layer("physical memory", paddr, len(archive), _describe_memory(mem))
    return Found(path=path, method=Method.CARVE, offset=paddr, archive=archive, layers=(*outer, layer),
                 release=release, notes=tuple(notes), verified=Check.CONTENT)  # decoded whole while carving


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
        raise NotFound("empty file", path=path)
    info = DumpInfo("raw memory", "no dump header: physical memory assumed to start at address 0")
    return _find(with_vmcoreinfo_from_memory(MappedMemory(buf, [Extent(0, len(buf), 0)], info)), buf, path, layers)


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
        if len(archive) > xzstream.MAX_ARCHIVE:
            raise Damaged(f"the xz stream at physical {pos:#x} does not end within {xzstream.MAX_ARCHIVE:,} bytes",
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
        return Damaged(f"{first}{more}{why}", path=path, offset=first.offset)
    return NotFound(f"cannot find kernel headers in the dump's memory ({_describe_memory(mem)}); "
                    f"was the kernel built with CONFIG_IKHEADERS=y? (=m keeps them in a module, which a "
                    f"dump holds only if kheaders.ko was loaded, and then scattered over vmalloc pages)", path=path)


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
    found = imagetext.banner_at(lambda at: mem.read_some(at, imagetext.BANNER_MAX),
                                lambda at: mem.find(imagetext.BANNER_START, max(at, lo), hi))
    return (found[0], found[2]) if found else None
