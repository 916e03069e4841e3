"""makedumpfile's flattened format (-F, and QEMU 7.2's kdump output): a kdump file sent as a stream.

A 4096-byte header (struct makedumpfile_header: signature "makedumpfile", type and version as
big-endian int64) then records {int64 offset, int64 size} (big-endian) each followed by `size`
bytes that belong at `offset` of the rebuilt kdump file; offset = size = -1 ends the stream.
Records may rewrite earlier ones (the last write wins). The rebuilt file is never materialised:
an index maps its offsets to the flattened file's bytes, and the kdump reader reads through it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import struct
from array import array

from ..buffer import Buffer
from ..errors import Damaged, NotMine
from ..model import Layer
from . import kdump
from .physical import release_mapping

SIGNATURE = b"makedumpfile\0"
HEADER_SIZE = 4096
_RECORD = struct.Struct(">qq")
_END = -1
_SLACK = 16 << 20


class FlattenedFile:
    """The rebuilt kdump file, read on demand through a sorted, non-overlapping piece table.

    Bytes no record wrote read as zeros, as in the sparse file makedumpfile -R would write.
    """

    def __init__(self, buf: Buffer, pieces: list[tuple[int, int, int]], size: int) -> None:
        self._buf = buf
        self._starts = array("q", (p[0] for p in pieces))
        self._lengths = array("q", (p[1] for p in pieces))
        self._sources = array("q", (p[2] for p in pieces))
        self._size = size
        self._source = kdump.BufferSource(buf)  # the RSS-bounding reads

    def __len__(self) -> int:
        return self._size

    @property
    def pieces(self) -> int:
        return len(self._starts)

    def source_offset(self, offset: int) -> int | None:
        """Where the rebuilt file's byte at `offset` sits in the flattened file (None: a hole)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset < self._starts[i] + self._lengths[i]:
            return int(self._sources[i] + offset - self._starts[i])
        return None

    def read(self, offset: int, size: int) -> bytes:
        out = bytearray()
        count = len(self._starts)
        i = bisect.bisect_right(self._starts, offset) - 1  # the piece at or before offset
        while size > 0:
            if i >= 0 and offset < self._starts[i] + self._lengths[i]:
                skip = offset - self._starts[i]
                take = min(size, self._lengths[i] - skip)
                out += self._source.read(self._sources[i] + skip, take)
            else:  # a hole before the next piece
                nxt = self._starts[i + 1] if i + 1 < count else offset + size
                take = min(size, nxt - offset)
                out += bytes(take)
            offset, size = offset + take, size - take
            if i + 1 < count and offset >= self._starts[i + 1]:
                i += 1
        return bytes(out)


def open_memory(buf: Buffer) -> kdump.KdumpMemory:
    """The memory of the kdump file the stream rebuilds; NotMine without the flattened signature."""
    if bytes(buf[: len(SIGNATURE)]) != SIGNATURE:
        raise NotMine("no makedumpfile flattened signature")
    if len(buf) < HEADER_SIZE:
        raise Damaged(f"flattened dump is truncated inside its {HEADER_SIZE}-byte header")
    kind, version = struct.unpack_from(">qq", buf, 16)
    records, ended = _records(buf)
    release_mapping(buf)  # walking the record headers mapped most of the file: keep RSS small
    pieces, size = _resolve(records)
    written = sum(r[1] for r in records)
    if size - written > max(_SLACK, written):  # makedumpfile leaves only small holes (header padding)
        raise Damaged(f"flattened dump records point far beyond their data (rebuilt size {size:#x}, "
                      f"{written:#x} bytes written): corrupt")
    virtual = FlattenedFile(buf, pieces, size)
    end = "" if ended else ", no end marker (truncated)"
    layer = Layer("flattened", 0, len(buf),
                  f"makedumpfile flattened format type {kind} version {version}, {len(records)} records{end}")
    return kdump.open_source(virtual, (layer,))


def _records(buf: Buffer) -> tuple[list[tuple[int, int, int]], bool]:
    """(offset in the rebuilt file, size, offset of the data here) per record; True if the end marker came."""
    records: list[tuple[int, int, int]] = []
    pos = HEADER_SIZE
    while pos + _RECORD.size <= len(buf):
        offset, size = _RECORD.unpack_from(buf, pos)
        if offset == _END and size == _END:
            return records, True
        if offset < 0 or size < 0:
            raise Damaged(f"flattened dump record at {pos:#x} is corrupt (offset {offset}, size {size})")
        data = pos + _RECORD.size
        size = min(size, len(buf) - data)  # a truncated last record keeps what arrived
        records.append((offset, size, data))
        pos = data + size
    return records, False


def _resolve(records: list[tuple[int, int, int]]) -> tuple[list[tuple[int, int, int]], int]:
    """Non-overlapping (start, length, source) pieces sorted by start, the last write winning."""
    order = sorted(range(len(records)), key=lambda i: records[i][0])
    size = max((r[0] + r[1] for r in records), default=0)
    sorted_records = [records[i] for i in order]
    if all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(sorted_records)):
        return [r for r in sorted_records if r[1]], size  # the usual case: no rewrites
    return _last_writer_wins(records), size


def _last_writer_wins(records: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Sweep over every record boundary; in each elementary interval the latest record wins."""
    bounds = sorted({r[0] for r in records} | {r[0] + r[1] for r in records})
    starts_at: dict[int, list[int]] = {}
    for i, (offset, _, _) in enumerate(records):
        starts_at.setdefault(offset, []).append(i)
    live: list[int] = []  # max-heap of record indices (negated)
    pieces: list[tuple[int, int, int]] = []
    for lo, hi in itertools.pairwise(bounds):
        for i in starts_at.get(lo, ()):
            heapq.heappush(live, -i)
        while live and records[-live[0]][0] + records[-live[0]][1] <= lo:
            heapq.heappop(live)  # ended: drop lazily (only the winner matters)
        if not live:
            continue
        offset, _, source = records[-live[0]]
        piece = (lo, hi - lo, source + lo - offset)
        last = pieces[-1] if pieces else None
        if last is not None and last[0] + last[1] == lo and last[2] + last[1] == piece[2]:
            pieces[-1] = (last[0], last[1] + piece[1], last[2])
        else:
            pieces.append(piece)
    return pieces
