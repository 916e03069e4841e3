"""Packaging: the man page is generated from the CLI, shell completion comes from click."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from extract_ikheaders.cli import manpage


def test_man_page_lists_every_option_and_the_exit_codes() -> None:
    page = manpage.render()
    assert page.startswith(".TH EXTRACT-IKHEADERS 1")
    for option in ("\\-\\-archive", "\\-\\-list", "\\-\\-json", "\\-\\-config", "\\-\\-info", "\\-\\-env",
                   "\\-\\-live", "\\-\\-output", "\\-\\-force", "\\-\\-max\\-size"):
        assert option in page, option
    assert ".SH EXIT CODES" in page and "damaged" in page
    assert not any(line.startswith(".ko") for line in page.splitlines())  # no text read as a request


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff renders the page")
def test_man_page_renders_without_warnings(tmp_path: os.PathLike[str]) -> None:
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=manpage.render(), text=True,
                            capture_output=True)
    assert result.returncode == 0 and result.stderr == ""


def test_bash_completion_script() -> None:
    env = {**os.environ, "_EXTRACT_IKHEADERS_COMPLETE": "bash_source"}
    result = subprocess.run([sys.executable, "-m", "extract_ikheaders"], env=env, capture_output=True, text=True)
    assert "_extract_ikheaders_completion()" in result.stdout
