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


# /proc/kcore-like cores read through --system-map (dumps/kcore.py) --------------------------------

VADDR = 0xFFFFFFFF82000000


def _system_map(tmp_path: Path, start: int, end: int) -> Path:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "System.map"
    path.write_text(f"{start:016x} D kernel_headers_data\n{end:016x} D kernel_headers_data_end\n")
    return path


def _core(tmp_path: Path, blob: bytes, vaddr: int = VADDR, name: str = "core") -> Path:
    from dump_builders import Seg, elf_core

    path = tmp_path / name
    path.write_bytes(elf_core([Seg(0x1000000, blob, vaddr=vaddr)]))
    return path


def test_a_kcore_like_core_gives_its_archive_and_each_broken_one_says_why(tmp_path: Path) -> None:
    from builders import headers_archive

    archive = headers_archive()
    smap = _system_map(tmp_path, VADDR, VADDR + len(archive))
    good = run_cli("-a", tmp_path / "a", "--system-map", smap, _core(tmp_path, archive))
    assert good.code == 0, good.stderr
    assert (tmp_path / "a").read_bytes() == archive
    longer = _system_map(tmp_path / "longer", VADDR, VADDR + len(archive) + 8)
    cases = [  # (the core, its symbols, what the one line says)
        (_core(tmp_path, archive, vaddr=VADDR + 0x100000, name="elsewhere"), smap, f"no segment holds {VADDR:#x}.."),
        (_core(tmp_path, archive + b"\x01" * 8, name="trailing"), longer, "are not one xz stream"),
    ]
    for core, symbols, message in cases:
        run = run_cli("-a", tmp_path / "b", "--system-map", symbols, core)
        assert (run.code, run.stderr.count("\n")) == (3, 1) and message in run.stderr, run.stderr
    assert not (tmp_path / "b").exists()


def test_a_kcore_symbol_file_that_is_not_an_archive_size_is_damage(tmp_path: Path) -> None:
    smap = _system_map(tmp_path, VADDR + 0x100, VADDR)  # the end before the start
    run = run_cli("-a", tmp_path / "a", "--system-map", smap, _core(tmp_path, b"\0" * 64))
    assert run.code == 3 and "kernel_headers_data_end - kernel_headers_data = " in run.stderr


def test_what_is_not_an_elf64_core_is_not_found_through_a_system_map(vmlinux: Path, tmp_path: Path) -> None:
    smap = _system_map(tmp_path, VADDR, VADDR + 0x100)
    text = tmp_path / "notes.txt"
    text.write_text("not a core\n" * 20)
    run = run_cli("-a", tmp_path / "a", "--system-map", smap, text)
    assert run.code == 1 and run.stderr.endswith(f"{text}: not a 64-bit ELF core\n")
    run = run_cli("-a", tmp_path / "a", "--system-map", smap, vmlinux)
    assert run.code == 1 and run.stderr.endswith(f"{vmlinux}: not an ELF core file\n")
