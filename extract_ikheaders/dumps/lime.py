"""LiME memory images: ranges of physical memory, each behind a 32-byte header.

Header (little-endian): magic u32 0x4C694D45 ("EMiL" on disk), version u32 (1), start u64,
end u64 (inclusive), reserved 8 bytes; then end - start + 1 bytes of memory. Repeated to EOF.
"""

from __future__ import annotations

import struct

from ..buffer import Buffer
from ..errors import Damaged, NotMine
from .physical import DumpInfo, ExtentTable, Gap, MappedMemory

MAGIC = 0x4C694D45
_HEADER = struct.Struct("<IIQQ8x")


def open_memory(buf: Buffer) -> MappedMemory:
    """The image's physical memory; NotMine unless it starts with a LiME range header."""
    if len(buf) < _HEADER.size or _HEADER.unpack_from(buf, 0)[0] != MAGIC:
        raise NotMine("no LiME header")
    extents, cut = _ranges(buf)
    detail = f"LiME, {len(extents)} range(s)" + (f", {cut.why}" if cut else "")
    return MappedMemory(buf, extents, DumpInfo("lime", detail), _Explain(cut))


def _ranges(buf: Buffer) -> tuple[ExtentTable, Gap | None]:
    """Every range, and what a truncated file lost (a range cut short keeps what is there)."""
    extents = ExtentTable()
    pos = 0
    while pos + _HEADER.size <= len(buf):
        magic, version, start, end = _HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise Damaged(f"LiME range header at file offset {pos:#x} has a bad magic ({magic:#x})")
        if version != 1 or end < start:
            raise Damaged(f"LiME range header at file offset {pos:#x} is corrupt (version {version}, "
                          f"{start:#x}-{end:#x})")
        data = pos + _HEADER.size
        size = end - start + 1
        if data + size > len(buf):
            present = len(buf) - data
            extents.append(start, present, data)
            return extents, Gap(start + present, end + 1, f"the file is truncated inside the range "
                                                           f"{start:#x}-{end:#x}")
        extents.append(start, size, data)
        pos = data + size
    return extents, None


class _Explain:
    """Why a physical address is absent: the truncated range, if that is where it lies; else None,
    and the memory's own answer (no range covers it) stands."""

    def __init__(self, cut: Gap | None) -> None:
        self._cut = cut

    def __call__(self, paddr: int) -> Gap | None:
        cut = self._cut
        if cut is not None and cut.end is not None and cut.start <= paddr < cut.end:
            return Gap(paddr, cut.end, cut.why)
        return None
