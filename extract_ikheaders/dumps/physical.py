"""Physical memory as a dump presents it: present ranges in address order, reads that stop at the
first absent byte, and a find that skips what is absent. Each dump reader (elfcore, kdump,
flattened, lime) implements PhysicalMemory; MappedMemory serves every format whose memory lies
verbatim in the file. VMCOREINFO parsing lives here too: every reader finds it in its own way.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import mmap
import re
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .. import imagetext
from ..buffer import Buffer
from ..errors import Damaged
from ..model import Layer, Platform

_STEP = 1 << 20  # bytes read per step of a find
RELEASE_EVERY = 16 << 20  # mapped bytes touched before dropping them from our page tables
_START_KERNEL_MAP = 0xFFFFFFFF80000000  # x86_64 __START_KERNEL_map: __pa_symbol(x) = x - it + phys_base


@dataclass(frozen=True)
class Gap:
    """Physical memory absent from the dump: [start, end) and why (end None: to the end of memory)."""

    start: int
    end: int | None
    why: str

    def describe(self) -> str:
        span = f"{self.start:#x}-{self.end - 1:#x}" if self.end is not None else f"{self.start:#x} onwards"
        return f"physical {span} is not in the dump ({self.why})"


@dataclass(frozen=True)
class DumpInfo:
    """What a reader learnt from the dump's metadata."""

    format: str  # Layer name: "elf-core", "kdump", "lime"
    detail: str
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    release: str | None = None  # from the format's own header (kdump utsname)
    outer: tuple[Layer, ...] = ()  # layers around the dump itself (flattened)
    length: int | None = None  # the dump's size when it is not the input's (rebuilt from flattened)
    partial: str | None = None  # why memory is missing by design (a split part alone): said in every failure
    platform: Platform | None = None  # the dumped machine (ELF core header, kdump utsname): its word size, byte order


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


def coalesced(runs: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Ordered runs [start, end), each joined with the next where that one starts at its end."""
    pending: tuple[int, int] | None = None
    for start, end in runs:
        if pending is not None and pending[1] == start:
            pending = (pending[0], end)
            continue
        if pending is not None:
            yield pending
        pending = (start, end)
    if pending is not None:
        yield pending


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


_VMCOREINFO_START = b"OSRELEASE="  # the first line the kernel writes (kernel/vmcore_info.c)
_VMCOREINFO_MAX = 1 << 16  # VMCOREINFO_BYTES is one page
_VMCOREINFO_TRIES = 256  # candidates read at most: memory full of the key costs no more
_RELEASE = re.compile(r"\d+\.\d+[\w.+~-]*")


def vmcoreinfo_in_memory(mem: PhysicalMemory) -> dict[str, str]:
    """The kernel's own VMCOREINFO text (vmcoreinfo_data, or the note's copy) found in physical
    memory, for formats that carry no notes (LiME, raw): {} when there is none that checks out (a
    release, a power-of-two PAGESIZE and SYMBOL() lines; the format string "OSRELEASE=%s" in the
    kernel's .rodata is not one)."""
    tries = 0
    for lo, hi in mem.ranges():
        at = mem.find(_VMCOREINFO_START, lo, hi)
        while at != -1 and tries < _VMCOREINFO_TRIES:
            tries += 1
            info = parse_vmcoreinfo(mem.read_some(at, _VMCOREINFO_MAX).split(b"\0", 1)[0])
            if _plausible_vmcoreinfo(info):
                return info
            at = mem.find(_VMCOREINFO_START, at + 1, hi)
    return {}


def _plausible_vmcoreinfo(info: dict[str, str]) -> bool:
    page = info.get("PAGESIZE", "")
    return (_RELEASE.fullmatch(info.get("OSRELEASE", "")) is not None and page.isdigit()
            and int(page) >= 4096 and int(page) & (int(page) - 1) == 0
            and any(key.startswith("SYMBOL(") for key in info))


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
