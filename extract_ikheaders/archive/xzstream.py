"""xz streams: exact end from the format itself, content checks, full validation.

Format: https://tukaani.org/xz/xz-file-format.txt (sections 2.1 stream header/footer, 4 index).
The end of a stream is found without decompressing: the 12-byte footer's backward size points
at the index, whose records give every block's size; all of it is CRC32-protected.
"""

from __future__ import annotations

import lzma
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import lazy
from ..buffer import Buffer
from ..errors import Damaged, ParserSignal

if TYPE_CHECKING:  # loaded when a stream's first tar header is read (lazy.py): verifying needs no tar reader
    from . import tarwalk
else:
    tarwalk = lazy.module("extract_ikheaders.archive.tarwalk")

MAGIC = b"\xfd7zXZ\x00"
FOOTER_MAGIC = b"YZ"
HEADER_SIZE = 12
FOOTER_SIZE = 12
CHECK_NAMES = {0x00: "none", 0x01: "crc32", 0x04: "crc64", 0x0A: "sha256"}

# A kheaders archive is `tar -C <dir> .` of include/ and arch/<arch>/include/, sorted by name.
_HEADERS_MEMBER = re.compile(r"^\./(include|arch/[^/\x00]+/include)(/|$)")
_PROBE_OUTPUT = 16 * 1024  # the first few tar headers
_PROBE_INPUT = 64 * 1024
_PROBE_STEP = 256
MAX_ARCHIVE = 64 << 20  # a kheaders archive is ~4-10 MB; anything longer is not one (and RSS stays low)
# liblzma allocates the dictionary a block header asks for before decoding a byte of it (up to 4 GiB).
# gen_kheaders.sh runs plain `xz` (8 MiB); `xz -9` uses 64 MiB. Beyond this a stream is refused.
MEMLIMIT = 256 << 20


@dataclass(frozen=True)
class StreamInfo:
    start: int
    end: int  # exclusive; stream padding not included
    check: str
    blocks: int
    uncompressed: int
    records: tuple[tuple[int, int], ...] = field(default=(), repr=False)  # the index: (unpadded, uncompressed)


def header_flags(buf: Buffer, start: int) -> bytes | None:
    """The two stream-flag bytes if a valid stream header starts at `start`, else None."""
    if start < 0:
        return None
    header = bytes(buf[start : start + HEADER_SIZE])
    if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
        return None
    flags = header[6:8]
    if flags[0] != 0 or flags[1] & 0xF0:
        return None
    if struct.unpack("<I", header[8:12])[0] != zlib.crc32(flags):
        return None
    return flags


def bounds(buf: Buffer, start: int, end: int | None) -> tuple[int, int]:
    """start and end clamped to the buffer: ranges often come from a file's own (untrusted) headers,
    and find() raises OverflowError on offsets past 2**63 and counts negative ones from the end."""
    size = len(buf)
    stop = size if end is None else max(0, min(end, size))
    return max(0, min(start, stop)), stop


def stream_headers(buf: Buffer, start: int = 0, end: int | None = None) -> Iterator[int]:
    """Offsets of valid xz stream headers in buf[start:end], in order."""
    start, stop = bounds(buf, start, end)
    pos = buf.find(MAGIC, start, stop)
    while pos != -1:
        if header_flags(buf, pos) is not None:
            yield pos
        pos = buf.find(MAGIC, pos + 1, stop)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        if pos + i >= len(buf):
            raise ValueError("data ends inside a number")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                raise ValueError("non-minimal number")
            return value, pos + i + 1
    raise ValueError("number longer than 9 bytes")


def _parse_index(index: bytes) -> tuple[tuple[int, int], ...]:
    """Every block's (unpadded size, uncompressed size) from a complete index field."""
    if not index or index[0] != 0:
        raise ValueError("no index indicator")
    if struct.unpack("<I", index[-4:])[0] != zlib.crc32(index[:-4]):
        raise ValueError("index CRC32 mismatch")
    count, pos = _varint(index, 1)
    if count > len(index):
        raise ValueError("index claims more records than it can hold")
    records = []
    for _ in range(count):
        unpadded, pos = _varint(index, pos)
        size, pos = _varint(index, pos)
        if unpadded < 5:
            raise ValueError("block smaller than its header")
        records.append((unpadded, size))
    body_end = len(index) - 4
    if (pos + 3) & ~3 != body_end or any(index[pos:body_end]):
        raise ValueError("bad index padding")
    return tuple(records)


