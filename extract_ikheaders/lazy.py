"""Stages loaded on first use.

A run pays for importing only the stages its action reaches: unpacking a vmlinux never loads the
crash-dump readers or the analysis stage (together about 70 ms of a 170 ms start). The import
stays a module-level statement under TYPE_CHECKING, so type checkers, import-linter's layers and
tests/test_layout.py see every edge; at run time the module is created by importlib's LazyLoader
and executed when one of its attributes is first read.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """`name` (a module of this package), executed on first attribute access."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    sys.modules[name] = lazy
    loader.exec_module(lazy)
    return lazy
