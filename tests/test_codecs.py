"""Streaming decoders: exact output, end of stream, bounded pieces, truncation and corruption."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import pytest
from builders_bzimage import CODECS, compress, kernel_like, lzop_file, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract_ikheaders import compression
from extract_ikheaders.errors import Damaged, InputError

ORIGINAL = kernel_like()  # the bzImage tests' payload: compressed once per session
SMALL = kernel_like(48 << 10, seed=2)
# Formats whose block data carries no checksum: a flipped byte may decode to other bytes.
UNCHECKED = {"lz4"}


def decode(name: str, data: bytes, offset: int = 0, **kwargs: int) -> bytes:
    return b"".join(compression.decode_stream(name, data, offset, **kwargs))


# Identification ------------------------------------------------------------------------------


def test_identify_each_tool_output(codec: str) -> None:
    assert compression.identify(compress(codec, SMALL), 0) == codec


def test_identify_at_offset(codec: str) -> None:
    assert compression.identify(b"junk" + compress(codec, SMALL), 4) == codec


@pytest.mark.parametrize("data", [
    b"\x1f\x8b\x08\xe0" + bytes(12),  # gzip reserved flag bits
    b"\xfd7zXZ\x00\x00\x04" + b"\0\0\0\0",  # xz header CRC32 wrong
    b"BZh9" + b"\0" * 12,  # no bzip2 block magic
    b"BZhx1AY&SY" + b"\0" * 6,  # no block size digit
    b"\x5d\x00\x00\x00\x03\x01\x00\x00" + b"\xff" * 8,  # lzma dict size not 2^n or 2^n + 2^(n-1)
    b"\x5d\x00\x00\x00\x04" + struct.pack("<Q", 1 << 40),  # lzma implausible uncompressed size
    b"\x28\xb5\x2f\xfd\x08" + bytes(12),  # zstd reserved descriptor bit
    b"\x02\x21\x4c\x18" + struct.pack("<I", 0),  # lz4 empty first block
    b"\x1f\x8b",  # too short for anything
    b"",
])
def test_identify_rejects_bad_headers(data: bytes) -> None:
    assert compression.identify(data, 0) is None


def test_identify_rejects_lzop_header_checksum() -> None:
    good = lzop_file([b"a" * 100])
    assert compression.identify(good, 0) == "lzo"
    name_len_at = 9 + 2 + 2 + 2 + 1 + 1 + 4 + 4 + 4 + 4
    assert compression.identify(good[:name_len_at - 1] + b"\x01" + good[name_len_at:], 0) is None


def test_identify_out_of_range() -> None:
    assert compression.identify(b"\x1f\x8b\x08", 5) is None
    assert compression.identify(b"\x1f\x8b\x08", -1) is None


def test_magics_are_the_extract_ikconfig_ones() -> None:
    assert set(compression.MAGICS) == set(CODECS)
    assert compression.MAGICS["lz4"] == struct.pack("<I", 0x184C2102)


# Round trips and the end of the stream --------------------------------------------------------


def test_round_trip_with_kernel_trailer_and_junk(codec: str) -> None:
    data = compress(codec, ORIGINAL) + b"\x00junk after the payload" * 50
    assert decode(codec, data) == ORIGINAL


def test_round_trip_with_exact_end(codec: str) -> None:
    payload = compress(codec, ORIGINAL)
    data = b"prefix" + payload + b"tail" * 10
    assert decode(codec, data, 6, end=6 + len(payload)) == ORIGINAL


def test_round_trip_small_chunks(codec: str) -> None:
    assert decode(codec, compress(codec, SMALL), chunk=1000) == SMALL


def test_pieces_are_bounded(codec: str) -> None:
    chunk = 16 << 10
    pieces = list(compression.decode_stream(codec, compress(codec, ORIGINAL), 0, chunk=chunk))
    assert max(map(len, pieces)) <= chunk * compression.OUTPUT_PER_CHUNK + compression.ZSTD_BLOCK_MAX
    assert len(pieces) > 1


def test_generator_is_lazy_and_closable(codec: str, request: pytest.FixtureRequest) -> None:
    multi: tuple[bytes, bytes] | None = request.getfixturevalue("lz4_multi") if codec == "lz4" else None
    original, data = multi or (ORIGINAL, compress(codec, ORIGINAL))
    # the end is garbage, never read when the consumer stops after the first piece
    # (whole blocks are needed first: bzip2's hold 900 kB, lz4's 8 MiB)
    keep = len(data) * 6 // 10
    broken = data[:keep] + b"\xa5" * (len(data) - keep)
    stream = compression.decode_stream(codec, broken, 0, chunk=4096)
    first = next(stream)
    stream.close()
    assert original.startswith(first)


# Damage --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncation_raises_damaged_at_the_end_of_input(codec: str, fraction: float) -> None:
    data = compress(codec, ORIGINAL, size_trailer=False)
    cut = int(len(data) * fraction)
    with pytest.raises(Damaged) as info:
        decode(codec, data[:cut])
    assert info.value.offset == cut


def test_truncation_inside_exact_end(codec: str) -> None:
    data = compress(codec, ORIGINAL)
    cut = len(data) // 2
    with pytest.raises(Damaged) as info:
        decode(codec, data, end=cut)
    assert info.value.offset == cut


@pytest.mark.parametrize("name", [c for c in CODECS if c not in UNCHECKED])  # lz4 data has no checksum
def test_corruption_raises_damaged(name: str) -> None:
    codec = name
    require(codec)
    data = bytearray(compress(codec, ORIGINAL))
    at = len(data) // 2
    data[at : at + 16] = bytes(b ^ 0x5A for b in data[at : at + 16])
    with pytest.raises(Damaged) as info:
        decode(codec, bytes(data))
    assert info.value.offset is not None and 0 <= info.value.offset <= len(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=1 << 16), flip=st.integers(min_value=0, max_value=1 << 16),
       xor=st.integers(min_value=1, max_value=255))
def test_only_damaged_escapes(codec: str, cut: int, flip: int, xor: int) -> None:
    data = bytearray(compress(codec, SMALL))
    data[flip % len(data)] ^= xor
    with contextlib.suppress(Damaged):
        decode(codec, bytes(data[: len(data) - cut % len(data)]))


def test_decode_all_and_its_limit(codec: str) -> None:
    data = compress(codec, SMALL)
    assert compression.decode_all(codec, data, 0, limit=len(SMALL)) == SMALL
    with pytest.raises(InputError, match=f"decompresses to more than {len(SMALL) - 1:,} bytes"):
        compression.decode_all(codec, data, 0, limit=len(SMALL) - 1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        compression.decode_stream("brotli", b"", 0)
    with pytest.raises(ValueError, match="outside data"):
        compression.decode_stream("gzip", b"abc", 0, end=10)
    with pytest.raises(ValueError, match="positive"):
        compression.decode_stream("gzip", b"abc", 0, chunk=0)


def test_empty_input_is_truncated() -> None:
    with pytest.raises(Damaged):
        decode("gzip", b"\x1f\x8b\x08")


# Bombs: output per piece stays bounded even at huge ratios -------------------------------------


@pytest.mark.parametrize("name", ["gzip", "bzip2", "xz", "zstd", "lz4", "lzo"])
def test_bomb_pieces_stay_small(name: str) -> None:
    require(name)
    bomb = compress(name, bytes(16 << 20))
    chunk = 64 << 10
    stream = compression.decode_stream(name, bomb, 0, chunk=chunk)
    for _, piece in zip(range(8), stream, strict=False):
        assert len(piece) <= chunk * compression.OUTPUT_PER_CHUNK + compression.ZSTD_BLOCK_MAX
    stream.close()


# lz4 legacy frame: the end is not marked -------------------------------------------------------


@pytest.fixture(scope="module")
def lz4_multi() -> tuple[bytes, bytes]:
    require("lz4")
    original = kernel_like(3 << 20, seed=3) * 6  # 18 MiB: three 8 MiB legacy blocks
    return original, compress("lz4", original)


def test_lz4_several_blocks(lz4_multi: tuple[bytes, bytes]) -> None:
    original, data = lz4_multi
    assert decode("lz4", data) == original
    assert decode("lz4", data, end=len(data)) == original
    assert decode("lz4", data[:-4]) == original  # plain `lz4 -l` file: ends at EOF


def test_lz4_trailer_then_other_data(lz4_multi: tuple[bytes, bytes]) -> None:
    original, data = lz4_multi
    # the trailer (18 MiB) is no valid block size; a small trailer is recognised by its value
    assert decode("lz4", data + b"\x55" * 5000) == original
    small = compress("lz4", SMALL)
    assert decode("lz4", small + b"\x55" * 100000) == SMALL


def test_lz4_repeated_magic_continues(lz4_multi: tuple[bytes, bytes]) -> None:
    # lib/decompress_unlz4.c skips a magic between blocks (concatenated legacy frames)
    first = compress("lz4", SMALL, size_trailer=False)
    second = compress("lz4", ORIGINAL, size_trailer=False)
    assert decode("lz4", first + second) == SMALL + ORIGINAL


def test_lz4_block_past_exact_end(lz4_multi: tuple[bytes, bytes]) -> None:
    _, data = lz4_multi
    with pytest.raises(Damaged) as info:
        decode("lz4", data, end=len(data) - 100)
    assert info.value.offset == len(data) - 100


def test_lz4_oversized_block_size() -> None:
    data = compression.MAGICS["lz4"] + struct.pack("<I", compression.LZ4_LEGACY_BLOCK_INPUT_MAX + 1) + bytes(100)
    with pytest.raises(Damaged, match="exceeds"):
        decode("lz4", data, end=len(data))


def test_lz4_corrupt_first_block() -> None:
    data = compression.MAGICS["lz4"] + struct.pack("<I", 8) + b"\xff" * 8
    with pytest.raises(Damaged) as info:
        decode("lz4", data)
    assert info.value.offset == 4


# lzop file format: header variants and checksums -----------------------------------------------


ALL_SUMS = (compression.LZOP_F_ADLER32_D | compression.LZOP_F_CRC32_D | compression.LZOP_F_ADLER32_C
            | compression.LZOP_F_CRC32_C)


def lzo_blocks() -> Iterator[bytes]:
    yield SMALL[:30000]
    yield bytes(range(256)) * 10  # compresses
    yield b"\x01"  # stored: LZO output would be larger


@pytest.mark.parametrize(("flags", "extra", "header_crc32"), [
    (compression.LZOP_F_ADLER32_D, None, False),
    (0, None, False),
    (ALL_SUMS, None, False),
    (compression.LZOP_F_CRC32_D | compression.LZOP_F_CRC32_C, b"extra field", True),
])
def test_lzop_header_and_checksum_variants(flags: int, extra: bytes | None, header_crc32: bool) -> None:
    blocks = list(lzo_blocks())
    data = lzop_file(blocks, flags=flags, extra=extra, header_crc32=header_crc32)
    assert compression.identify(data, 0) == "lzo"
    assert decode("lzo", data + b"trailer") == b"".join(blocks)


def test_lzop_crc32_from_the_tool() -> None:
    require("lzo")
    import subprocess

    data = subprocess.run(["lzop", "-9", "--crc32"], input=SMALL, capture_output=True, check=True).stdout
    assert decode("lzo", data) == SMALL


@pytest.mark.parametrize("which", ["data", "compressed"])
def test_lzop_checksum_mismatch(which: str) -> None:
    data = bytearray(lzop_file([SMALL[:30000]], flags=ALL_SUMS))
    header_end = len(lzop_file([], flags=ALL_SUMS)) - 4
    sum_at = header_end + 8 + (0 if which == "data" else 8)
    data[sum_at] ^= 1
    with pytest.raises(Damaged, match="mismatch") as info:
        decode("lzo", bytes(data))
    assert info.value.offset == header_end


def test_lzop_block_size_cap_checked_before_allocating() -> None:
    header = lzop_file([])[:-4]
    data = header + struct.pack(">II", compression.LZOP_BLOCK_MAX + 1, 10) + bytes(20)
    with pytest.raises(Damaged, match="exceeds"):
        decode("lzo", data)


def test_lzop_compressed_larger_than_block() -> None:
    header = lzop_file([])[:-4]
    data = header + struct.pack(">II", 10, 11) + bytes(20)
    with pytest.raises(Damaged, match="compressed block size"):
        decode("lzo", data)


def test_lzop_filter_refused() -> None:
    data = lzop_file([b"x" * 100], flags=compression.LZOP_F_ADLER32_D | compression.LZOP_F_H_FILTER)
    assert compression.identify(data, 0) is None
    with pytest.raises(Damaged, match="filter"):
        decode("lzo", data)


# zstd frame walking ----------------------------------------------------------------------------


def test_zstd_reserved_block_type() -> None:
    import zstandard

    frame = zstandard.ZstdCompressor(write_checksum=True).compress(SMALL)
    header = compression._zstd_frame_header(frame, 0, len(frame)).end
    broken = bytearray(frame)
    broken[header] |= 0x06  # block type 3
    with pytest.raises(Damaged, match="reserved block type") as info:
        decode("zstd", bytes(broken))
    assert info.value.offset == header


def test_zstd_content_size_and_dictionary_fields() -> None:
    import zstandard

    frame = zstandard.ZstdCompressor(write_content_size=True, write_dict_id=False).compress(ORIGINAL)
    assert decode("zstd", frame + b"\x00\x01\x02\x03trailing") == ORIGINAL


def test_zstd_single_segment_frame() -> None:
    import zstandard

    frame = zstandard.ZstdCompressor(write_content_size=True).compress(b"tiny")
    assert frame[4] & 0x20  # single segment: no window descriptor
    assert decode("zstd", frame) == b"tiny"
