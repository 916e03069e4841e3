"""A loaded kheaders.ko's archive rebuilt through the dump's x86_64 page tables (pagewalk.py).

Synthetic dumps hold hand-built 4- and 5-level tables (1 GiB / 2 MiB / 4 KiB pages, holes) with the
archive's pages scattered in reverse physical order, so only the walk can rebuild it. The corpus's
=m dumps (QEMU dump-guest-memory ELF and kdump-zlib, 5- and 4-level; real kdump captures and their
makedumpfile outputs) must give exactly the guest's /sys/kernel/kheaders.tar.xz."""

from __future__ import annotations

import hashlib
import mmap
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus, corpus_params, run_cli
from dump_builders import PAGE, Seg, big_archive, elf_core, kdump_file, memory_image, pages_of

from extract_ikheaders import Damaged, Method
from extract_ikheaders.dumps import elfcore, pagewalk, paging, paging_x86_64, physical, search
from extract_ikheaders.dumps.paging import Miss, PageTables, Run, TopTable
from extract_ikheaders.dumps.paging_x86_64 import ADDR_MASK, X86_64Paging

ARCHIVE = big_archive(size=6 * PAGE)  # ~7 pages
MODULE_VA = 0xFFFFFFFFC0002000
KERNEL_MAP = 0xFFFFFFFF80000000
DIRECT = {4: 0xFFFF888000000000, 5: 0xFF11000000000000}
TOP = 0x100000  # physical page of the top-level table; the other tables follow it
RAM = 8 << 20
RW = 0x63  # present, writable, accessed, dirty
PS = 0x80


# Hand-built page tables ------------------------------------------------------------------------


class Tables:
    """x86_64 page tables written into a physical memory image as they are built."""

    def __init__(self, image: bytearray, levels: int) -> None:
        self.image = image
        self.levels = levels
        self.shifts = (48, 39, 30, 21, 12)[5 - levels :]
        self.next = TOP
        self.top = self._new()

    def _new(self) -> int:
        paddr, self.next = self.next, self.next + PAGE
        self.image[paddr : paddr + PAGE] = bytes(PAGE)
        return paddr

    def _entry_at(self, vaddr: int, leaf_shift: int) -> int:
        table = self.top
        for shift in self.shifts:
            at = table + ((vaddr >> shift) & 511) * 8
            if shift == leaf_shift:
                return at
            entry = struct.unpack_from("<Q", self.image, at)[0]
            if not entry & 1:
                entry = self._new() | RW
                struct.pack_into("<Q", self.image, at, entry)
            table = entry & ADDR_MASK
        raise AssertionError(f"no level maps {1 << leaf_shift:#x} pages")

    def map(self, vaddr: int, paddr: int, size: int = PAGE, flags: int = RW) -> int:
        """Map one page of `size` bytes; returns the physical address of its entry."""
        shift = size.bit_length() - 1
        at = self._entry_at(vaddr, shift)
        struct.pack_into("<Q", self.image, at, paddr | flags | (PS if shift != 12 else 0))
        return at


def qemu_note(cr3: int, la57: bool) -> tuple[str, int, bytes]:
    """A QEMU "QEMU" note (QEMUCPUState v1) with CR0.PG, CR4.PAE (and LA57) and CR3 (PCID bits set)."""
    state = bytearray(432)
    struct.pack_into("<II", state, 0, 1, len(state))
    cr4 = (1 << 5) | (paging_x86_64.CR4_LA57 if la57 else 0)
    struct.pack_into("<5Q", state, 392, 0x80050033, 0, 0, cr3 | 0x5, cr4)
    return "QEMU", 0, bytes(state)


def info_for(levels: int, phys_base: int) -> bytes:
    """VMCOREINFO naming the top table (init_top_pgt) the way x86_64 kernels do."""
    symbol = KERNEL_MAP + TOP - phys_base
    return (f"OSRELEASE=6.1.0-synthetic\nSYMBOL(init_top_pgt)={symbol:x}\nNUMBER(phys_base)={phys_base}\n"
            f"NUMBER(pgtable_l5_enabled)={int(levels == 5)}\nKERNELOFFSET=0\n").encode()


