"""Class 4: work linear (or n·log n) in what the image declares. Each input here took minutes
when a path was quadratic (LiME with 20,000 ranges: 169 s); under the runner's hard CPU limit a
quadratic path is killed, and a killed run fails the test. bench/hostile.py measures the growth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hostile.inputs import ARCHIVE, config_markers, duplicate_members, elf_loads, kdump_magic_runs, lime_ranges
from hostile.limited import run

SHA = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.mark.parametrize("build", [lime_ranges, elf_loads], ids=["lime", "elf-core"])
def test_twenty_thousand_ranges(tmp_path: Path, build: object) -> None:
    image = tmp_path / "dump"
    image.write_bytes(build(20_000))  # type: ignore[operator]
    result = run("--json", "-a", tmp_path / "a.tar.xz", image, cwd=tmp_path)
    assert result.code == 0, result.err
    assert hashlib.sha256((tmp_path / "a.tar.xz").read_bytes()).hexdigest() == SHA


def test_two_megabytes_of_config_markers(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.write_bytes(config_markers(250_000))
    result = run("--config", tmp_path / "config", "-a", "/dev/null", image, cwd=tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "config").read_bytes() == b"CONFIG_IKCONFIG=y\n"


@pytest.mark.slow
def test_many_duplicate_members(tmp_path: Path) -> None:
    image = tmp_path / "dups.tar.xz"
    image.write_bytes(duplicate_members(100_000))
    result = run("-o", tmp_path / "out", "--max-members", "1000000", image, cwd=tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "out/include/linux/dup.h").read_bytes() == b""


def test_a_kdump_of_many_bitmap_runs_each_with_a_candidate(tmp_path: Path) -> None:
    """20,000 runs in the bitmap, an xz magic in every page: each candidate re-walked the bitmap
    block from its start, with a big-integer shift per run (found by atheris: 10 s on 22 KB)."""
    image = tmp_path / "dump"
    image.write_bytes(kdump_magic_runs(20_000))
    result = run("-a", tmp_path / "a.tar.xz", image, cwd=tmp_path)
    assert result.code == 1, result.err
    assert "cannot find kernel headers in the dump's memory" in result.err


def test_a_long_run_of_kallsyms_marker_lookalikes(tmp_path: Path) -> None:
    """200,000 ascending words before a token table, none with names that decode: walking back from
    each one to the run's start took 43 s for 20,000; found by reading, not by atheris."""
    from hostile.inputs import kallsyms_marker_run

    image = tmp_path / "image"
    image.write_bytes(kallsyms_marker_run(200_000))
    result = run("--symbols", tmp_path / "System.map", image, cwd=tmp_path)
    assert result.code == 3, result.err
    assert "no kallsyms_names/kallsyms_markers before it decode" in result.err
