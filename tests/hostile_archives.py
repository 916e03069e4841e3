"""Builders for small archives laid out like the kernel's (names start with "./"), hostile ones included."""

from __future__ import annotations

import io
import lzma
import tarfile
from collections.abc import Iterable, Iterator

MTIME = 1_700_000_000
Entry = tuple[tarfile.TarInfo, bytes]


def member(name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", mode: int = 0o644,
           linkname: str = "", pax: dict[str, str] | None = None) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, MTIME, linkname
    info.size = len(data)
    info.pax_headers = pax or {}
    return info, data


def file(name: str, data: bytes = b"", mode: int = 0o644) -> Entry:
    return member(name, data=data, mode=mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return member(name, tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return member(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def hardlink(name: str, target: str) -> Entry:
    return member(name, tarfile.LNKTYPE, linkname=target)


def tar(entries: Iterable[Entry], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as out:
        for info, data in entries:
            out.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def xz(data: bytes) -> bytes:
    return lzma.compress(data, check=lzma.CHECK_CRC32)  # as the kernel's gen_kheaders.sh


def archive(*entries: Entry, root: bool = True, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """An .tar.xz of `entries`, after a "./" root entry like the kernel's."""
    return xz(tar([directory("./"), *entries] if root else entries, fmt))


def claimed_size(name: str, claimed: int, present: int) -> bytes:
    """A regular file whose header claims `claimed` bytes while only `present` follow, then nothing."""
    info, _ = member(name)
    info.size = claimed
    root = directory("./")[0].tobuf(tarfile.GNU_FORMAT)
    return xz(root + info.tobuf(tarfile.GNU_FORMAT) + b"x" * present)


def zero_files(count: int, size: int, preset: int = 0) -> bytes:
    """`count` files of `size` zero bytes each, compressed as a stream (an xz bomb when large)."""
    compressor = lzma.LZMACompressor(preset=preset, check=lzma.CHECK_CRC32)
    out = [compressor.compress(chunk) for chunk in _zero_files_tar(count, size)]
    return b"".join([*out, compressor.flush()])


def _zero_files_tar(count: int, size: int) -> Iterator[bytes]:
    yield directory("./")[0].tobuf(tarfile.GNU_FORMAT)
    chunk = bytes(1 << 20)
    for i in range(count):
        info, _ = member(f"./zeros{i}")
        info.size = size
        yield info.tobuf(tarfile.GNU_FORMAT)
        for start in range(0, size, len(chunk)):
            yield chunk[: min(len(chunk), size - start)]
        yield bytes(-size % tarfile.BLOCKSIZE)
    yield bytes(2 * tarfile.BLOCKSIZE)
