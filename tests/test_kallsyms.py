"""kallsyms.py: the symbol table decoded from a dump's kallsyms through VMCOREINFO."""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus
from dump_builders import Seg, elf_core

from extract_ikheaders import kallsyms
from extract_ikheaders.errors import Damaged, NotFound

_KERNEL_MAP = 0xFFFFFFFF80000000


# Synthetic tables ---------------------------------------------------------------------------------

_TOKENS = ["T", "t", "D", "foo", "_bar", "x"] + [f"<{i}>" for i in range(6, 256)]


def _token_tables(tokens: list[str]) -> tuple[bytes, bytes]:
    """kallsyms_token_table and kallsyms_token_index for `tokens`."""
    table, index = b"", []
    for token in tokens:
        index.append(len(table))
        table += token.encode() + b"\0"
    return table, struct.pack("<256H", *index)


def _name(indices: list[int]) -> bytes:
    """One kallsyms_names entry: its length (two bytes when >= 0x80), then the token indices."""
    n = len(indices)
    head = bytes([n]) if n < 0x80 else bytes([0x80 | (n & 0x7F), n >> 7])
    return head + bytes(indices)


_NAMES = [_name([0, 3]), _name([1, 4, 5]), _name([2] + [5] * 200)]  # Tfoo, t_barx, D + x*200
_EXPECTED = [("T", "foo"), ("t", "_barx"), ("D", "x" * 200)]


def test_decode_names_expands_tokens_and_long_lengths() -> None:
    table, index = _token_tables(_TOKENS)
    tokens = kallsyms.decode_tokens(table, struct.unpack("<256H", index))
    assert kallsyms.decode_names(b"".join(_NAMES), 3, tokens) == _EXPECTED


def test_decode_names_refuses_a_short_stream() -> None:
    table, index = _token_tables(_TOKENS)
    tokens = kallsyms.decode_tokens(table, struct.unpack("<256H", index))
    with pytest.raises(Damaged, match="symbol 2 of 3"):
        kallsyms.decode_names(b"".join(_NAMES)[:-5], 3, tokens)


def test_decode_tokens_refuses_an_index_past_the_table() -> None:
    table, index = _token_tables(_TOKENS)
    with pytest.raises(Damaged, match="token 0"):
        kallsyms.decode_tokens(table, (len(table) + 10, *struct.unpack("<256H", index)[1:]))


def test_relative_addresses_both_modes() -> None:
    base = 0xFFFFFFFF81000000
    assert kallsyms.relative_addresses((0, 0x10, 0x2000), base) == [base, base + 0x10, base + 0x2000]
    # CONFIG_KALLSYMS_ABSOLUTE_PERCPU: >= 0 absolute (percpu), < 0 is base - 1 - offset
    assert kallsyms.relative_addresses((0x1000, -1, -0x11), base) == [0x1000, base, base + 0x10]


def _synthetic_core(kaslr: int, extra: dict[str, str] | None = None, num_syms: int = 3) -> bytes:
    """An ELF core whose kernel image (at physical 16 MiB) holds a 3-symbol kallsyms."""
    paddr, vbase = 0x1000000, 0xFFFFFFFF81000000 + kaslr
    table, index = _token_tables(_TOKENS)
    names = b"".join(_NAMES)
    parts = {"kallsyms_offsets": struct.pack("<3i", 0, 0x10, 0x2000),
             "kallsyms_relative_base": struct.pack("<Q", vbase),
             "kallsyms_num_syms": struct.pack("<I", num_syms),
             "kallsyms_names": names,
             "kallsyms_token_table": table,
             "kallsyms_token_index": index}
    image, info = b"", [f"KERNELOFFSET={kaslr:x}", f"NUMBER(phys_base)={paddr - (vbase - _KERNEL_MAP)}"]
    for name, data in parts.items():
        image += bytes(-len(image) % 8)
        info.append(f"SYMBOL({name})={vbase + len(image):x}")
        image += data
    info += [f"{k}={v}" for k, v in (extra or {}).items()]
    note = ("\n".join(info) + "\n").encode()
    return elf_core([Seg(paddr, image + bytes(4096))], [("VMCOREINFO", 0, note)])


def test_synthetic_dump_gives_kaslr_addresses() -> None:
    kaslr = 0x27E00000
    found = kallsyms.read_dump(_synthetic_core(kaslr), "core")
    base = 0xFFFFFFFF81000000 + kaslr
    assert found.kaslr_offset == kaslr
    assert found.symbols == [(base, "T", "foo"), (base + 0x10, "t", "_barx"), (base + 0x2000, "D", "x" * 200)]
    assert found.system_map().splitlines()[0] == f"{base:016x} T foo"


