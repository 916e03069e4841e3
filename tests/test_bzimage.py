"""x86 bzImage: payload from the boot header, scan fallback, lazy decoding, damage."""

from __future__ import annotations

import mmap
import random
from pathlib import Path

import pytest
from builders_bzimage import FakeBzImage, bzimage, compress, kernel_like, require, with_bytes

from extract_ikheaders import compression
from extract_ikheaders.errors import Damaged, NotFound, NotMine
from extract_ikheaders.images import bzimage as bz

ORIGINAL = kernel_like()


@pytest.fixture
def fake(codec: str) -> FakeBzImage:
    return bzimage(compress(codec, ORIGINAL))


def decoded(image: bytes | mmap.mmap) -> bytes:
    _, chunks = bz.payload_chunks(image, "test")
    return b"".join(chunks)


# The header path -----------------------------------------------------------------------------


def test_header_locates_payload(codec: str, fake: FakeBzImage) -> None:
    payload = bz.peel(fake.image, "test")
    assert (payload.codec, payload.offset, payload.end) == (codec, fake.payload_start, fake.payload_end)
    assert payload.layer.format == "bzImage"
    assert (payload.layer.offset, payload.layer.length) == (fake.payload_start, fake.payload_length)
    assert payload.layer.detail == f"boot protocol 2.15, {codec}"


def test_decodes_exactly(codec: str, fake: FakeBzImage) -> None:
    layers, chunks = bz.payload_chunks(fake.image, "test")
    assert [layer.format for layer in layers] == ["bzImage"]
    assert b"".join(chunks) == ORIGINAL


@pytest.mark.parametrize("setup_sects", [0, 1, 30])
def test_setup_sects_and_its_zero_default(setup_sects: int) -> None:
    require("gzip")
    fake = bzimage(compress("gzip", ORIGINAL), setup_sects=setup_sects)
    assert bz.peel(fake.image, "test").offset == fake.payload_start
    assert decoded(fake.image) == ORIGINAL


def test_header_without_boot_flag_still_used() -> None:
    require("gzip")
    fake = bzimage(compress("gzip", ORIGINAL))
    payload = bz.peel(with_bytes(fake.image, bz.BOOT_FLAG, b"\0\0"), "test")
    assert payload.end == fake.payload_end


def test_reads_from_mmap(tmp_path: Path) -> None:
    require("gzip")
    fake = bzimage(compress("gzip", ORIGINAL))
    path = tmp_path / "bzImage"
    path.write_bytes(fake.image)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        assert decoded(view) == ORIGINAL


# Scan fallback -------------------------------------------------------------------------------


def test_zeroed_hdrs_falls_back_to_scan(codec: str, fake: FakeBzImage) -> None:
    image = with_bytes(fake.image, bz.HEADER, bytes(4))
    payload = bz.peel(image, "test")
    assert (payload.codec, payload.offset, payload.end) == (codec, fake.payload_start, None)
    assert "scanning (no HdrS setup header)" in payload.layer.detail
    assert decoded(image) == ORIGINAL


@pytest.mark.parametrize(("field", "value", "reason"), [
    (bz.VERSION, b"\x07\x02", "boot protocol 2.07 has no payload fields"),
    (bz.PAYLOAD_OFFSET, b"\x10\x00\x00\x00", "no known compressor at payload offset"),
    (bz.PAYLOAD_LENGTH, b"\xff\xff\xff\x7f", "does not fit in the file"),
    (bz.PAYLOAD_LENGTH, b"\x02\x00\x00\x00", "payload_length 2 is too small"),
])
def test_unusable_header_fields_fall_back_to_scan(field: int, value: bytes, reason: str) -> None:
    require("xz")
    fake = bzimage(compress("xz", ORIGINAL))
    image = with_bytes(fake.image, field, value)
    payload = bz.peel(image, "test")
    assert payload.offset == fake.payload_start
    assert reason in payload.layer.detail
    assert decoded(image) == ORIGINAL


