"""Test-side access to the synthetic input builders kept in fixtures/synthetic.py.

`incbin_object` is memoised for the test session: the same blob and options give the same ELF
(gcc and ld are deterministic here), so each distinct object is compiled once and copied."""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

import synthetic
from synthetic import HEADERS, NATIVE, TOOLCHAINS, Toolchain, headers_archive, strip

__all__ = ["HEADERS", "NATIVE", "TOOLCHAINS", "Toolchain", "headers_archive", "incbin_object", "strip"]

_BUILT = Path(tempfile.mkdtemp(prefix="extract-ikheaders-builders-"))
atexit.register(shutil.rmtree, _BUILT, ignore_errors=True)


def incbin_object(tmp: Path, blob: bytes, *, markers: bool = False, link: bool = True,
                  toolchain: Toolchain = NATIVE, note: bool = False) -> Path:
    """synthetic.incbin_object, compiled once per distinct input and copied into `tmp`."""
    key = hashlib.sha256(repr((hashlib.sha256(blob).hexdigest(), markers, link, toolchain, note)).encode()).hexdigest()
    built = _BUILT / key
    if not built.is_dir():
        work = Path(tempfile.mkdtemp(dir=_BUILT))
        synthetic.incbin_object(work, blob, markers=markers, link=link, toolchain=toolchain, note=note)
        work.rename(built)
    name = "vmlinux" if link else "kheaders.o"
    out = tmp / name
    shutil.copyfile(built / name, out)
    (tmp / "kheaders_data.tar.xz").write_bytes(blob)  # as the builder leaves it beside the object
    return out
