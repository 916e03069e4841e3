"""The contract a scripted user relies on (issue 20): options that cannot apply are errors naming
both, --config alone writes only the .config, sizes as a user types them, the documented exit
codes (141 for a closed pipe), and --json records (one per input, failures too) that follow the
JSON Schema shipped in the package. run_cli checks every --json line against that schema."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from builders import HEADERS, headers_archive
from conftest import check_records, run_cli

from extract_ikheaders.cli import records

ARCHIVE = headers_archive()

# (options, the two names the message must hold) for every pair where one cannot apply
CLASHES = [
    (["-l", "--info"], "--list and --info cannot be combined"),
    (["--info", "--env"], "--info and --env cannot be combined"),
    (["-a", "x", "-l"], "--archive and --list cannot be combined"),
    (["-a", "x", "-o", "d"], "--archive and --output cannot be combined"),
    (["-a", "x", "--salvage"], "--archive and --salvage cannot be combined"),
    (["-a", "x", "--force"], "--archive and --force cannot be combined"),
    (["-a", "x", "--max-size", "1M"], "--archive and --max-size cannot be combined"),
    (["-l", "-o", "d"], "--list and --output cannot be combined"),
    (["-l", "--salvage"], "--list and --salvage cannot be combined"),
    (["--info", "-o", "d"], "--info and --output cannot be combined"),
    (["--info", "--config", "c"], "--info and --config cannot be combined"),
    (["--info", "--max-members", "5"], "--info and --max-members cannot be combined"),
    (["--symbols", "s", "-o", "d"], "--symbols and --output cannot be combined"),
    (["--symbols", "s", "--config", "c"], "--symbols and --config cannot be combined"),
    (["--symbols", "s", "-j", "2"], "--symbols and --jobs cannot be combined"),
    (["--symbols", "s", "--system-map", "m"], "--symbols and --system-map cannot be combined"),
    (["--compile-timeout", "5"], "--compile-timeout goes with --debuginfo or --isf"),
    (["--kernel-source", "/"], "--kernel-source goes with --debuginfo or --isf"),
    (["--config", "c", "--system-map", "m"], "--config and --system-map cannot be combined"),
]


@pytest.mark.parametrize(("options", "message"), CLASHES, ids=[" ".join(o) for o, _ in CLASHES])
def test_an_option_that_cannot_apply_is_a_usage_error_naming_both(tmp_path: Path, options: list[str],
                                                                   message: str) -> None:
    image = tmp_path / "vmlinux"
    image.write_bytes(b"\0" * 64)
    run = run_cli(*options, image, cwd=tmp_path)
    assert run.code == 2, run.stderr
    assert run.stderr == f"extract-ikheaders: {image}: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vmlinux"]  # nothing written


@pytest.mark.parametrize("option", [["--live"], ["--root", "/"]])
def test_live_options_with_an_image_are_a_usage_error(tmp_path: Path, option: list[str]) -> None:
    image = tmp_path / "vmlinux"
    image.write_bytes(b"\0" * 64)
    run = run_cli(*option, image)
    assert run.code == 2
    assert f"{option[0]} reads the running system; it cannot be combined with IMAGE" in run.stderr


CONFIG = (b"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.0 Kernel Configuration\n#\n"
          b"CONFIG_IKCONFIG=y\n")


def test_config_alone_writes_only_the_config(tmp_path: Path) -> None:
    image = tmp_path / "Image"
    image.write_bytes(b"\0" * 4096 + b"IKCFG_ST" + gzip.compress(CONFIG, mtime=0) + b"IKCFG_ED" + b"\0" * 4096)
    work = tmp_path / "work"
    work.mkdir()
    run = run_cli("--config", tmp_path / "config", image, cwd=work)
    assert run.code == 0, run.stderr
    assert (tmp_path / "config").read_bytes() == CONFIG
    assert list(work.iterdir()) == []  # no ./kheaders-<release> unpacked
    assert run.stdout == b"" and f"{image}: .config (" in run.stderr and "written to" in run.stderr
    report = run_cli("--json", "--config", tmp_path / "c2", image, cwd=work).json
    assert (report["action"], report["error"]) == ("config", None)
    assert report["config"]["sha256"] == hashlib.sha256((tmp_path / "config").read_bytes()).hexdigest()


@pytest.mark.parametrize(("typed", "limit"), [("1M", 1 << 20), ("64KiB", 64 << 10), ("2g", 2 << 30),
                                               ("1048576", 1 << 20), ("3 MB", 3 << 20)])
def test_max_size_takes_a_size_as_typed(vmlinux: Path, tmp_path: Path, typed: str, limit: int) -> None:
    run = run_cli("-o", tmp_path / "out", "--max-size", typed, vmlinux)
    assert run.code == 0, run.stderr


@pytest.mark.parametrize("typed", ["1X", "M", "-1", "1.5M", "0K"])
def test_max_size_refuses_what_is_not_a_size(vmlinux: Path, tmp_path: Path, typed: str) -> None:
    run = run_cli("-o", tmp_path / "out", "--max-size", typed, vmlinux)
    assert run.code == 2 and "Invalid value for '--max-size'" in run.stderr


def test_a_small_max_size_names_the_option_not_the_api(vmlinux: Path, tmp_path: Path) -> None:
    run = run_cli("-o", tmp_path / "out", "--max-size", "1K", vmlinux)
    assert run.code == 3 and "raise the limit with --max-size" in run.stderr and "max_bytes" not in run.stderr


def test_a_closed_stdout_ends_the_run_quietly_with_141(tmp_path: Path) -> None:
    archive = tmp_path / "kheaders.tar.xz"  # larger than a pipe's buffer, so the writer meets the closed end
    archive.write_bytes(headers_archive({"./include/linux/big.h": random.Random(1).randbytes(1 << 20)}))
    proc = subprocess.Popen([sys.executable, "-m", "extract_ikheaders", "-a", "-", archive],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)
    proc.stdout.close()  # as `| head -c1` does
    stderr = proc.stderr.read()
    assert (proc.wait(timeout=60), stderr) == (141, b"")


def test_every_record_has_the_schema_keys_and_the_schema_ships(vmlinux: Path, tmp_path: Path) -> None:
    schema = records.schema()
    assert schema["properties"]["schema"] == {"const": records.SCHEMA_VERSION}
    assert set(schema["required"]) == {"schema", "input", "action", "error"}
    for action, args in (("unpack", ["-o", tmp_path / "o"]), ("archive", ["-a", tmp_path / "a"]), ("list", ["-l"]),
                         ("info", ["--info"])):
        report = run_cli("--json", *args, vmlinux).json
        assert (report["schema"], report["action"], report["error"], report["input"]) == (
            records.SCHEMA_VERSION, action, None, str(vmlinux))


def test_a_usage_error_still_gives_a_record_per_input(vmlinux: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(b"x")
    run = run_cli("--json", "-l", "--salvage", vmlinux, other)
    assert run.code == 2
    reports = check_records(run.stdout)
    assert [r["input"] for r in reports] == [str(vmlinux), str(other)]
    assert {(r["error"]["kind"], r["error"]["exit"]) for r in reports} == {("usage", 2)}


def test_a_damaged_input_has_kind_offset_and_layer(tmp_path: Path) -> None:
    from builders_bzimage import kernel_like

    image = tmp_path / "k.gz"
    whole = gzip.compress(kernel_like(64 << 10) + ARCHIVE + kernel_like(4 << 10))
    image.write_bytes(whole[: len(whole) * 3 // 4])
    run = run_cli("--json", "-a", tmp_path / "a", image)
    assert run.code == 3
    error = run.json["error"]
    assert (error["kind"], error["exit"], error["layer"]) == ("damaged", 3, "gzip")
    assert isinstance(error["offset"], int)


def test_the_schema_rejects_a_record_that_breaks_it() -> None:
    good = {"schema": records.SCHEMA_VERSION, "input": "x", "action": "list", "error": None, "members": 3}
    check_records(json.dumps(good).encode())
    for broken in ({**good, "members": -1}, {**good, "surprise": 1}, {k: v for k, v in good.items() if k != "error"}):
        with pytest.raises(AssertionError, match=r"breaks report\.schema\.json"):
            check_records(json.dumps(broken).encode())


# Reruns and batches ------------------------------------------------------------------------------


def test_running_the_same_command_twice_reuses_the_tree(vmlinux: Path, tmp_path: Path) -> None:
    first = run_cli("--json", vmlinux, cwd=tmp_path).json
    second = run_cli("--json", vmlinux, cwd=tmp_path)
    assert second.code == 0, second.stderr
    assert "reusing" in second.stderr
    report = second.json
    assert report["output"] == {**first["output"], "bytes": 0, "reused": True}
    assert report["members"] == first["members"] and first["output"]["reused"] is False


def test_another_archive_under_the_same_release_goes_beside_it(vmlinux: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.tar.xz"
    other.write_bytes(headers_archive({**HEADERS, "./include/linux/extra.h": b"/* */\n"}))
    work = tmp_path / "work"
    work.mkdir()
    assert run_cli(vmlinux, cwd=work).code == 0
    run = run_cli("--json", other, cwd=work)
    assert run.code == 0, run.stderr
    sha = hashlib.sha256(other.read_bytes()).hexdigest()
    expected = f"kheaders-6.1.0-synthetic-{sha[:12]}"
    report = run.json
    assert report["output"]["directory"] == expected and (work / expected / "include/linux/extra.h").is_file()
    assert f"kheaders-6.1.0-synthetic holds another archive's tree: unpacked into {expected}" in report["notes"]
    assert not (work / "kheaders-6.1.0-synthetic/include/linux/extra.h").exists()  # the first tree is untouched
    again = run_cli("--json", other, cwd=work)  # and a rerun of that finds its own tree again
    assert again.code == 0 and again.json["output"]["reused"] is True


def test_two_runs_at_once_both_succeed(vmlinux: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "extract_ikheaders", "--json", vmlinux], cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    assert sorted(r["output"]["reused"] for r in reports) == [False, True, True]
    assert {r["output"]["directory"] for r in reports} == {"kheaders-6.1.0-synthetic"}
    assert sorted(p.name for p in work.iterdir()) == ["kheaders-6.1.0-synthetic"]  # no half trees left


# --info on any file --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/bin/ls", "text"])
def test_info_on_what_is_not_a_kernel_is_exit_1(tmp_path: Path, name: str) -> None:
    path = Path(name)
    if name == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a kernel\n" * 100)
    run = run_cli("--info", path)
    assert run.code == 1
    assert run.stderr == (f"extract-ikheaders: {path}: not a kernel image (no kernel headers, no .config, "
                          f"no Linux banner or version)\n")


def test_info_takes_the_release_from_a_bzimage_header(tmp_path: Path) -> None:
    """A distribution vmlinuz has no headers or .config inside, but its setup header names it."""
    from builders_bzimage import bzimage, compress, kernel_like

    image = bytearray(bzimage(compress("gzip", kernel_like(64 << 10))).image)
    version = b"6.1.0-13-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1\0"
    image[0x400 : 0x400 + len(version)] = version  # inside the setup sectors
    image[0x20E:0x210] = (0x400 - 0x200).to_bytes(2, "little")
    path = tmp_path / "vmlinuz"
    path.write_bytes(bytes(image))
    report = run_cli("--json", "--info", path).json
    assert (report["release"], report["headers"]["status"], report["config"]["status"]) == (
        "6.1.0-13-amd64", "absent", "absent")
    assert "release:  6.1.0-13-amd64" in run_cli("--info", path).stdout.decode()


# extract-ikheaders-drgn -------------------------------------------------------------------------


def test_the_drgn_entry_keeps_drgns_option_meanings() -> None:
    from click.testing import CliRunner

    from extract_ikheaders.cli.main import drgn_command

    help_text = CliRunner().invoke(drgn_command, ["--help"]).output
    for needle in ("-e, --exec", "--system-map", "stack_trace needs `runqueues`", "crashed_thread()",
                   "needs the dump's crash_notes"):
        assert needle in help_text, needle
    for drgns_own in (["-c", "x"], ["-s", "System.map"]):  # drgn's core and symbols options: not ours
        result = CliRunner().invoke(drgn_command, [*drgns_own, "vmcore"])
        assert result.exit_code == 2 and f"No such option '{drgns_own[0]}'" in result.output


# - reads the image from stdin ----------------------------------------------------------------------


def test_an_image_piped_into_dash(vmlinux: Path, tmp_path: Path) -> None:
    run = run_cli("--json", "-a", tmp_path / "a.tar.xz", "-", stdin=vmlinux.read_bytes())
    assert run.code == 0, run.stderr
    assert (tmp_path / "a.tar.xz").read_bytes() == ARCHIVE
    report = run.json
    assert report["input"] == "-" and "extract-ikheaders-stdin-" not in run.stdout.decode()


def test_what_is_piped_into_dash_is_named_dash_in_errors(tmp_path: Path) -> None:
    run = run_cli("--json", "-l", "-", stdin=b"not a kernel" * 100)
    assert run.code == 1
    assert run.stderr == ("extract-ikheaders: -: cannot find kernel headers "
                          "(was the kernel built with CONFIG_IKHEADERS?)\n")
    assert run.json["input"] == "-" and run.json["error"]["message"].startswith("-: ")


def test_dash_twice_is_a_usage_error(tmp_path: Path) -> None:
    run = run_cli("-l", "-", "-", stdin=b"x")
    assert run.code == 2 and "- (stdin) can be given once" in run.stderr
