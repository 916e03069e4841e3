"""Every kernel-image format, in the order the pipeline tries them. Adding a format is one module
in images/ exporting a peeler.Format and one line in ORDER (docs/ARCHITECTURE.md lists the tests a
new format needs; tests/test_formats.py fails until they exist).

The order matters where probes overlap: an ELF or a compressed file first (their magics are
exact), a boot.img's kernel before the image formats, zboot (an MZ file with "zimg") before the
arm64 and riscv Images it would otherwise be taken for, bzImage before the formats found by
scanning for a payload.

A format's module is loaded when the walk reaches it (lazy.py): an ELF vmlinux, the first format,
never loads the image formats or their codecs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .. import lazy
from .peeler import Format

if TYPE_CHECKING:  # the edges, for mypy and import-linter; loaded on first use below
    from . import arm64_image, armzimage, bootimg, bzimage, compressed, elf_kernel, s390  # noqa: F401

# (module in images/, the Format it exports), in the order they are tried
ORDER: tuple[tuple[str, str], ...] = (
    ("elf_kernel", "FORMAT"),
    ("compressed", "FORMAT"),
    ("bootimg", "FORMAT"),
    ("arm64_image", "ZBOOT"),
    ("bzimage", "FORMAT"),
    ("arm64_image", "ARM64"),
    ("armzimage", "FORMAT"),
    ("s390", "FORMAT"),
    ("arm64_image", "RISCV"),
)


def formats() -> Iterator[Format]:
    """The formats in order, each module loaded as the walk reaches it."""
    for module, name in ORDER:
        fmt: Format = getattr(lazy.module(f"{__package__}.{module}"), name)
        yield fmt
