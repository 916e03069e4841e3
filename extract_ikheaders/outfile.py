"""Writing one output file (-a, --config, --symbols, --debuginfo, --isf) whole or not at all.

Apart from the archive's unpacking, so that writing a file loads no tar reader.
"""

from __future__ import annotations

import errno
import os
import select
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError


def write_file(data: bytes | Iterable[bytes], dest: str | os.PathLike[str]) -> None:
    """Write `data` (bytes, or chunks of them) to dest whole or not at all: a temporary name beside
    it, renamed into place (a device such as /dev/null is written straight through).

    Any failure to write (a directory there, a missing directory, no space, no permission, a full
    device) is the user's: UsageError naming the path and the system's reason, nothing left behind."""
    target = Path(dest)
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if target.exists() and not target.is_file():
            with target.open("wb") as f:
                write_chunks(f, data)
            return
        _write_beside(data, target)
    except OSError as exc:
        raise UsageError(f"cannot write {dest}: {exc.strerror or exc}") from None


def write_chunks(f: BinaryIO, data: bytes | Iterable[bytes]) -> None:
    """Write bytes, or chunks of them, to an open binary file (a file of ours, or stdout). An
    unbuffered stream (PYTHONUNBUFFERED, python -u) may write part of a chunk: the rest follows, so
    a reader that went away is an error (EPIPE), never a silently shortened output."""
    for chunk in (data,) if isinstance(data, bytes | bytearray | memoryview) else data:
        view = memoryview(chunk)
        while view:
            written = f.write(view)
            if written is None:  # a non-blocking stream that is full: wait until it takes more
                select.select([], [f], [])
                continue
            view = view[written:]


def _write_beside(data: bytes | Iterable[bytes], target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary name only
        with os.fdopen(fd, "wb") as f:
            write_chunks(f, data)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
