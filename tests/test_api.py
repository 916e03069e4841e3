"""The Python API as the README shows it: find, Found.read_archive, extract, list_members,
read_archive, and the limits' meaning (None: the default; zero or less: a usage error)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zstandard
from builders import HEADERS, headers_archive, incbin_object

import extract_ikheaders
from extract_ikheaders import Check, Method, UnsafeArchive, UsageError

ARCHIVE = headers_archive()


@pytest.fixture(scope="module")
def module_zst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kheaders.ko-like ET_REL object, zstd-compressed as distributions ship modules."""
    work = tmp_path_factory.mktemp("module")
    obj = incbin_object(work, ARCHIVE, link=False)
    out = work / "kheaders.ko.zst"
    out.write_bytes(zstandard.ZstdCompressor().compress(obj.read_bytes()))
    return out


def test_find_and_read_archive(vmlinux: Path) -> None:
    found = extract_ikheaders.find(vmlinux)
    assert (found.method, found.release, found.verified) == (Method.SYMBOLS, "6.1.0-synthetic", Check.CONTENT)
    assert found.read_archive() == ARCHIVE == extract_ikheaders.read_archive(vmlinux)
    assert found.sha256 == hashlib.sha256(ARCHIVE).hexdigest()


def test_find_without_verifying_checks_the_structure_only(vmlinux: Path) -> None:
    found = extract_ikheaders.find(vmlinux, verify=False)
    assert (found.verified, found.archive) == (Check.STRUCTURE, ARCHIVE)
    assert extract_ikheaders.read_archive(vmlinux, verify=False) == ARCHIVE


def test_extract_and_list_verify_by_decoding(vmlinux: Path, tmp_path: Path) -> None:
    found, _ = extract_ikheaders.extract(vmlinux, tmp_path / "headers")
    assert found.verified == Check.CONTENT


def test_extract_into_a_directory(vmlinux: Path, tmp_path: Path) -> None:
    found, result = extract_ikheaders.extract(vmlinux, tmp_path / "headers")
    assert found.sha256 == hashlib.sha256(ARCHIVE).hexdigest()
    assert result.directory == str(tmp_path / "headers") and result.members >= len(HEADERS)
    for name, data in HEADERS.items():
        assert (tmp_path / "headers" / name).read_bytes() == data


def test_extract_by_default_into_kheaders_release(vmlinux: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, result = extract_ikheaders.extract(vmlinux)
    assert result.directory == "kheaders-6.1.0-synthetic"
    assert (tmp_path / result.directory / "include/linux/types.h").read_bytes() == HEADERS["./include/linux/types.h"]


def test_list_members_of_a_compressed_module(module_zst: Path) -> None:
    members = extract_ikheaders.list_members(module_zst)
    files = {m.name: m.size for m in members if m.kind == "file"}
    assert files == {name.removeprefix("./"): len(data) for name, data in HEADERS.items()}


@pytest.mark.parametrize(("option", "value"), [("max_bytes", 0), ("max_bytes", -1), ("max_members", 0)])
def test_a_limit_of_zero_or_less_is_a_usage_error(vmlinux: Path, tmp_path: Path, option: str, value: int) -> None:
    with pytest.raises(UsageError, match=f"{option} must be a positive number, not {value}"):
        extract_ikheaders.extract(vmlinux, tmp_path / "out", **{option: value})  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_small_limit_is_honoured(vmlinux: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="max"):
        extract_ikheaders.extract(vmlinux, tmp_path / "out", max_bytes=10)
    with pytest.raises(UnsafeArchive):
        extract_ikheaders.extract(vmlinux, tmp_path / "out2", max_members=1)