def archive_pages() -> list[int]:
    """Where the archive's virtual pages live physically: scattered, in reverse order."""
    count = (MODULE_VA % PAGE + 0x100 + len(ARCHIVE) + PAGE - 1) // PAGE
    return [0x600000 - i * 3 * PAGE for i in range(count)]


def build(levels: int, *, large: str = "2M") -> tuple[bytearray, Tables, dict[int, int]]:
    """Memory with the archive at MODULE_VA + 0x100, the direct map (1 GiB or 2 MiB pages), a
    kernel image mapping (2 MiB pages); returns the image, the tables and vaddr -> PTE address."""
    image = bytearray(memory_image(RAM, {}))
    tables = Tables(image, levels)
    if large == "1G":
        tables.map(DIRECT[levels], 0, 1 << 30)
    else:
        for at in range(0, RAM, 2 << 20):
            tables.map(DIRECT[levels] + at, at, 2 << 20)
    tables.map(KERNEL_MAP + (2 << 20), 2 << 20, 2 << 20)
    data = bytes(0x100) + ARCHIVE
    ptes = {}
    for i, paddr in enumerate(archive_pages()):
        chunk = data[i * PAGE : (i + 1) * PAGE]
        image[paddr : paddr + len(chunk)] = chunk
        ptes[MODULE_VA + i * PAGE] = tables.map(MODULE_VA + i * PAGE, paddr)
    return image, tables, ptes


def find(data: bytes) -> Any:
    return search.find_in_dump(data, "dump")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The walker ------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [4, 5])
def test_translate_4k_2m_1g_and_holes(levels: int) -> None:
    image, tables, _ = build(levels, large="1G")
    tables.map(0xFFFFFFFFC0400000, 0x400000, 2 << 20)
    raw = physical.MappedMemory(bytes(image), [physical.Extent(0, len(image), 0)], physical.DumpInfo("raw", ""))
    walk = PageTables(raw, TopTable(TOP, X86_64Paging(levels), "test"))
    assert walk.translate(DIRECT[levels] + 0x123456) == 0x123456  # inside a 1 GiB page
    assert walk.translate(DIRECT[levels] + (5 << 30) + 7) == Miss(
        DIRECT[levels] + (5 << 30), DIRECT[levels] + (6 << 30), "not mapped (level-3 entry not present)")
    assert walk.translate(KERNEL_MAP + (2 << 20) + 0x1234) == (2 << 20) + 0x1234  # 2 MiB page
    assert walk.translate(0xFFFFFFFFC0400000 + 0x1FFFFF) == 0x400000 + 0x1FFFFF
    assert walk.translate(MODULE_VA + PAGE + 5) == archive_pages()[1] + 5  # 4 KiB page
    hole = walk.translate(MODULE_VA + 100 * PAGE)
    assert isinstance(hole, Miss) and "level-1 entry not present" in hole.why
    assert hole.end - hole.start == PAGE


@pytest.mark.parametrize("levels", [4, 5])
def test_runs_and_module_space(levels: int) -> None:
    image, _, _ = build(levels)
    raw = physical.MappedMemory(bytes(image), [physical.Extent(0, len(image), 0)], physical.DumpInfo("raw", ""))
    walk = PageTables(raw, TopTable(TOP, X86_64Paging(levels), "test"))
    runs = list(walk.runs())
    assert Run(DIRECT[levels], 0, RAM) in runs  # four 2 MiB pages merged
    assert all(r.vaddr >= 1 << 63 for r in runs)  # the user half is never walked
    space = pagewalk.ModuleSpace(walk)
    assert space.direct_delta == DIRECT[levels] and space.image_delta == KERNEL_MAP
    pages = archive_pages()
    assert space.aliases(pages[3] + 9) == [MODULE_VA + 3 * PAGE + 9]
    assert space.aliases(0x300000) == []  # only the direct map and the kernel image map it


