"""/proc/kcore-like cores (virtual PT_LOADs) are read at the symbols only, never scanned."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from conftest import Corpus, run_cli

from extract_ikheaders.elf.reader import ElfImage


def kcore_like(vmlinux: Path, dest: Path) -> None:
    """An ELF core with one PT_LOAD mapping vmlinux's .rodata at its virtual address, like kcore's
    text segment, behind a huge sparse gap so that a scan would be noticed."""
    data = vmlinux.read_bytes()
    rodata = ElfImage(data).section(".rodata")
    assert rodata is not None
    body = data[rodata.offset : rodata.offset + rodata.size]
    phoff, data_off = 64, 4096
    ehdr = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64,
                                                                   56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 4, data_off, rodata.addr, 0xFFFFFFFFFFFFFFFF, len(body), len(body), 4096)
    with dest.open("wb") as f:
        f.write(ehdr + phdr)
        f.seek(data_off)
        f.write(body)


def test_kcore_read_through_system_map(corpus: Corpus, tmp_path: Path) -> None:
    core = tmp_path / "kcore"
    kcore_like(corpus.file("k61y", "vmlinux"), core)
    run = run_cli("--system-map", corpus.file("k61y", "System.map"), "--archive", "-", core)
    assert run.code == 0, run.stderr
    assert hashlib.sha256(run.stdout).hexdigest() == corpus.truth("6.1-y-gzip")["sha256"]
    report = run_cli("--system-map", corpus.file("k61y", "System.map"), "--json", "-a", "/dev/null", core).json
    assert report["archive"]["method"] == "symbols" and "not scanned" in report["notes"][0]


def test_kcore_with_symbols_of_a_kernel_without_headers(corpus: Corpus, tmp_path: Path) -> None:
    core = tmp_path / "kcore"
    kcore_like(corpus.file("k61y", "vmlinux"), core)
    run = run_cli("--system-map", corpus.file("k61m", "System.map"), "-a", "/dev/null", core)
    assert run.code == 1 and "no kernel_headers_data" in run.stderr


def test_missing_kcore_is_an_input_error(tmp_path: Path) -> None:
    smap = tmp_path / "System.map"
    smap.write_text("ffffffff81000000 T _stext\n")
    run = run_cli("--system-map", smap, "-a", "/dev/null", tmp_path / "kcore")
    assert run.code == 2 and "no such file" in run.stderr
