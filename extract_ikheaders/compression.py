"""Streaming decoders for the seven compressors a kernel image may use (CONFIG_KERNEL_*).

Every decoder is a generator: input is fed in chunks and output is yielded in bounded pieces, so
a consumer that finds what it wants early closes the generator and the rest is never decoded,
and a decompression bomb cannot balloon memory. Each decoder stops where its stream ends and
ignores what follows (kbuild's `size_append` puts a 4-byte uncompressed size after the stream).

A maintained library decodes the data; only framing that no library exposes is parsed here:
lzop's file format (lzop 1.04 src/lzop.c read_header / p_lzo.c), the lz4 legacy frame
(lib/decompress_unlz4.c) and zstd's block headers (RFC 8878 section 3.1.1), the last one walked
to feed zstd whole blocks, whose output is at most 128 KiB each.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .buffer import ByteView
from .errors import Damaged, InputError

if TYPE_CHECKING:
    from zstandard import ZstdDecompressionObj

Stream = Generator[bytes, None, None]

MAGICS: dict[str, bytes] = {
    "gzip": b"\x1f\x8b\x08",  # ID1 ID2 CM=deflate (RFC 1952)
    "xz": b"\xfd7zXZ\x00",
    "bzip2": b"BZh",
    "lzma": b"\x5d\x00\x00",  # props lc=3 lp=0 pb=2, then the low bytes of a power-of-two dict size
    "lzo": b"\x89LZO\x00\r\n\x1a\n",
    "lz4": b"\x02\x21\x4c\x18",  # legacy frame, 0x184C2102 LE
    "zstd": b"\x28\xb5\x2f\xfd",
}

DEFAULT_CHUNK = 1 << 20
# The most a compressed kernel image is decoded to, in memory or in a search. The corpus's x86_64
# bzImages decompress to 11-13 MiB and distribution kernels to tens of MiB, so this is far above
# any kernel seen; and it keeps a whole-file decode of an input of up to 64 MiB (which can inflate
# a thousandfold) under a peak RSS of 512 MiB. A larger image is refused with the remedy:
# decompress it first, since a plain file is mapped, never held.
MAX_IMAGE = 256 << 20
OUTPUT_PER_CHUNK = 4  # a yielded piece holds at most OUTPUT_PER_CHUNK * chunk bytes (zstd: + one block)
FEED_MAX = 64 << 10  # input per library call: small enough to say where a corruption is
LZMA_MEMLIMIT = 512 << 20  # kernel xz uses a 32-128 MiB dictionary, `lzma -9` 64 MiB

GZIP_FLAGS_RESERVED = 0xE0
XZ_HEADER_SIZE = 12
BZIP2_BLOCK_MAGIC = b"1AY&SY"  # pi, starts every bzip2 block
LZMA_HEADER_SIZE = 13
LZMA_PROPS_MAX = 9 * 5 * 5  # (pb * 5 + lp) * 9 + lc
LZMA_SIZE_UNKNOWN = 0xFFFF_FFFF_FFFF_FFFF
LZMA_SIZE_MAX = 1 << 38  # liblzma's own plausibility limit for .lzma headers

LZ4_LEGACY_MAGIC = 0x184C2102
LZ4_LEGACY_BLOCK = 8 << 20
LZ4_LEGACY_BLOCK_INPUT_MAX = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16  # LZ4_compressBound

ZSTD_BLOCK_MAX = 128 << 10
ZSTD_WINDOW_LOG_MAX = 31
ZSTD_BLOCK_RLE = 1
ZSTD_BLOCK_COMPRESSED = 2
ZSTD_BLOCK_RESERVED = 3

# lzop header flags (lzop src/conf.h)
LZOP_F_ADLER32_D = 0x0001
LZOP_F_ADLER32_C = 0x0002
LZOP_F_H_EXTRA_FIELD = 0x0040
LZOP_F_CRC32_D = 0x0100
LZOP_F_CRC32_C = 0x0200
LZOP_F_MULTIPART = 0x0400
LZOP_F_H_FILTER = 0x0800
LZOP_F_H_CRC32 = 0x1000
LZOP_F_RESERVED = 0x000F_C000
LZOP_VERSION_MIN = 0x0900
LZOP_VERSION_LEVEL = 0x0940  # from here on the header has version_needed, level and mtime_high
LZOP_METHODS = {1: "LZO1X-1", 2: "LZO1X-1(15)", 3: "LZO1X-999"}
LZOP_BLOCK_MAX = 64 << 20  # lzop's MAX_BLOCK_SIZE
LZOP_SPLIT_MARK = 0xFFFF_FFFF
LZOP_EXTRA_FIELD_MAX = 1 << 20


# Identification -------------------------------------------------------------------------------

_HEAD_SIZE = 32  # covers every fixed-size header checked below (zstd's is up to 18 bytes)


def identify(data: ByteView, offset: int) -> str | None:
    """The codec whose stream header starts at `offset`, or None. Magic plus a cheap header check."""
    if not 0 <= offset < len(data):
        return None
    head = bytes(data[offset : offset + _HEAD_SIZE])
    for name, magic in MAGICS.items():
        if head.startswith(magic) and _HEADER_CHECKS[name](data, offset, head):
            return name
    return None


def _gzip_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    return len(head) >= 10 and not head[3] & GZIP_FLAGS_RESERVED


def _xz_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    if len(head) < XZ_HEADER_SIZE:
        return False
    flags = head[6:8]
    crc = struct.unpack_from("<I", head, 8)[0]
    return flags[0] == 0 and not flags[1] & 0xF0 and crc == zlib.crc32(flags)


def _bzip2_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    # block size digit, then the first block's magic (an empty stream is no kernel)
    return len(head) >= 10 and head[3] in b"123456789" and head[4:10] == BZIP2_BLOCK_MAGIC


def _lzma_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    """A plausible legacy .lzma header (props, dict size, uncompressed size), liblzma's rules."""
    if len(head) < LZMA_HEADER_SIZE or head[0] >= LZMA_PROPS_MAX:
        return False
    dict_size, size = struct.unpack_from("<IQ", head, 1)
    return _lzma_dict_size_ok(dict_size) and (size == LZMA_SIZE_UNKNOWN or size < LZMA_SIZE_MAX)


