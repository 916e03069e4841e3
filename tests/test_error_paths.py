"""Error branches the rest of the suite did not reach in process (found with branch coverage):
each gives its documented exit code and one line naming the file."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from conftest import run_cli

from extract_ikheaders.cli.main import drgn_main


def test_a_system_map_that_is_not_one_is_a_usage_error(vmlinux: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "System.map"
    bogus.write_text("zzzz T kernel_headers_data\n")
    run = run_cli("--system-map", bogus, "-a", tmp_path / "a", vmlinux)
    assert run.code == 2
    assert run.stderr == f"extract-ikheaders: {vmlinux}: {bogus}: not a System.map or kallsyms file\n"


def test_a_system_map_without_the_archive_symbols_is_not_found(vmlinux: Path, tmp_path: Path) -> None:
    plain = tmp_path / "System.map"
    plain.write_text("ffffffff81000000 T _stext\n")
    run = run_cli("--system-map", plain, "-a", tmp_path / "a", vmlinux)
    assert run.code == 1
    assert (f"{plain}: no kernel_headers_data, kernel_headers_data_end: CONFIG_IKHEADERS is not built in"
            in run.stderr)


def test_symbols_to_stdout_with_json_is_a_usage_error(vmlinux: Path) -> None:
    run = run_cli("--symbols", "-", "--json", vmlinux)
    assert run.code == 2 and "--symbols - and --json both want stdout" in run.stderr


def test_the_drgn_entry_takes_code_or_a_script_not_both(tmp_path: Path) -> None:
    dump, script = tmp_path / "vmcore", tmp_path / "s.py"
    dump.write_bytes(b"\0" * 64)
    script.write_text("pass\n")
    with CliRunner().isolation() as (_, stderr, _):
        try:
            drgn_main(["-e", "pass", str(dump), str(script)])
        except SystemExit as exc:
            code = exc.code
        message = stderr.getvalue().decode()
    assert (code, message) == (2, "extract-ikheaders: give either -e CODE or SCRIPT, not both\n")
