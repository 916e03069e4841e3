"""Class 4 generators: inputs whose cost grows with what they declare (ranges, markers, members).
Shared by tests/hostile/test_scaling.py (under hard limits) and bench/hostile.py (n and 10·n)."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile

from dump_builders import Seg, elf_core, lime
from synthetic import headers_archive

PAGE = 4096
ARCHIVE = headers_archive()


RANGE = 64  # bytes per range: many ranges, a small file


def lime_ranges(n: int) -> bytes:
    """n LiME ranges of 64 bytes each, with gaps between them, the archive in the last one."""
    ranges = [(i * PAGE, b"\x01" * RANGE) for i in range(n - 1)]
    return lime([*ranges, ((n - 1) * PAGE, ARCHIVE)])


def elf_loads(n: int) -> bytes:
    """An ELF core with n PT_LOADs of 64 bytes each, with gaps between them, the archive in the last one."""
    segs = [Seg(i * PAGE, b"\x01" * RANGE) for i in range(n - 1)]
    return elf_core([*segs, Seg((n - 1) * PAGE, ARCHIVE)], xnum=n + 1 > 0xFFFE)


def config_markers(n: int) -> bytes:
    """n IKCFG_ST markers with nothing valid after them, then a real embedded .config."""
    config = gzip.compress(b"CONFIG_IKCONFIG=y\n", mtime=0)
    return b"IKCFG_ST" * n + b"\0" * 64 + b"IKCFG_ST" + config + b"IKCFG_ED" + ARCHIVE


def duplicate_members(n: int) -> bytes:
    """An archive of n entries with the same name (the first is kept, the rest skipped)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("./include/linux/dup.h")
        for _ in range(n):
            tar.addfile(info, io.BytesIO(b""))
        utsrelease = b'#define UTS_RELEASE "6.1.0-dup"\n'
        info = tarfile.TarInfo("./include/generated/utsrelease.h")
        info.size = len(utsrelease)
        tar.addfile(info, io.BytesIO(utsrelease))
    return lzma.compress(raw.getvalue(), check=lzma.CHECK_CRC64)
