"""Class 3 (in part): a decoder's output is bounded by its caller, whatever the input claims.

A kdump page decodes to one page: a page whose compressed data declares (snappy, zstd) or makes
(zlib) far more is refused before any large allocation; the dump's other pages are still searched.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import cramjam
import pytest
import zstandard
from builders import headers_archive
from dump_builders import CODEC_FLAGS, PAGE, kdump_file, memory_image, pages_of

from hostile.inputs import LZO_UNIT_OUTPUT, lzo_bzimage, lzo_expanding
from hostile.limited import run

pytestmark = pytest.mark.slow  # a sweep: run by CI and on demand, outside the per-commit suite

ARCHIVE = headers_archive()
BOMBS = {
    # five bytes that declare 4 GiB: cramjam allocates the declared length before decoding
    "snappy": lambda: b"\xff\xff\xff\xff\x0f" + b"\0" * 16,
    # a 64 MiB frame that compresses to far under a page
    "zstd": lambda: zstandard.ZstdCompressor().compress(bytes(64 << 20)),
    # a page's worth of zlib that inflates to about 4 MiB
    "zlib": lambda: zlib.compress(bytes(4 << 20), 9),
    # 3.3 KB of LZO1X that decodes to 600 KiB (lzallright, before lzokay, decoded all of it)
    "lzo": lambda: lzo_expanding(300),
}


@pytest.mark.parametrize("codec", BOMBS)
def test_a_page_that_would_decode_to_more_than_a_page(tmp_path: Path, codec: str) -> None:
    bomb = BOMBS[codec]()
    assert len(bomb) <= PAGE
    pages = pages_of(memory_image(16 * PAGE, {5 * PAGE: ARCHIVE}))
    dump = kdump_file(pages, codec=codec, stored={2: (bomb, CODEC_FLAGS[codec])})
    (tmp_path / "dump").write_bytes(dump)
    result = run("-a", tmp_path / "a.tar.xz", tmp_path / "dump", cwd=tmp_path)
    assert result.code == 0, result.err  # the bomb page is skipped, the archive elsewhere found
    assert hashlib.sha256((tmp_path / "a.tar.xz").read_bytes()).digest() == hashlib.sha256(ARCHIVE).digest()


def test_snappy_declared_length_is_read_before_decoding() -> None:
    from extract_ikheaders.dumps import kdump

    decode = kdump._make_decoder(CODEC_FLAGS["snappy"], PAGE)
    with pytest.raises(Exception, match="declares 4,294,967,295 bytes, more than a page"):
        decode(b"\xff\xff\xff\xff\x0f")
    assert decode(bytes(cramjam.snappy.compress_raw(b"a" * PAGE))) == b"a" * PAGE


def test_an_lzo_block_that_decodes_past_its_declared_size(tmp_path: Path) -> None:
    """11 MB of LZO1X in a block declaring 12 MiB decodes to 2 GB: lzallright, which takes the size
    as a hint, grew to 5 GB of RSS; the block is now decoded into a buffer of the declared size."""
    image = tmp_path / "bzImage"
    image.write_bytes(lzo_bzimage(1_000_000, 12 << 20))
    result = run("-a", tmp_path / "a.tar.xz", image, cwd=tmp_path)
    assert result.code == 3, result.err
    assert "LZO data decodes to more than 12,582,912 bytes" in result.err
    assert not (tmp_path / "a.tar.xz").exists()


def test_lzo_decodes_exactly_the_declared_size() -> None:
    from extract_ikheaders.compression import decode_lzo1x
    from extract_ikheaders.errors import Damaged

    size = 1 + 10 * LZO_UNIT_OUTPUT
    assert decode_lzo1x(lzo_expanding(10), size) == bytes(size)
    with pytest.raises(Damaged, match="more than 20,480 bytes"):
        decode_lzo1x(lzo_expanding(10), size - 1)
    with pytest.raises(Damaged, match="fewer than 20,482 bytes"):
        decode_lzo1x(lzo_expanding(10), size + 1)


def test_a_whole_file_stream_that_inflates_past_any_kernel(tmp_path: Path) -> None:
    """300 KB of gzip that inflates to 300 MiB: refused at codecs.MAX_IMAGE (256 MiB), with the
    remedy, before it is all held; the run stays under the runner's 1 GiB address space."""
    import gzip

    from extract_ikheaders.compression import MAX_IMAGE

    image = tmp_path / "Image.gz"
    with gzip.open(image, "wb", compresslevel=1) as out:
        for _ in range(300):
            out.write(bytes(1 << 20))
    result = run("-a", tmp_path / "a.tar.xz", image, cwd=tmp_path)
    assert result.code == 2, result.err
    assert f"decompresses to more than {MAX_IMAGE:,} bytes" in result.err and "decompress it first" in result.err