def _padded(unpadded: int) -> int:
    return (unpadded + 3) & ~3


def _footer_end(buf: Buffer, start: int, flags: bytes, yz: int) -> StreamInfo | None:
    """A StreamInfo if the `YZ` at `yz` closes the stream that starts at `start`."""
    footer_start = yz - 10
    if footer_start < start + HEADER_SIZE or (yz + 2 - start) % 4:
        return None
    footer = bytes(buf[footer_start : yz + 2])
    crc, backward, footer_flags = struct.unpack("<II2s", footer[:10])
    if footer_flags != flags or crc != zlib.crc32(footer[4:10]):
        return None
    index_size = (backward + 1) * 4
    index_start = footer_start - index_size
    if index_start < start + HEADER_SIZE:
        return None
    try:
        records = _parse_index(bytes(buf[index_start:footer_start]))
    except ValueError:
        return None
    if start + HEADER_SIZE + sum(_padded(unpadded) for unpadded, _ in records) != index_start:
        return None
    return StreamInfo(start, yz + 2, CHECK_NAMES.get(flags[1], f"{flags[1]:#x}"), len(records),
                      sum(size for _, size in records), records)


def stream_end(buf: Buffer, start: int, limit: int | None = None) -> StreamInfo:
    """Locate the footer that closes the stream starting at `start` (no decompression).

    Searches buf[start:limit] for candidate footers and accepts the first one whose index
    accounts for exactly the bytes between header and index. Raises Damaged if none does.
    """
    info = first_footer(buf, start, start, limit)
    if info is not None:
        return info
    raise Damaged(f"xz stream at offset {start:#x} has no valid footer and index (truncated or corrupt)",
                  offset=start)


def first_footer(buf: Buffer, start: int, search_from: int, limit: int | None = None) -> StreamInfo | None:
    """The first footer in buf[search_from:limit] that closes the stream starting at `start`, or
    None. A caller whose data grows (a stream being decoded) searches only the new part each time."""
    flags = header_flags(buf, start)
    if flags is None:
        raise Damaged(f"no valid xz stream header at offset {start:#x}", offset=start)
    _, stop = bounds(buf, start, limit)
    yz = buf.find(FOOTER_MAGIC, max(search_from, start + HEADER_SIZE + 10), stop)
    while yz != -1 and yz + 2 <= stop:
        info = _footer_end(buf, start, flags, yz)
        if info is not None:
            return info
        yz = buf.find(FOOTER_MAGIC, yz + 1, stop)
    return None


def check_structure(archive: bytes | memoryview, base_offset: int = 0) -> StreamInfo:
    """What can be checked without decoding the archive (--no-verify): one xz stream that fills
    `archive` (zero padding allowed), whose header and footer agree, whose index (CRC32) accounts
    for every block, whose every block header (CRC32) gives the sizes the index gives, and whose
    first block begins with a tar header. A truncated, shifted or spliced archive fails;
    a bit flipped inside a block's compressed data does not (only decoding finds that: verify()).
    The first header's name is not judged: symbols or markers frame an archive whatever it holds,
    and unpacking judges every name.
    """
    data = bytes(archive)
    end = len(data.rstrip(b"\0"))
    end += -end % 4  # stream padding is whole 4-byte groups of zeros
    info = first_footer(data, 0, max(0, end - 2), min(end, len(data)))
    if info is None or info.end != end:
        at = base_offset + len(data)
        raise Damaged(f"the xz stream at offset {base_offset:#x} does not end with a footer and index that "
                      f"account for it (truncated or corrupt) before offset {at:#x}", offset=at)
    flags = header_flags(data, 0)
    assert flags is not None  # first_footer has checked the header
    check_size = _CHECK_SIZES.get(flags[1] & 0x0F, 0)
    pos = HEADER_SIZE
    for number, (unpadded, size) in enumerate(info.records):
        problem = _block_header_problem(data, pos, unpadded - check_size, size)
        if problem is not None:
            raise Damaged(f"xz block {number} at offset {base_offset + pos:#x}: {problem}", offset=base_offset + pos)
        pos += _padded(unpadded)
    if not tarwalk.starts_with_header(decode_prefix(data, tarwalk.BLOCK)):
        raise Damaged(f"the xz stream at offset {base_offset:#x} does not begin with a tar header",
                      offset=base_offset)
    return info


