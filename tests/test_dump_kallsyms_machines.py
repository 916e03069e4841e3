"""--symbols from crash dumps of big-endian and 32-bit kernels (issue 22): ELF cores built from the
corpus's cross-built 6.1 kernels (s390x, ppc64 big-endian, 32-bit arm), the kernel image placed where
the machine loads it and VMCOREINFO written as that kernel's crash_core.c and arch code write it;
the symbols, through VMCOREINFO and found by shape, equal the kernel's System.map."""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Corpus, run_cli
from dump_builders import kdump_file, machine_core, pages_of
from kallsyms_builder import encode, kernel_symbols
from test_kallsyms import kallsyms_selection

from extract_ikheaders.analysis import kallsyms
from extract_ikheaders.dumps.search import open_dump
from extract_ikheaders.elf.reader import PT_LOAD, ElfImage
from extract_ikheaders.errors import NotFound
from extract_ikheaders.model import Platform

Expected = Counter[tuple[int, str, str]]


@dataclass(frozen=True)
class Machine:
    stage: str
    e_machine: int
    bits: int
    endian: str
    ram_start: int  # the machine's first RAM address (PHYS_OFFSET)
    page_offset: int  # the vmlinux's p_paddr are PAGE_OFFSET-based (arm): physical = p_paddr - this + ram_start
    arch_lines: tuple[str, ...]  # what arch_crash_save_vmcoreinfo() adds (6.1)


# s390 loads the image at 0x100000 1:1; ppc64 at physical 0 (p_paddr already); arm at PHYS_OFFSET,
# 0x40000000 on QEMU's virt board.
MACHINES = {
    "s390x": Machine("k61s390x", 22, 64, ">", 0, 0,
                     ("SYMBOL(lowcore_ptr)", "SYMBOL(high_memory)", "SAMODE31", "EAMODE31", "KERNELOFFSET")),
    "ppc64": Machine("k61ppc64be", 21, 64, ">", 0, 0, ("SYMBOL(node_data)", "SYMBOL(vmemmap_list)",
                                                       "SYMBOL(mmu_vmemmap_psize)", "SYMBOL(mmu_psize_defs)",
                                                       "KERNELOFFSET")),
    "arm32": Machine("k61arm", 40, 32, "<", 0x40000000, 0xC0000000, ()),
}


@dataclass(frozen=True)
class _Image:
    memory: bytearray  # physical memory from the machine's ram_start
    linked: dict[str, int]  # System.map: name -> link address


def _loaded(vmlinux: bytes, machine: Machine, shift: int) -> tuple[bytearray, list[tuple[int, int, int]]]:
    """RAM holding the vmlinux's PT_LOAD segments where the machine puts them (`shift`: s390's
    KASLR moves the image physically and virtually alike), and (vaddr, paddr, size) of each."""
    elf = ElfImage(vmlinux)
    table = elf.segment_table()
    placed = []
    for i in table.indices_of(PT_LOAD):
        paddr = table.paddr[i] - machine.page_offset + machine.ram_start + shift
        placed.append((table.vaddr[i] + shift, paddr, table.offset[i], table.filesz[i], table.memsz[i]))
    memory = bytearray(max(p + memsz for _, p, _, _, memsz in placed) - machine.ram_start)
    for _, paddr, offset, filesz, _ in placed:
        memory[paddr - machine.ram_start : paddr - machine.ram_start + filesz] = vmlinux[offset : offset + filesz]
    return memory, [(vaddr, paddr, memsz) for vaddr, paddr, _, _, memsz in placed]


def _physical(segments: list[tuple[int, int, int]], vaddr: int) -> int:
    return next(paddr + vaddr - start for start, paddr, size in segments if start <= vaddr < start + size)


def _system_map(corpus: Corpus, machine: Machine) -> dict[str, int]:
    text = corpus.file(machine.stage, "System.map").read_text()
    return {name: int(addr, 16) for addr, name in re.findall(r"^([0-9a-f]+) \S (\S+)$", text, re.M)}


def _vmcoreinfo(linked: dict[str, int], machine: Machine, release: str, shift: int, with_kallsyms: bool) -> bytes:
    """VMCOREINFO as 6.1's crash_save_vmcoreinfo_init() and arch_crash_save_vmcoreinfo() write it
    (CONFIG_KALLSYMS_BASE_RELATIVE, as in every corpus kernel)."""
    lines = [f"OSRELEASE={release}", "PAGESIZE=4096"]
    symbols = ["init_uts_ns", "_stext"]
    if with_kallsyms:
        symbols += ["kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index",
                    "kallsyms_offsets", "kallsyms_relative_base"]
    lines += [f"SYMBOL({name})={linked[name] + shift:x}" for name in symbols]
    for key in machine.arch_lines:
        if key == "KERNELOFFSET":
            lines.append(f"KERNELOFFSET={shift:x}")
        elif key.startswith("SYMBOL("):
            lines.append(f"{key}={linked[key[7:-1]] + shift:x}")
        else:  # s390's SAMODE31/EAMODE31: the bounds of its 31-bit code
            lines.append(f"{key}={linked['__' + key.lower()]:x}")
    return ("\n".join(lines) + "\n").encode()


