"""ELF cores of 32-bit and big-endian machines (s390x, ppc64, ppc32, arm32) with VMCOREINFO:
the notes, the program headers and the archive in memory are read whatever the word size and
byte order, and the release and the platform come from the dump (issue 22, generated cores)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from builders import headers_archive
from conftest import check_records, run_cli
from dump_builders import memory_image

from extract_ikheaders.dumps.search import open_dump

ARCHIVE = headers_archive()
ET_CORE, PT_LOAD, PT_NOTE = 4, 1, 4

# (name, ELF machine, bits, byte order, the kernel's name for the architecture)
MACHINES = [("s390x", 22, 64, ">", "s390"), ("ppc64", 21, 64, ">", "powerpc"), ("ppc32", 20, 32, ">", "powerpc"),
            ("arm32", 40, 32, "<", "arm")]


def core(machine: int, bits: int, endian: str, memory: bytes, paddr: int, notes: list[tuple[str, bytes]]) -> bytes:
    """An ET_CORE of the given class and byte order: PT_NOTE, then one PT_LOAD of `memory` at `paddr`."""
    def note(name: str, desc: bytes) -> bytes:
        raw = name.encode() + b"\0"
        return struct.pack(f"{endian}III", len(raw), len(desc), 0) + raw + bytes(-len(raw) % 4) + desc + bytes(
            -len(desc) % 4)

    blob = b"".join(note(name, desc) for name, desc in notes)
    ehsize, phentsize = (64, 56) if bits == 64 else (52, 32)
    data_at = ehsize + 2 * phentsize
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if endian == "<" else 2, 1]) + bytes(9)
    word = "Q" if bits == 64 else "I"
    header = ident + struct.pack(f"{endian}HHI{word}{word}{word}IHHHHHH", ET_CORE, machine, 1, 0, ehsize, 0, 0,
                                 ehsize, phentsize, 2, 0, 0, 0)
    if bits == 64:
        phdrs = (struct.pack(f"{endian}IIQQQQQQ", PT_NOTE, 0, data_at, 0, 0, len(blob), len(blob), 4)
                 + struct.pack(f"{endian}IIQQQQQQ", PT_LOAD, 7, data_at + len(blob), 0, paddr, len(memory),
                               len(memory), 0))
    else:
        phdrs = (struct.pack(f"{endian}IIIIIIII", PT_NOTE, data_at, 0, 0, len(blob), len(blob), 0, 4)
                 + struct.pack(f"{endian}IIIIIIII", PT_LOAD, data_at + len(blob), 0, paddr, len(memory), len(memory),
                               7, 0))
    return header + phdrs + blob + memory


@pytest.mark.parametrize(("name", "machine", "bits", "endian", "arch"), MACHINES, ids=[m[0] for m in MACHINES])
def test_a_core_of_any_word_size_and_byte_order(tmp_path: Path, name: str, machine: int, bits: int, endian: str,
                                                arch: str) -> None:
    release = f"6.1.0-{name}"
    info = f"OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=c0a00000\n".encode()
    memory = memory_image(256 << 10, {0x9000: ARCHIVE})
    path = tmp_path / "vmcore"
    path.write_bytes(core(machine, bits, endian, memory, 0x100000, [("CORE", b"\0" * 64), ("VMCOREINFO", info)]))

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
