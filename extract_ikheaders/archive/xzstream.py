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
from dataclasses import dataclass

from ..buffer import Buffer
from ..errors import Damaged, ParserSignal
from .tarwalk import names_at_start

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
            raise ValueError("index ends inside a number")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                raise ValueError("non-minimal number in index")
            return value, pos + i + 1
    raise ValueError("number too long in index")


def _parse_index(index: bytes) -> tuple[int, int, int]:
    """(blocks, total padded block bytes, uncompressed bytes) from a complete index field."""
    if not index or index[0] != 0:
        raise ValueError("no index indicator")
    if struct.unpack("<I", index[-4:])[0] != zlib.crc32(index[:-4]):
        raise ValueError("index CRC32 mismatch")
    count, pos = _varint(index, 1)
    if count > len(index):
        raise ValueError("index claims more records than it can hold")
    padded = uncompressed = 0
    for _ in range(count):
        unpadded, pos = _varint(index, pos)
        size, pos = _varint(index, pos)
        if unpadded < 5:
            raise ValueError("block smaller than its header")
        padded += (unpadded + 3) & ~3
        uncompressed += size
    body_end = len(index) - 4
    if (pos + 3) & ~3 != body_end or any(index[pos:body_end]):
        raise ValueError("bad index padding")
    return count, padded, uncompressed


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
        blocks, padded, uncompressed = _parse_index(bytes(buf[index_start:footer_start]))
    except ValueError:
        return None
    if start + HEADER_SIZE + padded != index_start:
        return None
    return StreamInfo(start, yz + 2, CHECK_NAMES.get(flags[1], f"{flags[1]:#x}"), blocks, uncompressed)


def stream_end(buf: Buffer, start: int, limit: int | None = None) -> StreamInfo:
    """Locate the footer that closes the stream starting at `start` (no decompression).

    Searches buf[start:limit] for candidate footers and accepts the first one whose index
    accounts for exactly the bytes between header and index. Raises Damaged if none does.
    """
    flags = header_flags(buf, start)
    if flags is None:
        raise Damaged(f"no valid xz stream header at offset {start:#x}", offset=start)
    _, stop = bounds(buf, start, limit)
    yz = buf.find(FOOTER_MAGIC, start + HEADER_SIZE + 10, stop)
    while yz != -1 and yz + 2 <= stop:
        info = _footer_end(buf, start, flags, yz)
        if info is not None:
            return info
        yz = buf.find(FOOTER_MAGIC, yz + 1, stop)
    raise Damaged(f"xz stream at offset {start:#x} has no valid footer and index (truncated or corrupt)",
                  offset=start)


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

    return any(_HEADERS_MEMBER.match(name) for name in names_at_start(bytes(head)))


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
