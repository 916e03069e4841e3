"""Every kernel-image format, in the order the pipeline tries them. Adding a format is one module
in images/ exporting a peeler.Format and one line here (docs/ARCHITECTURE.md lists the tests a
new format needs; tests/test_formats.py fails until they exist).

The order matters where probes overlap: an ELF or a compressed file first (their magics are
exact), a boot.img's kernel before the image formats, zboot (an MZ file with "zimg") before the
arm64 and riscv Images it would otherwise be taken for, bzImage before the formats found by
scanning for a payload.
"""

from __future__ import annotations

from . import arm64_image, armzimage, bootimg, bzimage, compressed, elf_kernel, s390
from .peeler import Format

FORMATS: tuple[Format, ...] = (
    elf_kernel.FORMAT,
    compressed.FORMAT,
    bootimg.FORMAT,
    arm64_image.ZBOOT,
    bzimage.FORMAT,
    arm64_image.ARM64,
    armzimage.FORMAT,
    s390.FORMAT,
    arm64_image.RISCV,
)