def test_large_page_leaf_ignores_the_pat_bit_and_reserved_ps_at_the_top() -> None:
    image, tables, _ = build(4)
    at = tables.map(0xFFFFFFFFC0600000, 0x600000 | 0x1000, 2 << 20)  # PAT bit (12) set on a 2 MiB leaf
    raw = physical.MappedMemory(bytes(image), [physical.Extent(0, len(image), 0)], physical.DumpInfo("raw", ""))
    walk = PageTables(raw, TopTable(TOP, X86_64Paging(4), "test"))
    assert at and walk.translate(0xFFFFFFFFC0600010) == 0x600010
    struct.pack_into("<Q", image, TOP + 300 * 8, 0x200000 | RW | PS)  # PS is reserved in a PGD entry
    raw = physical.MappedMemory(bytes(image), [physical.Extent(0, len(image), 0)], physical.DumpInfo("raw", ""))
    walk = PageTables(raw, TopTable(TOP, X86_64Paging(4), "test"))
    miss = walk.translate(0xFFFF960000000000)
    assert isinstance(miss, Miss) and "reserved" in miss.why
    assert all(r.vaddr >> 39 & 511 != 300 for r in walk.leaves())


def test_qemu_note_and_vmcoreinfo_sources() -> None:
    name, _, desc = qemu_note(0x1234000, la57=True)
    expected = TopTable(0x1234000, X86_64Paging(5), "CR3 from QEMU note (CPU 0)")
    assert paging_x86_64.qemu_cr3_tables([(name, desc)]) == [expected]
    assert paging_x86_64.qemu_cr3_tables([("QEMU", desc[:300])]) == []
    assert paging_x86_64.qemu_cr3_tables([("QEMU", desc[:400] + bytes(32))]) == []  # CR4 without PAE: no paging
    info = physical.parse_vmcoreinfo(info_for(4, -0x10000000))
    image_delta = KERNEL_MAP + 0x10000000
    assert pagewalk.vmcoreinfo_table(info) == TopTable(TOP, X86_64Paging(4), "VMCOREINFO init_top_pgt", image_delta)
    assert pagewalk.vmcoreinfo_table({"SYMBOL(init_top_pgt)": "zz"}) is None


# Whole dumps -----------------------------------------------------------------------------------


def physical_carve_fails(image: bytes) -> None:
    """The archive's pages are scattered: a plain physical carve cannot rebuild it."""
    with pytest.raises(Damaged, match="not physically contiguous"):
        search.find_in_raw(image, "raw")


@pytest.mark.parametrize("levels", [4, 5])
def test_elf_core_with_qemu_note(levels: int) -> None:
    image, _, _ = build(levels, large="1G" if levels == 5 else "2M")
    physical_carve_fails(bytes(image))
    found = find(elf_core([Seg(0, bytes(image))], notes=[qemu_note(TOP, la57=levels == 5)]))
    assert found.archive == ARCHIVE and found.method == Method.PAGEWALK
    assert found.offset == MODULE_VA + 0x100
    layer = found.layers[-1]
    assert (layer.format, layer.offset, layer.length) == ("virtual memory", MODULE_VA + 0x100, len(ARCHIVE))
    assert layer.detail == f"pagewalk, {levels}-level, CR3 from QEMU note (CPU 0)"
    assert any(f"mapped at virtual {MODULE_VA + 0x100:#x}" in n for n in found.notes)


@pytest.mark.parametrize(("levels", "phys_base"), [(4, 0), (5, -0x10000000)])
def test_kdump_compressed_with_vmcoreinfo(levels: int, phys_base: int) -> None:
    image, _, _ = build(levels)
    dump = kdump_file(pages_of(bytes(image)), info=info_for(levels, phys_base))
    found = find(dump)
    assert found.archive == ARCHIVE and found.method == Method.PAGEWALK
    assert found.layers[-1].detail == f"pagewalk, {levels}-level, VMCOREINFO init_top_pgt"