def _lzma_dict_size_ok(size: int) -> bool:
    # 2^n or 2^n + 2^(n-1), what every encoder writes: rules out most false hits
    if size == 0xFFFF_FFFF:
        return True
    top = 1 << (size.bit_length() - 1) if size else 0
    return size in (top, top | top >> 1)


def _lzo_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    try:
        _lzop_header(data, offset, len(data))
    except Damaged:
        return False
    return True


def _lz4_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    if len(head) < 8:
        return False
    size = int.from_bytes(head[4:8], "little")
    return 0 < size <= LZ4_LEGACY_BLOCK_INPUT_MAX


def _zstd_header_ok(data: ByteView, offset: int, head: bytes) -> bool:
    try:
        _zstd_frame_header(head, 0, len(head))
    except Damaged:
        return False
    return True


_HEADER_CHECKS: dict[str, Callable[[ByteView, int, bytes], bool]] = {
    "gzip": _gzip_header_ok,
    "xz": _xz_header_ok,
    "bzip2": _bzip2_header_ok,
    "lzma": _lzma_header_ok,
    "lzo": _lzo_header_ok,
    "lz4": _lz4_header_ok,
    "zstd": _zstd_header_ok,
}


# Public decoding API --------------------------------------------------------------------------


def decode_stream(name: str, data: ByteView, offset: int, *, chunk: int = DEFAULT_CHUNK,
                  end: int | None = None) -> Stream:
    """Decompressed pieces of the `name` stream starting at `offset`, lazily.

    `end` bounds the input (default: end of data). Pass it when the stream's container knows
    its length: the lz4 legacy frame has no end mark and needs it. Raises Damaged (at the first
    next()) when the stream is corrupt or the input ends before the stream does.
    """
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(MAGICS)})")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, not {chunk}")
    stop = len(data) if end is None else end
    if not 0 <= offset <= stop <= len(data):
        raise ValueError(f"stream span {offset:#x}..{stop:#x} outside data of {len(data):#x} bytes")
    src = _Input(name, data, offset, stop, exact_end=end is not None, feed=min(chunk, FEED_MAX))
    return decoder(src, chunk * OUTPUT_PER_CHUNK)


