"""The command line on small synthetic inputs: outputs, options, exit codes and messages."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from builders import HEADERS, headers_archive
from conftest import run_cli, run_cli_process

ARCHIVE = headers_archive()
SHA = hashlib.sha256(ARCHIVE).hexdigest()


def test_default_unpacks_into_kheaders_release(vmlinux: Path, tmp_path: Path) -> None:
    run = run_cli_process(vmlinux, cwd=tmp_path)  # end to end: `python -m extract_ikheaders` in its own process
    assert run.code == 0, run.stderr
    assert run.stdout.decode() == "kheaders-6.1.0-synthetic\n"
    tree = tmp_path / "kheaders-6.1.0-synthetic"
    for name, data in HEADERS.items():
        assert (tree / name).read_bytes() == data
    assert run.stderr.count("\n") == 1 and "6.1.0-synthetic: " in run.stderr and "(symbols" in run.stderr


def test_output_dir_and_force(vmlinux: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("keep me")
    for extra in ([], ["--force"]):  # not a tree this tool made: never replaced
        refused = run_cli("-o", out, *extra, vmlinux)
        assert refused.code == 2 and "not a tree this tool unpacked" in refused.stderr
        assert (out / "old").read_text() == "keep me"
    (out / "old").unlink()
    assert run_cli("-o", out, vmlinux).code == 0
    rerun = run_cli("-o", out, vmlinux)  # the same tree: a rerun just works
    assert rerun.code == 0 and "reusing" in rerun.stderr
    (out / "old").write_text("added since")
    again = run_cli("-o", out, vmlinux)  # no longer the archive's tree
    assert again.code == 2 and "--force" in again.stderr
    forced = run_cli("-o", out, "--force", vmlinux)
    assert forced.code == 0, forced.stderr
    assert not (out / "old").exists() and (out / "include/linux/types.h").is_file()


def test_force_refuses_a_directory_holding_the_image(vmlinux: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("-o", out, vmlinux).code == 0
    inside = out / "vmlinux"
    inside.write_bytes(vmlinux.read_bytes())
    run = run_cli("-o", out, "--force", inside)
    assert run.code == 2 and "lies inside" in run.stderr and run.stderr.count("\n") == 1
    assert inside.read_bytes() == vmlinux.read_bytes()


def test_archive_to_file_and_stdout(vmlinux: Path, tmp_path: Path) -> None:
    dest = tmp_path / "k.tar.xz"
    assert run_cli("-a", dest, vmlinux).code == 0
    assert dest.read_bytes() == ARCHIVE
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not mkstemp's 0600
    assert run_cli("-a", "-", vmlinux).stdout == ARCHIVE
    assert run_cli_process("-a", "-", vmlinux).stdout == ARCHIVE  # a real process's binary stdout


def test_json_report_keys(vmlinux: Path) -> None:
    run = run_cli_process("--json", "-a", "/dev/null", vmlinux)
    report = json.loads(run.stdout)
    assert set(report) >= {"input", "release", "layers", "archive", "notes", "output"}
    assert report["archive"] == {"offset": report["archive"]["offset"], "size": len(ARCHIVE), "sha256": SHA,
                                 "method": "symbols", "verified": "content"}
    assert report["layers"][0]["format"] == "elf"


def test_list(vmlinux: Path) -> None:
    run = run_cli("-l", vmlinux)
    names = run.stdout.decode().splitlines()  # as tar -t prints them: the stored "./" names
    assert names[0] == "./" and "./include/linux/types.h" in names and "./arch/x86/include/asm/page.h" in names
    assert all(n.startswith("./") for n in names)


def test_json_list_counts_members(vmlinux: Path) -> None:
    report = run_cli("--json", "-l", vmlinux).json
    lines = run_cli("-l", vmlinux).stdout.decode().splitlines()
    assert report["members"] == len(lines) - 1  # every member but the root "./"


@pytest.mark.parametrize("args", [["-a", "x", "-l"], ["-a", "x", "-o", "d"], ["--json", "-a", "-"]])
def test_conflicting_options_are_usage_errors(vmlinux: Path, tmp_path: Path, args: list[str]) -> None:
    run = run_cli(*args, vmlinux, cwd=tmp_path)
    assert run.code == 2
    assert "cannot be combined" in run.stderr or "both want stdout" in run.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "build"]


@pytest.mark.parametrize("option", ["--max-size", "--max-members"])
def test_a_limit_of_zero_is_a_usage_error_not_the_default(vmlinux: Path, tmp_path: Path, option: str) -> None:
    run = run_cli("-o", tmp_path / "out", option, "0", vmlinux)
    expected = "'0' is not a size of at least 1 byte" if option == "--max-size" else "0 is not in the range x>=1"
    assert run.code == 2 and f"Invalid value for '{option}': {expected}" in run.stderr
    assert not (tmp_path / "out").exists()


def test_help_documents_exit_codes_and_examples() -> None:
    run = run_cli("--help")
    text = run.stdout.decode()
    assert run.code == 0
    needles = ("Exit codes:", "kheaders-<release>", "--archive", "--list", "--json", "3    headers found but damaged",
               "130  interrupted (Ctrl-C)", "141  stdout was closed", "the highest of their codes")
    for needle in needles:
        assert needle in text


def test_directory_as_image_is_input_error(tmp_path: Path) -> None:
    run = run_cli(tmp_path)
    assert run.code == 2 and "is a directory" in run.stderr and str(tmp_path) in run.stderr