PEAK_RSS = 512 << 20  # on any input up to 64 MiB


@pytest.mark.parametrize(("build", "count"), [("lime_tiny_ranges", 2_000_000), ("elf_tiny_loads", 1_100_000)],
                         ids=["lime-2M-ranges", "elf-core-1.1M-loads"])
def test_a_64_mib_dump_of_millions_of_ranges(tmp_path: Path, build: str, count: int) -> None:
    """Ranges are held in columns of integers (memory.ExtentTable, elf.SegmentTable), windows made
    as searched: as objects these inputs peaked at 0.9 GB."""
    from hostile import inputs

    image = tmp_path / "dump"
    image.write_bytes(getattr(inputs, build)(count))
    assert image.stat().st_size <= 64 << 20
    result = run("-a", tmp_path / "a.tar.xz", image, cwd=tmp_path)
    assert result.code == 0, result.err
    assert hashlib.sha256((tmp_path / "a.tar.xz").read_bytes()).digest() == hashlib.sha256(ARCHIVE).digest()
    assert result.peak_rss < PEAK_RSS, f"peak RSS {result.peak_rss >> 20} MiB"


def test_a_million_symbols_stay_under_the_bound(tmp_path: Path) -> None:
    """A 7 MB image declaring MAX_SYMS symbols of 100 bytes each: as tuples the table alone took
    over 400 MB; in columns (symtab.SymbolTable) it is the 100 MB of text and 12 bytes a symbol,
    and System.map is written in chunks, never built whole."""
    from extract_ikheaders.analysis.symtab import MAX_SYMS
    from hostile.inputs import kallsyms_table

    image = tmp_path / "image"
    image.write_bytes(kallsyms_table(MAX_SYMS, 100))
    result = run("--symbols", tmp_path / "System.map", image, cwd=tmp_path)
    assert result.code == 0, result.err
    with (tmp_path / "System.map").open("rb") as lines:
        first = lines.readline()
        count = 1 + sum(1 for _ in lines)
    assert first == b"ffffffff81000000 T " + b"s" * 99 + b"\n"
    assert count == MAX_SYMS
    assert result.peak_rss < PEAK_RSS, f"peak RSS {result.peak_rss >> 20} MiB"


def test_names_that_expand_past_the_bound_are_refused(tmp_path: Path) -> None:
    """Three bytes of kallsyms_names a symbol that two tokens expand to 400: a million of them would
    be 400 MB of names. Decoding stops at symtab.MAX_TEXT and says so; nothing is written."""
    from extract_ikheaders.analysis.symtab import MAX_SYMS
    from hostile.inputs import kallsyms_table

    image = tmp_path / "image"
    image.write_bytes(kallsyms_table(MAX_SYMS, 400))
    result = run("--symbols", tmp_path / "System.map", image, cwd=tmp_path)
    assert result.code == 3, result.err
    assert "kallsyms_names expands to more than 128 MiB by symbol 335,544" in result.err
    assert not (tmp_path / "System.map").exists()
    assert result.peak_rss < PEAK_RSS, f"peak RSS {result.peak_rss >> 20} MiB"


def test_a_name_longer_than_the_kernel_allows_is_refused(tmp_path: Path) -> None:
    from hostile.inputs import kallsyms_table

    image = tmp_path / "image"
    image.write_bytes(kallsyms_table(300, 1000))
    result = run("--symbols", tmp_path / "System.map", image, cwd=tmp_path)
    assert result.code == 3, result.err
    assert "kallsyms_names symbol 0 expands to 1000 bytes, longer than any kernel allows (512)" in result.err