def _block_header_problem(data: bytes, pos: int, body: int, uncompressed: int) -> str | None:
    """Why the block header at `pos` disagrees with its index record (`body`: header plus compressed
    data), or None (xz-file-format.txt 3.1: size byte, flags, optional sizes, filters, CRC32)."""
    size = (data[pos] + 1) * 4 if pos < len(data) else 0
    if data[pos : pos + 1] == b"\0" or pos + size > len(data) or size >= body:
        return "no block header where the index puts one"
    header = data[pos : pos + size]
    if struct.unpack("<I", header[-4:])[0] != zlib.crc32(header[:-4]):
        return "block header CRC32 mismatch"
    flags, at = header[1], 2
    if flags & 0x3C:
        return "reserved block flags set"
    try:
        if flags & 0x40:
            compressed, at = _varint(header, at)
            if compressed != body - size:
                return f"compressed size {compressed} but the index says {body - size}"
        if flags & 0x80:
            stated, at = _varint(header, at)
            if stated != uncompressed:
                return f"uncompressed size {stated} but the index says {uncompressed}"
    except ValueError as exc:
        return str(exc)
    return None


def looks_like_headers(buf: Buffer, start: int) -> bool:
    """Does the stream at `start` decode to a tar archive of kernel headers?

    Decodes only the first few tar headers, fed in small steps so that what decoded before an
    error is still judged: a stream damaged further on is still the headers archive (and is then
    reported as damaged rather than missing).
    """
    decoder = decoder_for_archive()
    data = bytes(buf[start : start + _PROBE_INPUT])
    head = bytearray()
    try:
        for pos in range(0, len(data), _PROBE_STEP):
            head += decoder.decompress(data[pos : pos + _PROBE_STEP], max_length=_PROBE_OUTPUT - len(head))
            if len(head) >= _PROBE_OUTPUT or decoder.eof:
                break
    except lzma.LZMAError:
        pass

    return any(_HEADERS_MEMBER.match(name) for name in tarwalk.names_at_start(bytes(head)))


def verify(archive: bytes | memoryview, base_offset: int = 0) -> int:
    """Decode the whole stream to check every block's integrity; return the uncompressed size.

    Output is discarded as it is produced, so memory stays small whatever the archive holds.
    `base_offset` is added to offsets in error messages (the archive's place in its container).
    """
    decoder = decoder_for_archive()
    data = bytes(archive)
    total, fed, step = 0, 0, 64 << 10  # small steps: an error's offset is known to within a step
    try:
        while not decoder.eof:
            if decoder.needs_input:
                if fed >= len(data):
                    at = base_offset + len(data)
                    raise Damaged(f"xz data ends at offset {at:#x} before the stream does", offset=at)
                chunk = data[fed : fed + step]
                fed += len(chunk)
            else:
                chunk = b""
            total += len(decoder.decompress(chunk, max_length=1 << 22))
    except lzma.LZMAError as exc:
        at = base_offset + fed
        raise Damaged(f"{decode_error(exc)} near offset {at:#x}: {exc}", offset=at) from None
    if decoder.unused_data.strip(b"\0"):
        at = base_offset + len(data) - len(decoder.unused_data)
        raise Damaged(f"unexpected data after the xz stream at offset {at:#x}", offset=at)
    return total


def feed_discarding(decoder: lzma.LZMADecompressor, chunk: bytes) -> None:
    """Decode `chunk`, discarding the output in bounded pieces (only the checks and the end matter)."""
    decoder.decompress(chunk, max_length=1 << 22)
    while not decoder.eof and not decoder.needs_input:
        decoder.decompress(b"", max_length=1 << 22)


def decode_prefix(archive: bytes, limit: int) -> bytes:
    """Up to `limit` decoded bytes from the start of the stream (errors ignored; for probing)."""
    decoder = decoder_for_archive()
    try:
        return decoder.decompress(archive, max_length=limit)
    except lzma.LZMAError:
        return b""


def decoder_for_archive() -> lzma.LZMADecompressor:
    """An xz decoder that refuses (LZMAError) a stream wanting more than MEMLIMIT bytes."""
    return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=MEMLIMIT)


def decode_error(exc: lzma.LZMAError) -> str:
    """What an LZMAError means for an archive: corrupt data, or a dictionary over the limit."""
    if "limit" in str(exc).lower():
        return f"xz block header asks for more than {MEMLIMIT >> 20} MiB (damaged or hostile)"
    return "corrupt xz data"



