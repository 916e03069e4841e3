"""Stages loaded on first use.

A run pays for importing only the stages its action reaches: unpacking a vmlinux never loads the
crash-dump readers or the analysis stage (together about 70 ms of a 170 ms start). The import
stays a module-level statement under TYPE_CHECKING, so type checkers, import-linter's layers and
tests/test_layout.py see every edge; at run time the name is bound to a stand-in that imports the
module when one of its attributes is first read.

Not importlib's LazyLoader: on Python 3.11 two threads (`-j N`) reading a lazy module at once can
see it half-executed (AttributeError; fixed in 3.12.3). A plain import under the import system's
own per-module lock cannot.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


class _Deferred(ModuleType):
    """Stands for a module until an attribute is read, then hands out the real module's."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)


_STAND_INS: dict[str, ModuleType] = {}


def module(name: str) -> ModuleType:
    """`name` (a module of this package), imported on first attribute access."""
    loaded = sys.modules.get(name)
    if loaded is not None and not getattr(loaded.__spec__, "_initializing", False):
        return loaded  # (one another thread is still executing would be read half-made)
    if name not in _STAND_INS:
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"no module named {name}")
        _STAND_INS[name] = _Deferred(name)
    return _STAND_INS[name]
