"""The symbol path on every ELF class and byte order: ELF32/ELF64 x little/big-endian objects built
by the Debian cross compilers from the same kheaders.c asm (seconds, no kernel needed)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from builders import NATIVE, TOOLCHAINS, Toolchain, headers_archive, incbin_object, strip
from conftest import run_cli

from extract_ikheaders import arch, pipeline
from extract_ikheaders.archive.locate import END_SYMBOL, START_SYMBOL
from extract_ikheaders.elf.reader import ElfImage, ElfType
from extract_ikheaders.model import Method, Platform

# toolchain name -> (bits, byte order, kernel architecture name)
EXPECTED = {
    "native": (64, "little", "x86"),
    "arm": (32, "little", "arm"),
    "s390x": (64, "big", "s390"),
    "ppc32": (32, "big", "powerpc"),
    "ppc64": (64, "big", "powerpc"),
}
ARCHIVE = headers_archive()


def _toolchain(name: str) -> Toolchain:
    tc = NATIVE if name == "native" else TOOLCHAINS[name]
    missing = tc.missing()
    if missing:
        pytest.skip(missing)
    return tc


@pytest.fixture(params=sorted(EXPECTED), scope="module")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(toolchain name, linked ET_EXEC with a note, unlinked ET_REL)."""
    name: str = request.param
    tc = _toolchain(name)
    exe_dir, obj_dir = tmp_path_factory.mktemp(f"{name}-exe"), tmp_path_factory.mktemp(f"{name}-obj")
    exe = incbin_object(exe_dir, ARCHIVE, toolchain=tc, note=True)
    obj = incbin_object(obj_dir, ARCHIVE, toolchain=tc, link=False)
    return name, exe, obj


def test_header_class_and_byte_order(built: tuple[str, Path, Path]) -> None:
    name, exe, _ = built
    bits, order, arch_name = EXPECTED[name]
    elf = ElfImage(exe.read_bytes())
    assert (elf.bits, elf.byte_order, elf.type) == (bits, order, ElfType.EXEC)
    assert arch.from_elf_header(exe.read_bytes()) == Platform(arch_name, order, bits, "ELF header")


def test_symbols_frame_the_archive(built: tuple[str, Path, Path]) -> None:
    _, exe, _ = built
    elf = ElfImage(exe.read_bytes())
    symbols = elf.find_symbols(START_SYMBOL, END_SYMBOL)
    start, end = (elf.symbol_file_offset(symbols[n]) for n in (START_SYMBOL, END_SYMBOL))
    assert symbols[END_SYMBOL].value - symbols[START_SYMBOL].value == len(ARCHIVE)
    assert exe.read_bytes()[start:end] == ARCHIVE


def test_notes_in_the_target_byte_order(built: tuple[str, Path, Path]) -> None:
    name, exe, _ = built
    order = "<" if EXPECTED[name][1] == "little" else ">"
    notes = ElfImage(exe.read_bytes()).notes()
    assert [(n.name, n.type, n.desc) for n in notes] == [("Linux", 0x101, struct.pack(f"{order}I", 0x12345678))]


def test_find_by_symbols_and_platform(built: tuple[str, Path, Path]) -> None:
    name, exe, _ = built
    bits, order, arch = EXPECTED[name]
    found = pipeline.find(exe)
    assert (found.method, found.archive, found.release) == (Method.SYMBOLS, ARCHIVE, "6.1.0-synthetic")
    assert found.platform is not None
    assert (found.platform.arch, found.platform.endian, found.platform.bits) == (arch, order, bits)


def test_relocatable_object(built: tuple[str, Path, Path]) -> None:
    """ET_REL: symbol values are section-relative (a kheaders.o, or kheaders.ko's layout)."""
    _, _, obj = built
    assert ElfImage(obj.read_bytes()).type == ElfType.REL
    found = pipeline.find(obj)
    assert (found.method, found.archive) == (Method.SYMBOLS, ARCHIVE)


def test_stripped_is_carved(built: tuple[str, Path, Path]) -> None:
    name, exe, _ = built
    stripped = strip(exe, NATIVE if name == "native" else TOOLCHAINS[name])
    assert not ElfImage(stripped.read_bytes()).has_symbols()
    found = pipeline.find(stripped)
    assert (found.method, found.archive) == (Method.CARVE, ARCHIVE)


def test_cli_json_names_the_platform(built: tuple[str, Path, Path]) -> None:
    name, exe, _ = built
    bits, order, arch = EXPECTED[name]
    res = run_cli("--json", "-a", "/dev/null", str(exe))
    assert res.code == 0, res.stderr
    assert res.json["platform"] == {"arch": arch, "endian": order, "bits": bits, "source": "ELF header"}
    assert res.json["archive"]["sha256"] == hashlib.sha256(ARCHIVE).hexdigest()