# Salvage ------------------------------------------------------------------------------------------
# An archive is one xz block whose check (CRC64) covers all of it, so a damaged archive's prefix has
# no check of its own. LZMA2 does: it cuts a block into chunks of at most 2 MiB of output, each with
# its compressed and uncompressed sizes, and liblzma refuses a chunk whose range coder does not end
# exactly on both. So a chunk that decodes whole is the archive's own, and one that fails gives
# nothing, not the garbage a decoder makes of damaged input before it notices. No library exposes
# LZMA2 chunk boundaries, hence the few lines of format parsing (xz-file-format.txt 3.1, and the
# LZMA2 chunk header: control byte, sizes big-endian) that only decide where to pause the decoder.

_CHECK_SIZES = {0x00: 0, 0x01: 4, 0x04: 8, 0x0A: 32}
_LZMA2_END = 0x00
_LZMA2_STORED = (0x01, 0x02)  # uncompressed chunks, with and without a dictionary reset
_LZMA2_PROPS = 0xC0  # LZMA chunks from here on carry one more byte: new properties


class SalvageStop(ParserSignal, EOFError):
    """Where the trustworthy part of a damaged stream ends, and why (an EOFError: readers stop)."""


def validated_pieces(archive: bytes | memoryview) -> Iterator[bytes]:
    """The decoded stream, an LZMA2 chunk at a time, as far as whole chunks decode.

    Raises SalvageStop after the last good piece when the stream is damaged or cut short, and
    returns quietly only when every block passed its check and the index and footer are sound.
    A piece is at most 2 MiB (LZMA2's chunk limit); the caller bounds the total by what it reads.
    """
    data = bytes(archive)
    flags = header_flags(data, 0)
    if flags is None:
        raise SalvageStop("no valid xz stream header at the archive's start")
    decoder = decoder_for_archive()
    fed, pos = 0, HEADER_SIZE
    while True:
        if pos >= len(data):
            raise SalvageStop(f"the data ends at offset {pos:#x}, before the stream's index")
        if data[pos] == 0:  # the index indicator: every block is done
            _decode(decoder, data, fed, len(data))
            if not decoder.eof:
                raise SalvageStop(f"the data ends at offset {len(data):#x}, inside the stream's index")
            return
        block = pos
        for end in _lzma2_chunk_ends(data, block + (data[block] + 1) * 4):
            piece = _decode(decoder, data, fed, end)
            fed = min(end, len(data))
            if piece:
                yield piece
            if end > len(data):  # a plain cut: what decoded so far is the archive's own
                raise SalvageStop(f"the data ends at offset {len(data):#x}, inside an LZMA2 chunk")
            pos = end
        pos += -(pos - block) % 4 + _CHECK_SIZES.get(flags[1] & 0x0F, 0)
        piece = _decode(decoder, data, fed, pos)  # the block's padding and check, liblzma's to verify
        fed = pos
        if piece:
            yield piece


def _lzma2_chunk_ends(data: bytes, pos: int) -> Iterator[int]:
    """The offset just past each LZMA2 chunk from `pos`, the end-of-data byte's last."""
    while True:
        if pos + 6 > len(data):
            raise SalvageStop(f"the data ends at offset {len(data):#x}, inside an LZMA2 chunk header")
        control = data[pos]
        if control == _LZMA2_END:
            yield pos + 1
            return
        if control in _LZMA2_STORED:
            pos += 3 + int.from_bytes(data[pos + 1 : pos + 3], "big") + 1
        elif control >= 0x80:
            header = 6 if control >= _LZMA2_PROPS else 5
            pos += header + int.from_bytes(data[pos + 3 : pos + 5], "big") + 1
        else:
            raise SalvageStop(f"invalid LZMA2 chunk header {control:#04x} at offset {pos:#x}")
        yield pos


def _decode(decoder: lzma.LZMADecompressor, data: bytes, fed: int, end: int) -> bytes:
    """The output of data[fed:end]; SalvageStop (and nothing of it) if liblzma refuses it."""
    try:
        return decoder.decompress(data[fed:end])
    except lzma.LZMAError as exc:
        raise SalvageStop(f"{decode_error(exc)} before offset {min(end, len(data)):#x}") from None