def decode_all(name: str, data: ByteView, offset: int, *, limit: int = MAX_IMAGE,
               end: int | None = None) -> bytearray:
    """The whole decompressed stream, in one buffer grown in place (never copied: a copy would
    double the peak); InputError if it is longer than `limit` bytes or does not fit in memory."""
    out = bytearray()
    stream = decode_stream(name, data, offset, end=end)
    try:
        for piece in stream:
            if len(out) + len(piece) > limit:
                raise InputError(f"the {name} stream at {offset:#x} decompresses to more than {limit:,} bytes, "
                                 "the most held in memory for one stream; if it really is a kernel, decompress "
                                 "it first and give the result (a file is mapped, not read into memory)")
            out += piece
        return out
    except MemoryError:
        size, out = len(out), bytearray()
        raise InputError(f"{name} stream at {offset:#x}: not enough memory to hold its decompressed data "
                         f"(over {size:,} bytes)") from None
    finally:
        stream.close()


def capped(pieces: Stream, limit: int = MAX_IMAGE) -> Stream:
    """The first `limit` decoded bytes of a stream: what a search of a decompressed kernel reads
    at most, so that a small input that inflates without end costs bounded time."""
    total = 0
    try:
        for piece in pieces:
            if total + len(piece) >= limit:
                yield piece[: limit - total]
                return
            total += len(piece)
            yield piece
    finally:
        pieces.close()


# Input plumbing -------------------------------------------------------------------------------


