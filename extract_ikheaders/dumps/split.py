"""makedumpfile --split dump sets: one dump written as N kdump-compressed files.

Each part is a whole kdump file (headers, VMCOREINFO, notes and both bitmaps, repeated) whose
sub-header has split = 1 and the pfn range [start_pfn, end_pfn) whose pages it holds
(makedumpfile's diskdump_mod.h; start_pfn_64/end_pfn_64 from header version 6). makedumpfile does
not record how many parts there are: a set is whole when its ranges tile [0, max_mapnr).

Parts belong together when their headers agree on what one run of makedumpfile writes into every
part (kdump.Header.identity: utsname, timestamp, codec, block size, bitmap geometry, max_mapnr).
Ranges that overlap are refused: two parts would claim the same pages. A set with holes is read
for what it has; every failure then says which pfns the missing parts hold.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..buffer import Buffer
from ..errors import Damaged, NotMine, UsageError
from . import kdump
from .physical import DumpInfo, Gap, PhysicalMemory, coalesced

SET_FORMAT = "kdump split set"


@dataclass(frozen=True)
class Part:
    """One file of a split set, as its headers describe it."""

    path: str
    header: kdump.Header

    @property
    def empty(self) -> bool:
        return self.header.end_pfn <= self.header.start_pfn


def part_header(buf: Buffer) -> kdump.Header | None:
    """The kdump header of a --split part; None for anything else (a damaged header included: the
    input's own reading reports that)."""
    if bytes(buf[:8]) != kdump.SIGNATURE:
        return None
    try:
        header = kdump.read_header(kdump.BufferSource(buf))
    except Damaged:
        return None
    return header if header.split else None


def check_ranges(parts: Sequence[Part]) -> list[tuple[int, int]]:
    """The pfn ranges [start, end) no part holds (empty for a whole set). UsageError when parts of
    different dumps are mixed or ranges overlap; Damaged when a range lies outside the dump."""
    first = parts[0]
    for part in parts[1:]:
        if part.header.identity != first.header.identity:
            raise UsageError(f"is a part of another makedumpfile --split dump than {first.path} (their headers "
                             f"differ: {_difference(first.header, part.header)})", path=part.path)
    for part in parts:
        if not 0 <= part.header.start_pfn <= part.header.end_pfn <= part.header.max_mapnr:
            raise Damaged(f"its split range {part.header.start_pfn:#x}-{part.header.end_pfn:#x} does not lie "
                          f"within the dump's {part.header.max_mapnr:#x} pfns", path=part.path, layer="kdump")
    missing, covered, holder = [], 0, first
    for part in sorted((p for p in parts if not p.empty), key=lambda p: p.header.start_pfn):
        if part.header.start_pfn < covered:
            raise UsageError(f"its {part.header.split_range()} overlap the {holder.header.split_range()} of "
                             f"{holder.path}: the parts of one dump hold disjoint pfn ranges", path=part.path)
        if part.header.start_pfn > covered:
            missing.append((covered, part.header.start_pfn))
        covered, holder = part.header.end_pfn, part
    if covered < first.header.max_mapnr:
        missing.append((covered, first.header.max_mapnr))
    return missing


def _difference(a: kdump.Header, b: kdump.Header) -> str:
    names = ("layout", "header version", "utsname", "timestamp", "timestamp", "compression", "block size",
             "sub-header size", "bitmap size", "max_mapnr", "nr_cpus")
    differing = dict.fromkeys(n for n, x, y in zip(names, a.identity, b.identity, strict=True) if x != y)
    return ", ".join(differing) or "identity"


def describe_missing(missing: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{start:#x}-{end - 1:#x}" for start, end in missing)


class SplitSetMemory(PhysicalMemory):
    """The physical memory of a split set: each pfn is read from the part whose range holds it."""

    def __init__(self, parts: Sequence[kdump.KdumpMemory], names: Sequence[str], missing: list[tuple[int, int]]):
        ordered = sorted((p for p in parts if p.header.end_pfn > p.header.start_pfn),
                         key=lambda p: p.header.start_pfn)
        self.lead = min(parts, key=lambda p: p.header.start_pfn)  # its headers and notes serve the set
        self.page_size = self.lead.page_size
        self._parts = ordered or [self.lead]
        self._starts = [p.header.start_pfn for p in self._parts]
        self.missing = missing
        header = self.lead.header
        partial = None
        if missing:
            partial = (f"the given parts of this makedumpfile --split dump lack pfns {describe_missing(missing)} "
                       f"(of {header.max_mapnr:#x}): the parts holding them are needed too")
        detail = self.lead.info.detail.split(", makedumpfile --split part")[0]
        detail += f", makedumpfile --split set of {len(names)} parts"
        self.info = DumpInfo(SET_FORMAT, detail, header.vmcoreinfo, header.release or None, (),
                             sum(len(p.source) for p in parts), partial=partial, platform=self.lead.info.platform)

    def _part_at(self, pfn: int) -> kdump.KdumpMemory | None:
        i = bisect.bisect_right(self._starts, pfn) - 1
        if i >= 0 and pfn < self._parts[i].header.end_pfn:
            return self._parts[i]
        return None

    def ranges(self) -> Iterator[tuple[int, int]]:
        """Each part's runs in turn; a run that ends where the next part's first run starts is one."""
        return coalesced(run for part in self._parts for run in part.ranges())

    def read_some(self, paddr: int, size: int) -> bytes:
        parts: list[bytes] = []
        while size > 0:
            part = self._part_at(paddr // self.page_size)
            if part is None:
                break
            wanted = min(size, part.header.end_pfn * self.page_size - paddr)
            try:
                data = part.read_some(paddr, wanted)
            except Damaged:
                if parts:  # only the very first page's damage is raised (the PhysicalMemory contract)
                    break
                raise
            parts.append(data)
            paddr, size = paddr + len(data), size - len(data)
            if len(data) < wanted:
                break
        return b"".join(parts)

    def gap(self, paddr: int) -> Gap:
        pfn = paddr // self.page_size
        part = self._part_at(pfn)
        if part is not None:
            return part.gap(paddr)
        hole_end = next((end for start, end in self.missing if start <= pfn < end), None)
        if hole_end is None:
            return Gap(paddr, None, f"pfn {pfn:#x} is beyond the dump's {self.lead.header.max_mapnr:#x} pfns")
        return Gap(paddr, hole_end * self.page_size,
                   f"pfn {pfn:#x}-{hole_end - 1:#x}: in a part of the makedumpfile --split dump that was not given")

    def find(self, pattern: bytes, start: int, end: int) -> int:
        """Each part's own find over its range, and the seam to the next part (a pattern may straddle it)."""
        keep = len(pattern) - 1
        for part in self._parts:
            lo = max(start, part.header.start_pfn * self.page_size)
            hi = min(end, part.header.end_pfn * self.page_size)
            if lo >= end:
                break
            if lo >= hi:
                continue
            hit = part.find(pattern, lo, hi)
            if hit != -1:
                return hit
            if keep:
                seam_at = max(lo, hi - keep)
                at = self.read_some(seam_at, hi - seam_at + keep).find(pattern)
                if at != -1 and seam_at + at < end:
                    return seam_at + at
        return -1


def open_set(bufs: Sequence[Buffer], names: Sequence[str]) -> SplitSetMemory:
    """The memory of the split parts in `bufs` (named `names`), read as one dump."""
    parts, headers = [], []
    for buf, name in zip(bufs, names, strict=True):
        try:
            mem = kdump.open_memory(buf)
        except NotMine:
            raise UsageError("not a kdump-compressed file, so not a part of a makedumpfile --split dump",
                             path=name) from None
        if not mem.header.split:
            raise UsageError("a whole kdump file, not a part of a makedumpfile --split dump", path=name)
        parts.append(mem)
        headers.append(Part(name, mem.header))
    return SplitSetMemory(parts, names, check_ranges(headers))


# The parts of the set an input was opened as, while it is open: every reader opens a dump through
# search.open_dump(buf), which asks here, so a set reads as one dump without each reader knowing.
_ATTACHED: dict[int, tuple[Buffer, tuple[Buffer, ...], tuple[str, ...]]] = {}


@contextmanager
def attached(lead: Buffer, bufs: Sequence[Buffer], names: Sequence[str]) -> Iterator[None]:
    """While open, `lead` (the part that holds pfn 0) stands for the whole set in open_dump."""
    _ATTACHED[id(lead)] = (lead, tuple(bufs), tuple(names))
    try:
        yield
    finally:
        del _ATTACHED[id(lead)]


def attached_set(buf: Buffer) -> SplitSetMemory | None:
    entry = _ATTACHED.get(id(buf))
    if entry is None or entry[0] is not buf:
        return None
    return open_set(entry[1], entry[2])
