"""A whole file compressed by one of the kernel's compressors: Image.gz, kheaders.ko.zst, a vmlinux.xz
... The content is peeled again; an xz file whose content is a tar of ./include/ headers is the
archive itself (a copy of /sys/kernel/kheaders.tar.xz)."""

from __future__ import annotations

from .. import compression
from ..archive import xzstream
from ..buffer import Buffer
from ..errors import ExtractError
from ..model import Layer
from .peeler import Format, Peeled

# Whole-file compressions a module or an image may come in (.ko.xz, .ko.zst, .ko.gz, Image.gz, ...).
WHOLE_FILE_CODECS = ("xz", "zstd", "gzip", "bzip2", "lzma", "lz4", "lzo")


def codec_of(data: Buffer) -> str | None:
    name = compression.identify(data, 0)
    return name if name in WHOLE_FILE_CODECS else None


def is_compressed(data: Buffer) -> bool:
    return codec_of(data) is not None


def peel(data: Buffer, path: str) -> Peeled:
    codec = codec_of(data)
    assert codec is not None, "peel() follows a matching probe"
    if codec == "xz" and xzstream.looks_like_headers(data, 0):
        return Peeled((), data=data, whole_archive=True)
    try:
        decoded = compression.decode_all(codec, data, 0)
    except ExtractError as exc:
        exc.located(path=path, layer=codec)  # the layer is named by its codec, as the Layer is
        raise
    return Peeled((Layer(codec, 0, len(data), f"{len(decoded)} bytes decompressed"),), data=decoded, again=True)


FORMAT = Format("compressed file", is_compressed, peel)