def test_false_gzip_hit_before_payload_is_skipped_cheaply() -> None:
    require("zstd")
    junk = b"\x1f\x8b\x08\x00" + bytes(6) + random.Random(5).randbytes(1 << 20)
    fake = bzimage(compress("zstd", ORIGINAL), stub=bz_stub_with(junk))
    image = ReadLog(with_bytes(fake.image, bz.HEADER, b"Hdr?"))
    payload = next(bz.scan_payloads(image))
    assert (payload.codec, payload.offset) == ("zstd", fake.payload_start)
    junk_start = fake.image.index(junk)
    assert compression.identify(image, junk_start) == "gzip"  # the header passes: only a trial decode tells
    # the trial decode of the false hit reads a few KiB, not the megabyte behind it
    assert image.bytes_read(junk_start + (64 << 10), fake.payload_start) < 1024
    assert image.bytes_read(junk_start, junk_start + (64 << 10)) <= 64 << 10


def test_scan_yields_every_stream_in_file_order() -> None:
    require("bzip2", "gzip")
    first, second = compress("bzip2", ORIGINAL), compress("gzip", b"second stream" * 100)
    image = b"\0" * 100 + first + b"\0" * 10 + second + b"\0" * 10
    hits = [(p.codec, p.offset) for p in bz.scan_payloads(image)]
    assert hits[:2] == [("bzip2", 100), ("gzip", 110 + len(first))]


def test_truncated_file_falls_back_and_raises_damaged(codec: str, fake: FakeBzImage) -> None:
    cut = fake.payload_start + fake.payload_length // 2
    layers, chunks = bz.payload_chunks(fake.image[:cut], "test")
    assert "does not fit in the file" in layers[0].detail
    with pytest.raises(Damaged) as info:
        b"".join(chunks)
    assert info.value.offset is not None
    assert fake.payload_start < info.value.offset <= cut


def test_payload_cut_short_inside_the_header_span(codec: str, fake: FakeBzImage) -> None:
    # the header's length is believed: a stream running past it is damaged
    middle = fake.payload_start + fake.payload_length // 2
    image = fake.image[:middle] + fake.image[fake.payload_end :] + bytes(fake.payload_end - middle)
    with pytest.raises(Damaged) as info:
        decoded(image)
    assert info.value.offset is not None
    assert fake.payload_start < info.value.offset <= fake.payload_end


# Lazy decoding -------------------------------------------------------------------------------


def test_early_stop_never_touches_the_rest(codec: str) -> None:
    original = kernel_like(3 << 20, seed=3) * 6 if codec == "lz4" else ORIGINAL  # several 8 MiB lz4 blocks
    fake = bzimage(compress(codec, original))
    keep = fake.payload_start + fake.payload_length * 6 // 10
    image = fake.image[:keep] + b"\xa5" * (len(fake.image) - keep)  # garbage the decoder must not reach
    _, chunks = bz.payload_chunks(image, "test")
    first = next(chunks)
    chunks.close()
    assert first and original.startswith(first)


# Not mine, not found -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x7fELF" + bytes(0x300), bytes(0x1000), b"MZ" + bytes(0x300)])
def test_not_a_bzimage(data: bytes) -> None:
    with pytest.raises(NotMine):
        bz.peel(data, "test")


def test_bzimage_without_payload_is_not_found() -> None:
    fake = bzimage(b"\0" * 1000, stub=b"")
    with pytest.raises(NotFound, match="no known compressor"):
        bz.peel(fake.image, "test")


# Helpers -------------------------------------------------------------------------------------


def bz_stub_with(junk: bytes) -> bytes:
    return b"\x90" * 0x40 + junk + b"\x90" * 0x40


class ReadLog(bytes):
    """bytes that log every slice taken from them (what the decoders read)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.reads: list[tuple[int, int]] = []

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            self.reads.append((start, stop))
        return super().__getitem__(key)

    def bytes_read(self, start: int, stop: int) -> int:
        return sum(max(0, min(stop, b) - max(start, a)) for a, b in self.reads)
