"""Each layout in miniature: synthetic ELF objects built with kernel/kheaders.c's own inline asm."""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

import pytest
from builders import headers_archive, incbin_object, strip

import extract_ikheaders
from extract_ikheaders import Damaged, Method, NotFound
from extract_ikheaders.archive import xzstream
from extract_ikheaders.elf.reader import ElfImage

ARCHIVE = headers_archive()


def test_symbols_in_linked_image(tmp_path: Path) -> None:
    found = extract_ikheaders.find(incbin_object(tmp_path, ARCHIVE))
    assert found.method == Method.SYMBOLS
    assert found.archive == ARCHIVE
    assert found.release == "6.1.0-synthetic"
    assert found.layers[0].format == "elf" and "ET_EXEC" in found.layers[0].detail


def test_symbols_in_relocatable_object_are_section_relative(tmp_path: Path) -> None:
    obj = incbin_object(tmp_path, ARCHIVE, link=False)
    elf = ElfImage(obj.read_bytes())
    sym = elf.find_symbols("kernel_headers_data")["kernel_headers_data"]
    assert elf.type == 1 and sym.value == 0  # first thing in .rodata
    found = extract_ikheaders.find(obj)
    assert (found.method, found.archive) == (Method.SYMBOLS, ARCHIVE)


def test_stripped_image_is_carved(tmp_path: Path) -> None:
    found = extract_ikheaders.find(strip(incbin_object(tmp_path, ARCHIVE)))
    assert (found.method, found.archive) == (Method.CARVE, ARCHIVE)


def test_seed_markers_in_stripped_image(tmp_path: Path) -> None:
    found = extract_ikheaders.find(strip(incbin_object(tmp_path, ARCHIVE, markers=True)))
    assert (found.method, found.archive) == (Method.MARKERS, ARCHIVE)


def test_stray_marker_strings_do_not_fool_the_marker_search(tmp_path: Path) -> None:
    raw = b"IKHD_ST and IKHD_ED appear in a tool's strings" + b"\0" * 100 + b"IKHD_ST" + ARCHIVE + b"IKHD_ED"
    path = tmp_path / "image.bin"
    path.write_bytes(raw)
    found = extract_ikheaders.find(path)
    assert (found.method, found.archive, found.offset) == (Method.MARKERS, ARCHIVE, raw.rindex(ARCHIVE))


def test_plain_archive_is_taken_whole(tmp_path: Path) -> None:
    path = tmp_path / "kheaders.tar.xz"
    path.write_bytes(ARCHIVE)
    found = extract_ikheaders.find(path)
    assert (found.method, found.archive) == (Method.WHOLE, ARCHIVE)


def test_an_xz_stream_that_is_not_headers_is_not_carved(tmp_path: Path) -> None:
    other = lzma.compress(b"just some data " * 1000)
    path = tmp_path / "image.bin"
    path.write_bytes(b"\0" * 64 + other + b"\0" * 64)
    with pytest.raises(NotFound, match="cannot find kernel headers"):
        extract_ikheaders.find(path)


def test_carve_skips_a_foreign_stream_before_the_headers(tmp_path: Path) -> None:
    other = lzma.compress(b"config data " * 500)
    raw = b"junk" + other + b"\0" * 13 + ARCHIVE + b"tail"
    path = tmp_path / "image.bin"
    path.write_bytes(raw)
    found = extract_ikheaders.find(path)
    assert (found.method, found.offset, found.archive) == (Method.CARVE, raw.index(ARCHIVE), ARCHIVE)


@pytest.mark.parametrize("check", [lzma.CHECK_NONE, lzma.CHECK_CRC32, lzma.CHECK_CRC64, lzma.CHECK_SHA256])
def test_stream_end_comes_from_the_index_for_every_check(check: int) -> None:
    stream = lzma.compress(b"x" * 100_000 + bytes(range(256)) * 400, check=check)
    buf = b"prefix" + stream + b"\0\0\0\0" + b"IKHD_ED"
    info = xzstream.stream_end(buf, 6)
    assert (info.start, info.end) == (6, 6 + len(stream))


def test_stream_end_rejects_a_broken_index() -> None:
    stream = bytearray(lzma.compress(b"abc" * 1000))
    stream[-20] ^= 0xFF  # inside the index: its CRC32 no longer matches
    with pytest.raises(Damaged):
        xzstream.stream_end(bytes(stream), 0)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_archive_between_symbols_is_damaged(tmp_path: Path, keep: float) -> None:
    cut = ARCHIVE[: int(len(ARCHIVE) * keep)]
    with pytest.raises(Damaged):
        extract_ikheaders.find(incbin_object(tmp_path, cut))


def test_bit_flip_in_block_data_is_damaged(tmp_path: Path) -> None:
    bad = bytearray(ARCHIVE)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(Damaged):
        extract_ikheaders.find(incbin_object(tmp_path, bytes(bad)))


def test_found_sha256_matches_the_bytes(tmp_path: Path) -> None:
    found = extract_ikheaders.find(incbin_object(tmp_path, ARCHIVE))
    assert found.sha256 == hashlib.sha256(ARCHIVE).hexdigest()