def test_excluded_page_names_the_virtual_and_physical_range() -> None:
    image, _, _ = build(5)
    pages = pages_of(bytes(image))
    dropped = archive_pages()[2]
    del pages[dropped // PAGE]
    dump = kdump_file(pages, info=info_for(5, 0), ram=range(RAM // PAGE))
    vaddr = MODULE_VA + 2 * PAGE
    with pytest.raises(Damaged) as err:
        find(dump)
    text = str(err.value)
    assert f"virtual {vaddr:#x}-{vaddr + PAGE - 1:#x} maps to physical {dropped:#x}" in text
    assert "excluded by makedumpfile" in text


def test_unmapped_page_names_the_virtual_range() -> None:
    image, _, ptes = build(4)
    vaddr = MODULE_VA + 4 * PAGE
    struct.pack_into("<Q", image, ptes[vaddr], 0)
    with pytest.raises(Damaged, match=rf"virtual {vaddr:#x}-{vaddr + PAGE - 1:#x} is not mapped"):
        find(elf_core([Seg(0, bytes(image))], notes=[qemu_note(TOP, la57=False)]))


def test_without_tables_the_break_is_explained() -> None:
    image, _, _ = build(4)
    with pytest.raises(Damaged, match="no page walk: the dump has no QEMU CPU note"):
        find(elf_core([Seg(0, bytes(image))]))


def test_page_table_page_missing_from_the_dump() -> None:
    image, _, _ = build(4)
    segs = [Seg(0, bytes(image[:TOP])), Seg(TOP + 16 * PAGE, bytes(image[TOP + 16 * PAGE :]))]
    with pytest.raises(Damaged, match="no page walk: no page table the dump names could be walked"):
        find(elf_core(segs, notes=[qemu_note(TOP, la57=False)]))


# The corpus ------------------------------------------------------------------------------------


def qemu_dumps(corpus: Corpus) -> list[tuple[str, tuple[Path, int, str]]]:
    dumps = []
    for kernel, levels in (("6.1-m", 5), ("6.1-m-4level", 4), ("7.2-m", 5)):
        boot = corpus.root / corpus.manifest["kernels"][kernel]["boot"]
        for kind, name in corpus.truth(kernel)["dumps"].items():
            dumps.append((f"{kernel}/{kind}", (boot / name, levels, kernel)))
    return dumps


def kdump_dumps(corpus: Corpus) -> list[tuple[str, tuple[Path, int, dict[str, Any]]]]:
    dumps = []
    for name, entry in corpus.manifest["kdump_m"].items():
        kdir = corpus.root / entry["dir"]
        files = {"vmcore": "vmcore", **entry["makedumpfile_outputs"]}
        for kind, file in files.items():
            dumps.append((f"{name}/{kind}", (kdir / file, entry["paging"], entry["ground_truth"])))
    return dumps


def test_the_module_corpus_has_its_captures(corpus: Corpus) -> None:
    truth = corpus.truth("6.1-m")
    assert len(qemu_dumps(corpus)) == 6 and corpus.truth("7.2-m")["module_loaded"]
    assert corpus.truth("6.1-m-4level")["sha256"] == truth["sha256"] and truth["module_loaded"]
    dumps = kdump_dumps(corpus)
    assert {levels for _, (_, levels, _) in dumps} == {4, 5} and len(dumps) >= 8


def _archive_through_the_page_tables(path: Path, sha: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "a.tar.xz"
    run = run_cli("--json", "--archive", out, path)
    assert run.code == 0, run.stderr
    assert sha256(out.read_bytes()) == sha
    report: dict[str, Any] = run.json
    assert report["archive"]["method"] == "pagewalk"
    layer = report["layers"][-1]
    assert layer["format"] == "virtual memory" and layer["offset"] >= 0xFFFFFFFFA0000000
    return layer


@pytest.mark.parametrize("dump", corpus_params(qemu_dumps))
def test_cli_archive_from_qemu_dumps(corpus: Corpus, tmp_path: Path, dump: tuple[Path, int, str]) -> None:
    path, levels, kernel = dump
    layer = _archive_through_the_page_tables(path, corpus.truth(kernel)["sha256"], tmp_path)
    assert layer["detail"] == f"pagewalk, {levels}-level, CR3 from QEMU note (CPU 0)"


@pytest.mark.parametrize("dump", corpus_params(kdump_dumps))
def test_cli_archive_from_kdump_captures(corpus: Corpus, tmp_path: Path,
                                         dump: tuple[Path, int, dict[str, Any]]) -> None:
    path, levels, truth = dump
    assert truth["module_loaded"]
    layer = _archive_through_the_page_tables(path, truth["sha256"], tmp_path)
    assert layer["detail"] == f"pagewalk, {levels}-level, VMCOREINFO init_top_pgt"


def test_kdump_capture_pages_are_scattered(corpus: Corpus) -> None:
    """In the real captures only the walk can rebuild the archive: physically it breaks off."""
    entry = corpus.manifest["kdump_m"]["kdump-6.1-m"]
    path = corpus.root / entry["dir"] / "vmcore"
    with mapped(path) as m:
        mem = search.open_dump(m)
        paddr = _header_paddr(search.find_in_dump(m, str(path)))
        outcome = search._follow(mem, paddr)  # no resolver: the physical carve alone
    assert isinstance(outcome, Damaged) and "not physically contiguous" in str(outcome)


# The QEMU dump with the module's pages scattered -----------------------------------------------


@contextmanager
def mapped(path: Path, write: bool = False) -> Iterator[mmap.mmap]:
    with path.open("r+b" if write else "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ)
        try:
            yield m
        finally:
            m.close()


def find_file(path: Path) -> Any:
    with mapped(path) as m:
        return search.find_in_dump(m, str(path))


def _header_paddr(found: Any) -> int:
    note = next(n for n in found.notes if n.startswith("page walk:"))
    return int(note.split("at physical ")[1].split()[0], 16)


def _pte_address(tables: PageTables, vaddr: int) -> int:
    table = tables.top.paddr
    for shift in tables.shifts:
        at = table + ((vaddr >> shift) & 511) * 8
        entry = tables.table(table)
        assert entry is not None
        if shift == 12:
            return at
        table = entry[(vaddr >> shift) & 511] & ADDR_MASK
    raise AssertionError


def scramble_module_pages(src: Path, dst: Path) -> tuple[int, int, int]:
    """A copy of an ELF dump whose archive pages after the first are stored in reverse physical
    order, with the PTEs rewritten to match: the guest's view is unchanged, the physical layout
    is not contiguous any more. Returns (vaddr, size, physical address of the stream header)."""
    shutil.copyfile(src, dst)
    with mapped(dst, write=True) as m:
        mem = elfcore.open_memory(m)
        found = search.find_in_dump(m, str(dst))
        vaddr, size = found.offset, found.size
        tables = PageTables(mem, pagewalk.top_tables(mem, m)[0])
        first = vaddr & ~(PAGE - 1)
        count = (vaddr + size - first + PAGE - 1) // PAGE
        pte_at = [_pte_address(tables, first + i * PAGE) for i in range(1, count)]
        ptes = [struct.unpack("<Q", mem.read(at, 8))[0] for at in pte_at]
        frames = [pte & ADDR_MASK for pte in ptes]
        contents = [mem.read(frame, PAGE) for frame in frames]

        def offset(paddr: int) -> int:
            e = next(e for e in mem.extents if e.paddr <= paddr < e.paddr + e.size)
            return e.offset + paddr - e.paddr

        for i, (at, pte) in enumerate(zip(pte_at, ptes, strict=True)):
            frame = frames[len(frames) - 1 - i]
            m[offset(frame) : offset(frame) + PAGE] = contents[i]
            m[offset(at) : offset(at) + 8] = struct.pack("<Q", frame | (pte & ~ADDR_MASK))
        return vaddr, size, _header_paddr(found)


def test_qemu_dump_with_scattered_module_pages(corpus: Corpus, tmp_path: Path) -> None:
    src = corpus.root / corpus.manifest["kernels"]["6.1-m"]["boot"] / "dump.elf"
    out = tmp_path / "dump.scrambled"
    vaddr, size, paddr = scramble_module_pages(src, out)
    with mapped(out) as m:
        outcome = search._follow(search.open_dump(m), paddr)
    assert isinstance(outcome, Damaged)  # physically the stream breaks off now
    run = run_cli("--archive", "-", out)
    assert run.code == 0, run.stderr
    assert sha256(run.stdout) == corpus.truth("6.1-m")["sha256"]
    found = find_file(out)
    assert found.method == Method.PAGEWALK and (found.offset, found.size) == (vaddr, size)


def elf_hole(src: Path, dst: Path, paddr: int) -> None:
    """A copy of an ELF core without the physical page at `paddr`: the PT_LOAD holding it is split
    in two around it (a new program header table is appended; the data stays where it was)."""
    shutil.copyfile(src, dst)
    with dst.open("r+b") as f:
        head = bytearray(f.read(64))
        phoff, = struct.unpack_from("<Q", head, 32)
        phnum, = struct.unpack_from("<H", head, 56)
        f.seek(phoff)
        phdrs = [struct.unpack("<IIQQQQQQ", f.read(56)) for _ in range(phnum)]
        out = []
        for p_type, flags, offset, vaddr, start, filesz, memsz, align in phdrs:
            if p_type != 1 or not start <= paddr < start + filesz:
                out.append((p_type, flags, offset, vaddr, start, filesz, memsz, align))
                continue
            cut = paddr - start
            out.append((p_type, flags, offset, vaddr, start, cut, cut, align))
            rest = cut + PAGE
            out.append((p_type, flags, offset + rest, vaddr, start + rest, filesz - rest, memsz - rest, align))
        f.seek(0, 2)
        table_at = f.tell()
        f.write(b"".join(struct.pack("<IIQQQQQQ", *ph) for ph in out))
        struct.pack_into("<Q", head, 32, table_at)
        struct.pack_into("<H", head, 56, len(out))
        f.seek(0)
        f.write(head)


def test_qemu_dump_with_a_module_page_missing(corpus: Corpus, tmp_path: Path) -> None:
    """A module page missing from the dump: exit 3 naming the virtual and physical range."""
    src = corpus.root / corpus.manifest["kernels"]["6.1-m-4level"]["boot"] / "dump.elf"
    found = find_file(src)
    missing_va = (found.offset & ~(PAGE - 1)) + 3 * PAGE
    with mapped(src) as m:
        mem = search.open_dump(m)
        missing = PageTables(mem, pagewalk.top_tables(mem, m)[0]).translate(missing_va)
    assert isinstance(missing, int)
    out = tmp_path / "dump.hole"
    elf_hole(src, out, missing)
    run = run_cli("--archive", "-", out)
    assert run.code == 3 and not run.stdout
    assert (f"virtual {missing_va:#x}-{missing_va + PAGE - 1:#x} maps to physical "
            f"{missing:#x}-{missing + PAGE - 1:#x} is not in the dump") in run.stderr, run.stderr


def test_tables_pointing_back_at_themselves_do_not_make_the_walk_endless(monkeypatch: pytest.MonkeyPatch) -> None:
    image = bytearray(4 * PAGE)
    for i in range(512):  # every entry of the top table points at the top table itself
        struct.pack_into("<Q", image, i * 8, 0 | RW)
    monkeypatch.setattr(paging, "MAX_TABLES", 1000)
    raw = physical.MappedMemory(bytes(image), [physical.Extent(0, len(image), 0)], physical.DumpInfo("raw", ""))
    walk = PageTables(raw, TopTable(0, X86_64Paging(4), "test"))
    leaves = list(walk.leaves())
    assert walk.truncated and len(leaves) < 1000 * 512
    assert walk.translate(0xFFFF800000001000) == 0  # the 4th level's entry points at page 0 too
