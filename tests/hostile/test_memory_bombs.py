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

from hostile.limited import run

ARCHIVE = headers_archive()
BOMBS = {
    # five bytes that declare 4 GiB: cramjam allocates the declared length before decoding
    "snappy": lambda: b"\xff\xff\xff\xff\x0f" + b"\0" * 16,
    # a 64 MiB frame that compresses to far under a page
    "zstd": lambda: zstandard.ZstdCompressor().compress(bytes(64 << 20)),
    # a page's worth of zlib that inflates to about 4 MiB
    "zlib": lambda: zlib.compress(bytes(4 << 20), 9),
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
    from extract_ikheaders.containers import kdump

    decode = kdump._make_decoder(CODEC_FLAGS["snappy"], PAGE)
    with pytest.raises(Exception, match="declares 4,294,967,295 bytes, more than a page"):
        decode(b"\xff\xff\xff\xff\x0f")
    assert decode(bytes(cramjam.snappy.compress_raw(b"a" * PAGE))) == b"a" * PAGE
