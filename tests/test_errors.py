"""The error model: one root, typed fields, and the CLI's class-to-exit-code map."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import extract_ikheaders
from extract_ikheaders import pipeline
from extract_ikheaders.cli import records as cli
from extract_ikheaders.errors import Damaged, ExtractError, NotFound, NotMine, ParserSignal


def _error_classes() -> list[type[BaseException]]:
    """Every exception class the package defines, in any module."""
    import importlib
    import pkgutil

    found = []
    for info in pkgutil.walk_packages(extract_ikheaders.__path__, "extract_ikheaders."):
        if info.name.endswith("__main__"):
            continue  # running it is the CLI
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append(obj)
    return found


def test_every_exception_the_package_defines_has_the_one_root() -> None:
    classes = _error_classes()
    assert len(classes) >= 15
    assert [c.__name__ for c in classes if not issubclass(c, ExtractError)] == []


def test_every_public_branch_has_an_exit_code_and_signals_are_internal() -> None:
    public = [c for c in _error_classes() if not issubclass(c, ParserSignal) and c is not ExtractError]
    for cls in public:
        assert isinstance(cls, type) and issubclass(cls, ExtractError)
        assert cli.exit_code(cls("x")) in (1, 2, 3, 141), cls
    assert cli.exit_code(NotMine("x")) == cli.INTERNAL
    assert cli.exit_code(ExtractError("x")) == cli.INTERNAL


def test_fields_are_fields_and_the_text_is_made_from_them() -> None:
    exc = Damaged("truncated", offset=0x40, data=b"xz")
    assert (exc.path, exc.offset, exc.layer, exc.data) == (None, 0x40, None, b"xz")
    assert str(exc) == "truncated"
    assert exc.located(path="img", layer="bzimage") is exc
    assert (exc.path, exc.layer, str(exc)) == ("img", "bzimage", "img: truncated")
    exc.located(path="other", layer="elf")  # the innermost knowledge wins
    assert (exc.path, exc.layer) == ("img", "bzimage")


def test_the_cli_names_the_input_once_from_the_field() -> None:
    assert cli.failure_line(NotFound("nothing here", path="a.img"), "a.img") == (1, "a.img: nothing here")
    assert cli.failure_line(NotFound("nothing here"), "b.img") == (1, "b.img: nothing here")
    code, line = cli.failure_line(NotMine("not mine"), "c.img")
    assert (code, line) == (4, "internal error (NotMine: c.img: not mine); please report it")


def test_the_api_sets_path_and_layer(tmp_path: Path) -> None:
    image = tmp_path / "k.gz"
    import gzip

    image.write_bytes(gzip.compress(b"\0" * 4096))
    with pytest.raises(NotFound) as caught:
        pipeline.find(image)
    assert caught.value.path == str(image)
    assert caught.value.layer == "gzip"
    assert str(caught.value).startswith(f"{image}: cannot find kernel headers")