def _dump(corpus: Corpus, name: str, tmp_path: Path, shift: int = 0,
          with_kallsyms: bool = True) -> tuple[Path, Expected]:
    """An ELF core of the machine's kernel and the symbols --symbols must give for it."""
    machine = MACHINES[name]
    linked = _system_map(corpus, machine)
    memory, segments = _loaded(corpus.file(machine.stage, "vmlinux").read_bytes(), machine, shift)
    expected = Counter({(addr + shift, typ, sym): n for (addr, typ, sym), n in
                        kallsyms_selection(corpus.file(machine.stage, "System.map"), False).items()})
    # The running kernel has relocated kallsyms_relative_base (s390 links it as 0, its value in .rela.dyn):
    # scripts/kallsyms.c makes it the lowest address kallsyms holds.
    word = machine.bits // 8
    code = f"{machine.endian}{'Q' if word == 8 else 'I'}"
    at = _physical(segments, linked["kallsyms_relative_base"] + shift) - machine.ram_start
    base = min(addr for addr, _, _ in expected)
    assert struct.unpack_from(code, memory, at)[0] in (0, base - shift)
    struct.pack_into(code, memory, at, base)
    release = json.loads(corpus.file(machine.stage, "build.json").read_text())["release"]
    info = _vmcoreinfo(linked, machine, release, shift, with_kallsyms)
    path = tmp_path / f"vmcore-{name}"
    path.write_bytes(machine_core(machine.e_machine, machine.bits, machine.endian, bytes(memory), machine.ram_start,
                                  [("CORE", bytes(64)), ("VMCOREINFO", info)]))
    return path, expected


def _needs(corpus: Corpus, name: str) -> None:
    if MACHINES[name].stage not in corpus.manifest["recipe"]:
        pytest.skip(f"the corpus has no {MACHINES[name].stage} kernel (cross-built kernels not in this corpus)")


CASES = [("s390x", 0), ("s390x", 0x3A00000), ("ppc64", 0), ("arm32", 0)]


@pytest.mark.corpus
@pytest.mark.parametrize(("name", "shift"), CASES, ids=[f"{n}-kaslr{s:#x}" if s else n for n, s in CASES])
def test_symbols_through_vmcoreinfo_equal_system_map(corpus: Corpus, tmp_path: Path, name: str, shift: int) -> None:
    _needs(corpus, name)
    path, expected = _dump(corpus, name, tmp_path, shift)
    out = tmp_path / "System.map"
    run = run_cli("--json", "--symbols", out, path)
    assert run.code == 0, run.stderr
    report = run.json["symbols"]
    word = MACHINES[name].bits // 8
    assert report["method"] == "vmcoreinfo" and report["word_size"] == word
    assert report["kaslr_offset"] == shift
    lines = [line.split() for line in out.read_text().splitlines()]
    assert {len(addr) for addr, _, _ in lines} == {2 * word}  # System.map's width for the word size
    ours = Counter((int(addr, 16), typ, sym) for addr, typ, sym in lines)
    assert ours == expected
    assert report["count"] == sum(expected.values()) > 5000


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["s390x", "ppc64", "arm32"])
def test_symbols_located_without_vmcoreinfo_kallsyms(corpus: Corpus, tmp_path: Path, name: str) -> None:
    """VMCOREINFO without SYMBOL(kallsyms_*) (a 5.x kernel's): the tables are found by shape."""
    _needs(corpus, name)
    path, expected = _dump(corpus, name, tmp_path, with_kallsyms=False)
    table = kallsyms.find_symbols(path)
    assert table.method == "located" and table.word == MACHINES[name].bits // 8
    assert Counter(table.symbols) == expected


# Synthetic cores: the translation rules and their errors -----------------------------------------


@dataclass(frozen=True)
class _Kernel:
    memory: bytes  # RAM from its start
    vmcoreinfo: bytes
    symbols: list[tuple[int, str, str]]


def _kernel(bits: int, endian: str, ram_start: int, kernel_paddr: int, vaddr: int, layout: str = "6.1",
            extra: str = "") -> _Kernel:
    """RAM (from ram_start) holding a kallsyms at physical kernel_paddr, virtual vaddr, and the
    VMCOREINFO that names its tables."""
    word = bits // 8
    enc = encode(kernel_symbols(600, vaddr + 0x1000, word=word), word=word, endian=endian, layout=layout,
                 vaddr=vaddr)
    memory = bytearray(kernel_paddr - ram_start + len(enc.blob) + 4096)
    memory[kernel_paddr - ram_start : kernel_paddr - ram_start + len(enc.blob)] = enc.blob
    info = f"OSRELEASE=6.1.0\nSYMBOL(_stext)={vaddr:x}\n{extra}" + "".join(
        f"SYMBOL({name})={vaddr + at:x}\n" for name, at in enc.labels.items() if name.startswith("kallsyms_")
        and name not in ("kallsyms_markers", "kallsyms_seqs_of_names"))
    return _Kernel(bytes(memory), info.encode(), enc.symbols)


