"""Cache keys name what produced an entry: the package version and the code that built it.

An entry built by other code (an upgrade, a change to the compiler driver or the DWARF converter)
is a miss, never served; nothing depends on a revision number bumped by hand."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from extract_ikheaders import cachekey, version
from extract_ikheaders.analysis import debuginfo, isf


def _module_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_producer_changes_with_the_code_and_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "builder_a.py").write_text("STEP = 1\n")
    (tmp_path / "builder_b.py").write_text("STEP = 2\n")
    first = cachekey.producer(_module_from(tmp_path / "builder_a.py", "builder"))
    other_code = cachekey.producer(_module_from(tmp_path / "builder_b.py", "builder"))
    assert first["package"] == version.__version__
    assert first["code"] != other_code["code"]
    assert cachekey.producer(_module_from(tmp_path / "builder_a.py", "builder")) == first
    monkeypatch.setattr(cachekey, "__version__", "99.0")
    assert cachekey.producer(_module_from(tmp_path / "builder_a.py", "builder"))["package"] == "99.0"


def test_the_types_key_holds_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    target = debuginfo.Target(arch="x86", bits=64, compiler=("cc",), flags=("-g",))
    monkeypatch.setattr(debuginfo, "compiler_version", lambda compiler: "cc 1.0")
    key = debuginfo._cache_key("ab" * 32, b"#define CONFIG_X 1\n", target, None)
    monkeypatch.setattr(debuginfo, "producer", lambda *modules: {"package": "0.0", "code": "other"})
    assert debuginfo._cache_key("ab" * 32, b"#define CONFIG_X 1\n", target, None) != key
    assert key.startswith("abababababababab-")


def test_converted_types_from_other_code_are_not_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "t.c").write_text("struct thing { int a; long b; };\nstruct thing a_thing;\n")
    obj = tmp_path / "types.o"
    subprocess.run(["gcc", "-g", "-c", "-o", str(obj), str(tmp_path / "t.c")], check=True)
    types, cached = isf.cached_types(obj)
    assert not cached and types.user_types["thing"]["size"] == 16
    assert isf.cached_types(obj)[1] is True
    monkeypatch.setattr(isf, "producer", lambda *modules: {"package": "0.0", "code": "other"})
    again, cached = isf.cached_types(obj)
    assert not cached and again.user_types == types.user_types


def test_the_tests_own_types_cache_is_not_the_users() -> None:
    assert debuginfo.cache_root() != Path.home() / ".cache" / "extract-ikheaders" / "types"
    assert "tests" in debuginfo.cache_root().parts
    assert sys.modules["conftest"].TYPES_CACHE_ENV == debuginfo.CACHE_ENV