def test_synthetic_dump_with_absurd_count_is_damaged() -> None:
    with pytest.raises(Damaged, match="kallsyms_num_syms"):
        kallsyms.symbols_from_dump(_synthetic_core(0, num_syms=5_000_000), "core")


def test_dump_without_kallsyms_entries_is_not_found() -> None:
    core = elf_core([Seg(0, bytes(4096))], [("VMCOREINFO", 0, b"OSRELEASE=5.15.0\nPAGESIZE=4096\n")])
    with pytest.raises(NotFound, match=r"SYMBOL\(kallsyms_\*\).*6\.0\+ kernel"):
        kallsyms.symbols_from_dump(core, "core")


def test_not_a_dump_is_not_found() -> None:
    with pytest.raises(NotFound, match="not a crash dump"):
        kallsyms.symbols_from_dump(b"\0" * 8192, "zeros")


# The real kdump ------------------------------------------------------------------------------------


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        yield buf


def _system_map(path: Path) -> dict[str, set[tuple[int, str]]]:
    out: dict[str, set[tuple[int, str]]] = {}
    for line in path.read_text().splitlines():
        addr, typ, name = line.split()[:3]
        out.setdefault(name, set()).add((int(addr, 16), typ))
    return out


@pytest.mark.parametrize("name", ["vmcore", "vmcore.kdump-zlib-d31", "vmcore.flat-zlib-d31"])
def test_real_kdump_agrees_with_system_map(corpus: Corpus, name: str) -> None:
    kdump = corpus.manifest["kdump"]
    assert name == "vmcore" or name in kdump["makedumpfile_outputs"].values()
    with _mapped(corpus.root / kdump["dir"] / name) as buf:
        found = kallsyms.read_dump(buf, name)
    assert found.kaslr_offset != 0  # the corpus kdump booted with KASLR
    smap = _system_map(corpus.file("k61y", "System.map"))
    matched, mismatched = 0, []
    for addr, typ, sym in found.symbols:
        if sym not in smap:
            continue
        link = addr - found.kaslr_offset if addr >= _KERNEL_MAP else addr  # percpu symbols are absolute
        if (link, typ) in smap[sym]:
            matched += 1
        else:
            mismatched.append((hex(addr), typ, sym))
    assert mismatched == []
    assert matched > 5000
    assert matched == len(found.symbols)


def test_qemu_dump_without_vmcoreinfo_is_not_found(corpus: Corpus) -> None:
    dump = corpus.root / str(corpus.manifest["kernels"]["6.1-y-gzip"]["boot"]) / "dump.elf"
    with _mapped(dump) as buf, pytest.raises(NotFound, match=r"no VMCOREINFO.*6\.0\+ kernel with CONFIG_KALLSYMS"):
        kallsyms.symbols_from_dump(buf, "dump.elf")


# The CLI (skipped until cli.py has --symbols) --------------------------------------------------------


def test_cli_symbols_writes_sorted_system_map(corpus: Corpus, cli: Any, tmp_path: Path) -> None:
    if "--symbols" not in cli("--help").stdout.decode():
        pytest.skip("cli.py has no --symbols option yet")
    kdump = corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore.kdump-zlib-d31"
    out = tmp_path / "System.map"
    run = cli("--json", "--symbols", out, kdump)
    assert run.code == 0, run.stderr
    report = run.json["symbols"]
    lines = out.read_text().splitlines()
    assert len(lines) == report["count"] > 5000
    addresses = [int(line.split()[0], 16) for line in lines]
    assert addresses == sorted(addresses)
    smap = _system_map(corpus.file("k61y", "System.map"))
    addr, typ, name = lines[0].split()
    assert (int(addr, 16) - report["kaslr_offset"], typ) in smap[name]


def test_cli_symbols_without_vmcoreinfo_exits_1(corpus: Corpus, cli: Any) -> None:
    if "--symbols" not in cli("--help").stdout.decode():
        pytest.skip("cli.py has no --symbols option yet")
    dump = corpus.root / str(corpus.manifest["kernels"]["6.1-y-gzip"]["boot"]) / "dump.elf"
    run = cli("--symbols", "-", dump)
    assert run.code == 1
    assert "no VMCOREINFO" in run.stderr and run.stdout == b""
