"""The hostile archives again, this time inside a seed-layout ELF (IKHD_ST ... IKHD_ED, as a
vendor image could carry them) and through the command line: exit 3, a one-line message naming
the member, and nothing created or modified outside the target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from builders import incbin_object, strip
from conftest import run_cli
from test_extract import HOSTILE, snapshot


@pytest.mark.parametrize(("build", "fragments"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_archive_inside_a_seed_layout_image(tmp_path: Path, build: Callable[[], bytes],
                                                    fragments: tuple[str, ...]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    image = strip(incbin_object(work, build(), markers=True))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim.txt").write_text("precious\n")
    before = snapshot(tmp_path)
    run = run_cli("-o", tmp_path / "out", image, cwd=tmp_path)
    assert run.code == 3, run.stderr
    assert run.stderr.count("\n") == 1 and fragments[0] in run.stderr
    assert snapshot(tmp_path) == before
