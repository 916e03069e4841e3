"""ELF cores of 32-bit and big-endian machines (s390x, ppc64, ppc32, arm32) with VMCOREINFO:
the notes, the program headers and the archive in memory are read whatever the word size and
byte order, and the release and the platform come from the dump (issue 22, generated cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import headers_archive
from conftest import check_records, run_cli
from dump_builders import machine_core, memory_image

from extract_ikheaders.dumps.search import open_dump

ARCHIVE = headers_archive()

# (name, ELF machine, bits, byte order, the kernel's name for the architecture)
MACHINES = [("s390x", 22, 64, ">", "s390"), ("ppc64", 21, 64, ">", "powerpc"), ("ppc32", 20, 32, ">", "powerpc"),
            ("arm32", 40, 32, "<", "arm")]


@pytest.mark.parametrize(("name", "machine", "bits", "endian", "arch"), MACHINES, ids=[m[0] for m in MACHINES])
def test_a_core_of_any_word_size_and_byte_order(tmp_path: Path, name: str, machine: int, bits: int, endian: str,
                                                arch: str) -> None:
    release = f"6.1.0-{name}"
    info = f"OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=c0a00000\n".encode()
    memory = memory_image(256 << 10, {0x9000: ARCHIVE})
    path = tmp_path / "vmcore"
    notes = [("CORE", b"\0" * 64), ("VMCOREINFO", info)]
    path.write_bytes(machine_core(machine, bits, endian, memory, 0x100000, notes))

    with path.open("rb") as f:
        mem = open_dump(f.read())
    assert mem.info.vmcoreinfo["OSRELEASE"] == release and mem.info.vmcoreinfo["SYMBOL(init_uts_ns)"] == "c0a00000"
    assert mem.read(0x100000 + 0x9000, len(ARCHIVE)) == ARCHIVE

    out = tmp_path / "archive"
    run = run_cli("--json", "-a", out, path)
    record = check_records(run.stdout)[0]
    assert run.code == 0, run.stderr
    assert out.read_bytes() == ARCHIVE and record["release"] == release
    assert record["archive"]["offset"] == 0x100000 + 0x9000
    assert record["platform"] == {"arch": arch, "endian": "big" if endian == ">" else "little", "bits": bits,
                                  "source": "ELF core header"}