def _synthetic(e_machine: int, bits: int, endian: str, ram_start: int, kernel_paddr: int, vaddr: int,
               layout: str = "6.1", extra: str = "") -> tuple[bytes, list[tuple[int, str, str]]]:
    """An ELF core of _kernel(...)."""
    kernel = _kernel(bits, endian, ram_start, kernel_paddr, vaddr, layout, extra)
    core = machine_core(e_machine, bits, endian, kernel.memory, ram_start, [("VMCOREINFO", kernel.vmcoreinfo)])
    return core, kernel.symbols


def test_ppc32_linear_map_7x_place_relative() -> None:
    """32-bit big-endian powerpc, 7.x tables (no kallsyms_relative_base): PAGE_OFFSET 0xc0000000 over RAM at 0."""
    core, symbols = _synthetic(20, 32, ">", 0, 0x10000, 0xC0010000, layout="7.x")
    table = kallsyms.read_dump(core, "core")
    assert table.word == 4 and table.symbols == symbols
    assert b"".join(table.system_map()).decode().splitlines()[0] == f"{symbols[0][0]:08x} {symbols[0][1]} " + \
        symbols[0][2]


def test_s390_6_10_kernel_apart_from_its_physical_place() -> None:
    """6.10+ s390: __kernel_pa(x) = x - KERNELOFFSET + KERNELOFFPHYS."""
    vaddr, paddr = 0x3FFE0000000, 0x2000000
    core, symbols = _synthetic(22, 64, ">", 0, paddr, vaddr, extra=f"KERNELOFFSET={vaddr:x}\nKERNELOFFPHYS={paddr:x}\n")
    assert kallsyms.read_dump(core, "core").symbols == symbols


def test_arm32_phys_offset_from_the_lowest_address() -> None:
    """arm exports neither PAGE_OFFSET nor PHYS_OFFSET: the dump's lowest address, rounded down to
    2 MiB (a dump without its first page still places the image)."""
    core, symbols = _synthetic(40, 32, "<", 0x40001000, 0x40008000, 0xC0008000)
    assert kallsyms.read_dump(core, "core").symbols == symbols


def test_arm32_with_ram_elsewhere_says_what_it_assumed() -> None:
    """The dump starts 2 MiB above PHYS_OFFSET: one line naming the assumption, not a damaged table."""
    core, _ = _synthetic(40, 32, "<", 0x40200000, 0x40208000, 0xC0208000)
    with pytest.raises(NotFound, match=r"^core: kallsyms not found where PAGE_OFFSET 0xc0000000 and PHYS_OFFSET "
                                       r"0x40200000 \(from the lowest address in the dump\) put it"):
        kallsyms.read_dump(core, "core")


def test_unknown_translation_is_one_line() -> None:
    """riscv64 exports no phys_base or kimage_voffset: the VMCOREINFO reader (--isf, drgn) says so in
    one line; --symbols finds the tables by shape instead, and says the same when there are none."""
    core, symbols = _synthetic(243, 64, "<", 0x80000000, 0x80200000, 0xFFFFFFFF80000000)
    with pytest.raises(NotFound) as caught:
        kallsyms.read_dump(core, "core")
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot place the kernel image of this riscv 64-bit dump in physical memory" in message
    located = kallsyms.symbols_in_memory(open_dump(core), "core")
    assert located.method == "located" and located.symbols == symbols
    info = b"OSRELEASE=6.1.0\n" + b"".join(f"SYMBOL({name})=ffffffff80001000\n".encode() for name in (
        "kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index", "kallsyms_offsets"))
    empty = machine_core(243, 64, "<", bytes(8192), 0x80000000, [("VMCOREINFO", info)])
    with pytest.raises(NotFound, match="cannot place the kernel image of this riscv 64-bit dump"):
        kallsyms.symbols_in_memory(open_dump(empty), "core")


def test_kdump_compressed_s390x_through_its_utsname() -> None:
    """A kdump-compressed file says its machine only in utsname: "s390x" is 64-bit big-endian."""
    kernel = _kernel(64, ">", 0, 0x100000, 0x100000)
    dump = kdump_file(pages_of(kernel.memory), info=kernel.vmcoreinfo, machine="s390x")
    assert open_dump(dump).info.platform == Platform("s390", "big", 64, "kdump header (machine s390x)")
    table = kallsyms.read_dump(dump, "dump")
    assert table.word == 8 and table.symbols == kernel.symbols
