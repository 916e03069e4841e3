"""Class 5: a failure to write an output is the user's (exit 2, one line naming the path and the
system's reason), never an internal error, and leaves nothing half-written."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from builders import headers_archive

from hostile.limited import run, snapshot

CONFIG = b"CONFIG_IKHEADERS=y\nCONFIG_LOCALVERSION=\"\"\n" * 50


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A blob with the headers archive and an embedded .config (IKCFG_ST markers)."""
    path = tmp_path / "image.bin"
    path.write_bytes(b"\0" * 512 + b"IKCFG_ST" + gzip.compress(CONFIG, mtime=0) + b"IKCFG_ED" + b"\0" * 512
                     + headers_archive() + b"\0" * 512)
    return path


def one_line(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("option", ["-a", "--config"])
def test_a_full_device(image: Path, tmp_path: Path, option: str) -> None:
    extra = ["-a", tmp_path / "a.tar.xz"] if option == "--config" else []
    result = run(option, "/dev/full", *extra, image, cwd=tmp_path)
    assert result.code == 2
    one_line(result.err, "cannot write /dev/full", "No space left on device")


@pytest.mark.parametrize("option", ["-a", "--config"])
def test_a_missing_directory(image: Path, tmp_path: Path, option: str) -> None:
    before = snapshot(tmp_path)
    extra = ["-a", "/dev/null"] if option == "--config" else []
    result = run(option, tmp_path / "missing" / "out", *extra, image, cwd=tmp_path)
    assert result.code == 2
    one_line(result.err, f"cannot write {tmp_path / 'missing' / 'out'}", "No such file or directory")
    assert snapshot(tmp_path) == before


def test_a_directory_where_the_file_goes(image: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    result = run("-a", tmp_path / "taken", image, cwd=tmp_path)
    assert result.code == 2
    one_line(result.err, f"cannot write {tmp_path / 'taken'}", "Is a directory")


def test_a_file_too_large_for_the_limit_leaves_nothing(image: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the write fail with EFBIG halfway: no temporary file stays beside the target."""
    before = snapshot(tmp_path)
    result = run("-a", tmp_path / "a.tar.xz", image, cwd=tmp_path, file_size=100)
    assert result.code == 2
    one_line(result.err, f"cannot write {tmp_path / 'a.tar.xz'}", "File too large")
    assert snapshot(tmp_path) == before


def test_unpacking_past_the_file_size_limit_leaves_no_tree(image: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    result = run("-o", tmp_path / "tree", image, cwd=tmp_path, file_size=100)
    assert result.code == 2
    one_line(result.err, "cannot write", "File too large")
    assert snapshot(tmp_path) == before


def test_output_under_a_regular_file(image: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    for option in ("-a", "-o"):
        result = run(option, tmp_path / "plain" / "sub", image, cwd=tmp_path)
        assert result.code == 2, (option, result.err)
        one_line(result.err, str(tmp_path / "plain"))
