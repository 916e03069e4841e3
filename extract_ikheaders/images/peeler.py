"""The contract every kernel-image format follows.

A format is a `Format`: a cheap `probe` that looks at header bytes only, and a `peel` that returns
the next layer (`Peeled`). The pipeline walks `images.registry.formats()` in order: the first format
whose probe matches peels; a peel that finds on a closer look that the input is not its format
raises NotMine, and the next format is tried. The innermost data is either bytes to search (raw
memory, an uncompressed Image, an ELF file) or a stream of decoded chunks (a compressed kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import lazy
from ..buffer import Buffer
from ..elf.reader import ElfImage
from ..model import Layer, Platform

if TYPE_CHECKING:  # loaded when a format first streams a decoded kernel (lazy.py)
    from .. import compression
else:
    compression = lazy.module("extract_ikheaders.compression")


@dataclass(frozen=True)
class Peeled:
    """What peeling gives: the layers added (outermost first) and the data inside them.

    Exactly one of `data` and `chunks` is set. With `again`, `data` is another container to peel
    (a boot.img's kernel, a gzip file's content); otherwise it is the data to search.
    """

    layers: tuple[Layer, ...]
    data: Buffer | None = None
    chunks: Iterator[bytes] | None = None
    again: bool = False
    elf: ElfImage | None = None  # `data` is this ELF file: search it by its symbols and sections
    whole_archive: bool = False  # `data` is the headers archive itself
    release: str | None = None  # what the container says (a module's vermagic)
    notes: tuple[str, ...] = ()
    platform: Platform | None = None


@dataclass(frozen=True)
class Format:
    """One kernel-image format: `name` as `--info` and the docs call it; `probe(data)` is true when
    the header bytes are this format's; `peel(data, path)` returns the next layer or raises
    NotMine (not this format after all), NotFound or Damaged."""

    name: str
    probe: Callable[[Buffer], bool]
    peel: Callable[[Buffer, str], Peeled]


def streamed(layers: tuple[Layer, ...], chunks: compression.Stream) -> Peeled:
    """A decoded kernel, streamed: bounded by compression.MAX_IMAGE."""
    return Peeled(layers, chunks=compression.capped(chunks))
