"""What produced a cache entry, for the key of every cache the tool keeps (compiled types, their
ISF conversion): the package version and a digest of the source of the modules that build the
entry. An upgrade or a change to that code misses the old entries instead of serving them; nothing
depends on a revision number bumped by hand."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from types import ModuleType

from .version import __version__


def producer(*modules: ModuleType) -> dict[str, str]:
    return {"package": __version__, "code": _code_digest(tuple(m.__name__ for m in modules),
                                                         tuple(str(m.__file__) for m in modules))}


@cache
def _code_digest(names: tuple[str, ...], files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name, file in zip(names, files, strict=True):
        digest.update(name.encode() + b"\0" + Path(file).read_bytes() + b"\0")
    return digest.hexdigest()