@dataclass
class _Input:
    """The compressed bytes data[start:stop] and a read cursor over them."""

    codec: str
    data: ByteView = field(repr=False)
    start: int
    stop: int
    exact_end: bool  # stop is the container's word for where the stream ends, not just EOF
    feed: int = FEED_MAX  # bytes per library call
    pos: int = field(init=False)

    def __post_init__(self) -> None:
        self.pos = self.start

    @property
    def remaining(self) -> int:
        return self.stop - self.pos

    def read_chunk(self) -> bytes:
        """The next `feed` bytes or fewer; Damaged if none are left, since the stream wants more."""
        if self.pos >= self.stop:
            raise self.truncated("input ends before the end of the stream")
        piece = bytes(self.data[self.pos : min(self.pos + self.feed, self.stop)])
        self.pos += len(piece)
        return piece

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise self.truncated(f"{what} at {self.pos:#x} needs {size} bytes, {self.remaining} left")
        piece = bytes(self.data[self.pos : self.pos + size])
        self.pos += size
        return piece

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16be(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u32be(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def peek_u32le(self) -> int:
        return int.from_bytes(bytes(self.data[self.pos : self.pos + 4]), "little")

    def truncated(self, detail: str) -> Damaged:
        return Damaged(f"{self.codec} stream at {self.start:#x} is truncated: its data ends at {self.stop:#x} "
                       f"({detail})", offset=self.stop)

    def corrupt(self, detail: str, at: int) -> Damaged:
        return Damaged(f"{self.codec} stream at {self.start:#x} is corrupt near {at:#x}: {detail}", offset=at)


def _pieces(block: bytes, size: int) -> Iterator[bytes]:
    """`block` cut into pieces of at most `size` bytes (lzop and lz4 blocks can be large)."""
    if len(block) <= size:
        yield block
        return
    for pos in range(0, len(block), size):
        yield block[pos : pos + size]


# Library-framed codecs: gzip, bzip2, xz, lzma -------------------------------------------------


def _decode_gzip(src: _Input, max_piece: int) -> Stream:
    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    output_was_full = False
    while not dec.eof:
        # zlib may hold output (a long match) with all input consumed: drain it before reading
        if not pending and not output_was_full:
            pending = src.read_chunk()
        fed_at = src.pos - len(pending)
        try:
            out = dec.decompress(pending, max_piece)
        except zlib.error as exc:
            raise src.corrupt(str(exc), fed_at) from exc
        pending = dec.unconsumed_tail
        output_was_full = len(out) == max_piece
        if out:
            yield out


class _Decompressor(Protocol):
    """What bz2.BZ2Decompressor and lzma.LZMADecompressor share."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


def _decode_buffered(dec: _Decompressor, src: _Input, max_piece: int) -> Stream:
    while not dec.eof:
        piece = src.read_chunk() if dec.needs_input else b""
        try:
            out = dec.decompress(piece, max_piece)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise src.corrupt(str(exc), src.pos - len(piece)) from exc
        if out:
            yield out


def _decode_bzip2(src: _Input, max_piece: int) -> Stream:
    return _decode_buffered(bz2.BZ2Decompressor(), src, max_piece)


def _decode_xz(src: _Input, max_piece: int) -> Stream:
    # one stream only (no LZMA_CONCATENATED): the size trailer after it is left alone
    return _decode_buffered(lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT), src, max_piece)


def _decode_lzma(src: _Input, max_piece: int) -> Stream:
    # liblzma's .lzma decoder takes both an unknown size (needs the end marker) and a real one
    return _decode_buffered(lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT), src, max_piece)


# lzop file format -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _LzopHeader:
    end: int
    flags: int
    method: int


def _lzop_header(data: ByteView, offset: int, stop: int) -> _LzopHeader:
    """Parse and verify lzop's file header (lzop.c read_header); Damaged if it is not one."""
    src = _Input("lzo", data, offset, stop, exact_end=False)
    if src.take(len(MAGICS["lzo"]), "magic") != MAGICS["lzo"]:
        raise src.corrupt("no lzop magic", offset)
    version = src.u16be("version")
    if version < LZOP_VERSION_MIN:
        raise src.corrupt(f"lzop version {version:#06x} is too old", offset)
    src.take(2, "library version")
    if version >= LZOP_VERSION_LEVEL:
        src.take(2, "version needed to extract")
    method = src.u8("method")
    if version >= LZOP_VERSION_LEVEL:
        src.u8("level")
    flags = src.u32be("flags")
    if flags & LZOP_F_RESERVED:
        raise src.corrupt(f"reserved flag bits set ({flags:#010x})", offset)
    if flags & LZOP_F_H_FILTER:
        raise src.corrupt("lzop filters are not supported (the kernel does not use them)", offset)
    if flags & LZOP_F_MULTIPART:
        raise src.corrupt("multi-part lzop files are not supported", offset)
    if method not in LZOP_METHODS:
        raise src.corrupt(f"unknown lzop method {method}", offset)
    src.take(8 if version < LZOP_VERSION_LEVEL else 12, "mode and mtime")
    src.take(src.u8("name length"), "name")
    _lzop_check_header_sum(src, offset + len(MAGICS["lzo"]), flags)
    if flags & LZOP_F_H_EXTRA_FIELD:
        extra_start = src.pos
        extra_length = src.u32be("extra field length")
        if extra_length > LZOP_EXTRA_FIELD_MAX:
            raise src.corrupt(f"implausible extra field of {extra_length} bytes", extra_start)
        src.take(extra_length, "extra field")
        _lzop_check_header_sum(src, extra_start, flags)
    return _LzopHeader(src.pos, flags, method)


def _lzop_check_header_sum(src: _Input, covered_from: int, flags: int) -> None:
    covered = bytes(src.data[covered_from : src.pos])
    expected = src.u32be("header checksum")
    actual = zlib.crc32(covered) if flags & LZOP_F_H_CRC32 else zlib.adler32(covered)
    if actual != expected:
        raise src.corrupt(f"header checksum {actual:#010x} != stored {expected:#010x}", covered_from)


@dataclass(frozen=True)
class _LzopSums:
    """The optional checksums of one block: (algorithm, value) pairs."""

    uncompressed: tuple[tuple[Callable[[bytes], int], int], ...]
    compressed: tuple[tuple[Callable[[bytes], int], int], ...]


def _lzop_block_sums(src: _Input, flags: int, stored_raw: bool) -> _LzopSums:
    """Read the checksums that follow the sizes; a stored block's compressed sums are its data sums."""
    d_adler = src.u32be("adler32 of data") if flags & LZOP_F_ADLER32_D else None
    d_crc = src.u32be("crc32 of data") if flags & LZOP_F_CRC32_D else None
    c_adler = c_crc = None
    if flags & LZOP_F_ADLER32_C and not stored_raw:
        c_adler = src.u32be("adler32 of compressed data")
    if flags & LZOP_F_CRC32_C and not stored_raw:
        c_crc = src.u32be("crc32 of compressed data")
    return _LzopSums(_present((zlib.adler32, d_adler), (zlib.crc32, d_crc)),
                     _present((zlib.adler32, c_adler), (zlib.crc32, c_crc)))


def _present(*sums: tuple[Callable[[bytes], int], int | None]) -> tuple[tuple[Callable[[bytes], int], int], ...]:
    return tuple((algorithm, value) for algorithm, value in sums if value is not None)


def _lzop_verify(src: _Input, sums: tuple[tuple[Callable[[bytes], int], int], ...], data: bytes, what: str,
                 at: int) -> None:
    for algorithm, expected in sums:
        if algorithm(data) != expected:
            raise src.corrupt(f"{algorithm.__name__} mismatch on the {what} of the block", at)


def decode_lzo1x(block: bytes, size: int) -> bytes:
    """LZO1X data that must decode to exactly `size` bytes, never holding more in memory.

    lzokay decodes into a buffer of the size it is given and fails on an overrun (lzallright takes
    its size as a hint and grows its buffer: 11 bytes of LZO can stand for 2,048, so a 64 MiB
    block could ask for 12 GiB). lzokay returns the whole buffer even when the data ends early, so a
    second decode one byte short must overrun, or the data was shorter than its header says."""
    import lzokay

    try:
        out = lzokay.decompress(block, size)
    except lzokay.OutputOverrunError:
        raise Damaged(f"LZO data decodes to more than {size:,} bytes") from None
    except lzokay.LzokayError as exc:
        raise Damaged(f"LZO data error ({type(exc).__name__})") from None
    try:
        lzokay.decompress(block, size - 1) if size else None
    except lzokay.OutputOverrunError:
        return bytes(out)
    except lzokay.LzokayError:
        pass
    raise Damaged(f"LZO data decodes to fewer than {size:,} bytes")


def _decode_lzo(src: _Input, max_piece: int) -> Stream:
    header = _lzop_header(src.data, src.start, src.stop)
    src.pos = header.end
    while True:
        block_at = src.pos
        dst_len = src.u32be("block size")
        if dst_len == 0:
            return
        if dst_len == LZOP_SPLIT_MARK:
            raise src.corrupt("split lzop files are not supported", block_at)
        if dst_len > LZOP_BLOCK_MAX:
            raise src.corrupt(f"block of {dst_len} bytes exceeds lzop's {LZOP_BLOCK_MAX}", block_at)
        src_len = src.u32be("compressed block size")
        if not 0 < src_len <= dst_len:
            raise src.corrupt(f"compressed block size {src_len} for {dst_len} bytes", block_at)
        stored_raw = src_len == dst_len
        sums = _lzop_block_sums(src, header.flags, stored_raw)
        block = src.take(src_len, "block data")
        _lzop_verify(src, sums.compressed, block, "compressed data", block_at)
        if stored_raw:
            out = block
        else:
            try:
                out = decode_lzo1x(block, dst_len)
            except Damaged as exc:
                raise src.corrupt(str(exc), block_at) from None
        _lzop_verify(src, sums.uncompressed, out, "data", block_at)
        yield from _pieces(out, max_piece)


# lz4 legacy frame -----------------------------------------------------------------------------


def _decode_lz4(src: _Input, max_piece: int) -> Stream:
    """The legacy frame has no end mark. Like lib/decompress_unlz4.c it ends at the end of the
    input, at a zero size or at the 4-byte size trailer; a repeated magic starts a new frame.
    Without a known end, a size field equal to the output so far is the trailer too, and an
    impossible or undecodable block after good ones is whatever follows the stream."""
    import cramjam  # the snappy and lz4 decoder; loaded only for these codecs

    if src.take(4, "magic") != MAGICS["lz4"]:
        raise src.corrupt("no lz4 legacy magic", src.start)
    produced = blocks = 0
    # decoded into a buffer of the legacy block size: a block cannot write past it (cramjam fails
    # on an overrun) and says how much it wrote
    buffer = bytearray(LZ4_LEGACY_BLOCK)
    while src.remaining > 4:
        block_at = src.pos
        size = src.peek_u32le()
        if size == LZ4_LEGACY_MAGIC:
            src.pos += 4
            continue
        if size == 0 or (blocks and not src.exact_end and size == produced):
            return
        if size > LZ4_LEGACY_BLOCK_INPUT_MAX:
            if blocks and not src.exact_end:
                return
            raise src.corrupt(f"block size {size} exceeds the legacy maximum", block_at)
        src.pos += 4
        block = src.take(size, "block")
        try:
            out = bytes(memoryview(buffer)[: cramjam.lz4.decompress_block_into(block, buffer)])
        except cramjam.DecompressionError as exc:
            if blocks and not src.exact_end:
                return
            raise src.corrupt(f"lz4 block does not decode ({exc})", block_at) from exc
        blocks += 1
        produced += len(out)
        yield from _pieces(out, max_piece)


# zstd -----------------------------------------------------------------------------------------


_ZSTD_DICT_ID_SIZES = (0, 1, 2, 4)
_ZSTD_CONTENT_SIZE_SIZES = (0, 2, 4, 8)  # flag 0 means 1 byte in a single-segment frame


@dataclass(frozen=True)
class _ZstdFrameHeader:
    end: int
    has_checksum: bool


def _zstd_frame_header(data: ByteView, offset: int, stop: int) -> _ZstdFrameHeader:
    """Frame_Header (RFC 8878 3.1.1.1): its size and whether a Content_Checksum closes the frame."""
    src = _Input("zstd", data, offset, stop, exact_end=False)
    if src.take(4, "magic") != MAGICS["zstd"]:
        raise src.corrupt("no zstd magic", offset)
    descriptor = src.u8("frame header descriptor")
    content_size_flag, single_segment = descriptor >> 6, descriptor >> 5 & 1
    if descriptor & 0x08:
        raise src.corrupt("reserved bit set in the frame header descriptor", offset + 4)
    if not single_segment and 10 + (src.u8("window descriptor") >> 3) > ZSTD_WINDOW_LOG_MAX:
        raise src.corrupt("window larger than zstd allows", offset + 5)
    content_size_bytes = _ZSTD_CONTENT_SIZE_SIZES[content_size_flag] or single_segment
    src.take(_ZSTD_DICT_ID_SIZES[descriptor & 3] + content_size_bytes, "dictionary id and content size")
    return _ZstdFrameHeader(src.pos, bool(descriptor & 0x04))


def _zstd_next_block(src: _Input) -> tuple[bool, int]:
    """Skip one block; return (is last block, upper bound of its decompressed size)."""
    block_at = src.pos
    header = int.from_bytes(src.take(3, "block header"), "little")
    last, block_type, size = bool(header & 1), header >> 1 & 3, header >> 3
    if block_type == ZSTD_BLOCK_RESERVED:
        raise src.corrupt("reserved block type", block_at)
    if size > ZSTD_BLOCK_MAX:
        raise src.corrupt(f"block of {size} bytes exceeds {ZSTD_BLOCK_MAX}", block_at)
    src.take(1 if block_type == ZSTD_BLOCK_RLE else size, "block content")
    return last, ZSTD_BLOCK_MAX if block_type == ZSTD_BLOCK_COMPRESSED else size


def _decode_zstd(src: _Input, max_piece: int) -> Stream:
    """One frame. zstandard's decompressobj has no output limit, so whole blocks are fed in
    groups small enough that their output (at most 128 KiB a block) stays bounded."""
    import zstandard

    frame = _zstd_frame_header(src.data, src.start, src.stop)
    src.pos = frame.end
    dec = zstandard.ZstdDecompressor().decompressobj()
    group_start, group_output, last = src.start, 0, False
    while not last:
        last, block_output = _zstd_next_block(src)
        group_output += block_output
        if last and frame.has_checksum:
            src.take(4, "content checksum")
        if last or group_output >= max_piece or src.pos - group_start >= src.feed:
            yield from _zstd_feed(dec, src, group_start)
            group_start, group_output = src.pos, 0
    if not dec.eof:
        raise src.corrupt("the frame's blocks ended but the decoder did not", src.pos)


def _zstd_feed(dec: ZstdDecompressionObj, src: _Input, group_start: int) -> Stream:
    import zstandard

    piece = bytes(src.data[group_start : src.pos])
    try:
        out = dec.decompress(piece)
    except zstandard.ZstdError as exc:
        raise src.corrupt(str(exc), group_start) from exc
    if out:
        yield out


_DECODERS: dict[str, Callable[[_Input, int], Stream]] = {
    "gzip": _decode_gzip,
    "xz": _decode_xz,
    "bzip2": _decode_bzip2,
    "lzma": _decode_lzma,
    "lzo": _decode_lzo,
    "lz4": _decode_lz4,
    "zstd": _decode_zstd,
}
