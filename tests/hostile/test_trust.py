"""Class 7: --force removes only what this tool wrote, and --env reuses a tree only when nobody else
could have touched any of it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import headers_archive

from hostile.limited import run, snapshot


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path]:
    """(the image, a tree --env made from it in tmp_path/work)."""
    image = tmp_path / "image.tar.xz"
    image.write_bytes(headers_archive())
    (tmp_path / "work").mkdir()
    first = run("--env", image, cwd=tmp_path / "work")
    assert first.code == 0, first.err
    tree = tmp_path / "work" / "kheaders-6.1.0-synthetic"
    assert tree.is_dir()
    return image, tree


def test_env_reuses_its_own_untouched_tree(made: tuple[Path, Path]) -> None:
    image, tree = made
    again = run("--env", image, cwd=tree.parent)
    assert again.code == 0 and "reusing" in again.err


TAMPERING: dict[str, Callable[[Path], None]] = {
    "group-writable file": lambda t: (t / "include/linux/types.h").chmod(0o664),
    "world-writable directory": lambda t: (t / "include/linux").chmod(0o777),
    "file of another user": lambda t: os.chown(t / "include/linux/kconfig.h", 65534, 65534),
    "symlink planted": lambda t: (t / "include/linux/evil.h").symlink_to("/etc/passwd"),
    "fifo planted": lambda t: os.mkfifo(t / "include/linux/pipe.h"),
    # CVE-2024-2314: another user made the whole tree, stamp and all, before the analyst's run
    "tree planted by another user": lambda t: _chown_tree(t, 65534),
}


def _chown_tree(top: Path, uid: int) -> None:
    for path in (top, *top.rglob("*")):
        os.chown(path, uid, uid, follow_symlinks=False)


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_env_refuses_a_tree_someone_else_could_have_changed(made: tuple[Path, Path],
                                                           tamper: Callable[[Path], None]) -> None:
    image, tree = made
    tamper(tree)
    before = snapshot(tree.parent)
    result = run("--env", image, cwd=tree.parent)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and "not a tree of ours that only we can write" in result.err
    assert result.out == ""  # nothing for the shell to eval
    assert snapshot(tree.parent) == before


def test_force_never_removes_what_this_tool_did_not_write(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(headers_archive())
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "evidence.img").write_bytes(b"seized")
    before = snapshot(tmp_path)
    result = run("-o", precious, "--force", image, cwd=tmp_path)
    assert result.code == 2 and "not a tree this tool unpacked" in result.err
    assert snapshot(tmp_path) == before


def test_force_refuses_when_the_image_lies_in_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    image = tmp_path / "image.tar.xz"
    image.write_bytes(headers_archive())
    assert run("-o", out, image, cwd=tmp_path).code == 0
    moved = out / "image.tar.xz"
    image.rename(moved)
    before = snapshot(tmp_path)
    result = run("-o", out, "--force", moved, cwd=tmp_path)
    assert result.code == 2 and "lies inside" in result.err
    assert snapshot(tmp_path) == before
