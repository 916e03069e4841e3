"""A loaded kheaders.ko's archive rebuilt through an arm64 kernel's own page tables (paging_arm64.py).

Hand-built TTBR1 tables for every granule (4, 16, 64 KiB) and virtual-address size the kernel
supports (36 to 52 bits, 2 to 5 levels), with the linear map, the kernel image and the module's
pages scattered in reverse physical order, so that only the walk can rebuild the archive. The
top table is found the way a real dump gives it: VMCOREINFO's swapper_pg_dir, kimage_voffset,
VA_BITS, TCR_EL1_T1SZ and PAGESIZE."""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import pytest
from conftest import Corpus, corpus_params
from dump_builders import Seg, big_archive, elf_core, kdump_file, memory_image, pages_of

from extract_ikheaders import Damaged, Method
from extract_ikheaders.dumps import pagewalk, physical, search
from extract_ikheaders.dumps.paging import Kind, Miss, PageTables, TopTable
from extract_ikheaders.dumps.paging_arm64 import Arm64Paging, vmcoreinfo_table

RAM = 16 << 20
ARCHIVE = big_archive(size=100 << 10)  # two 64 KiB pages, seven 16 KiB ones
AF = 1 << 10  # access flag
SH = 3 << 8  # inner shareable: the field LPA2 turns into address bits 51:50
VALID, TABLE = 0b01, 0b11
KIMAGE_VOFFSET_BASE = 0x10000000  # the image's virtual address is its physical one plus this much of the range
ALL_ONES = (1 << 64) - 1


def kernel_half(va_bits: int) -> int:
    return ALL_ONES ^ ((1 << va_bits) - 1)


class Arm64Tables:
    """TTBR1 tables written into a physical memory image as they are built."""

    def __init__(self, image: bytearray, paging: Arm64Paging, top: int) -> None:
        self.image, self.paging, self.top = image, paging, top
        self.granule = paging.page
        self.next = top + self.granule  # tables follow the top one, a granule each

    def _new(self) -> int:
        paddr, self.next = self.next, self.next + self.granule
        self.image[paddr : paddr + self.granule] = bytes(self.granule)
        return paddr

    def encode(self, paddr: int) -> int:
        """An output address in descriptor form (52-bit addresses: LPA's and LPA2's high bits)."""
        if self.paging.granule_shift == 16:
            return (paddr & ((1 << 48) - 1)) | (paddr >> 48 & 0xF) << 12
        if self.paging.lpa2:
            return (paddr & ((1 << 50) - 1)) | (paddr >> 50 & 0x3) << 8
        return paddr | SH

    def _slot(self, vaddr: int, leaf_shift: int) -> int:
        table = self.top
        for depth, shift in enumerate(self.paging.shifts):
            at = table + ((vaddr >> shift) % self.paging.entries(depth)) * 8
            if shift == leaf_shift:
                return at
            entry = struct.unpack_from("<Q", self.image, at)[0]
            if not entry & VALID:
                entry = self.encode(self._new()) | TABLE
                struct.pack_into("<Q", self.image, at, entry)
            table = self.paging.decode(entry, depth)[1]
        raise AssertionError(f"no level maps {1 << leaf_shift:#x} blocks")

    def map(self, vaddr: int, paddr: int, size: int | None = None) -> int:
        """Map one page (or a block of `size` bytes); returns the physical address of its entry."""
        shift = (size or self.granule).bit_length() - 1
        at = self._slot(vaddr, shift)
        kind = TABLE if shift == self.paging.granule_shift else VALID
        struct.pack_into("<Q", self.image, at, self.encode(paddr) | AF | kind)
        return at


class Kernel:
    """Memory of an arm64 guest: tables, linear map, image mapping and the module's scattered pages."""

    def __init__(self, granule_shift: int, va_bits: int, configured: int | None = None) -> None:
        self.paging = Arm64Paging(granule_shift, va_bits)
        self.configured = configured or va_bits
        self.granule = self.paging.page
        self.image = bytearray(memory_image(RAM, {}))
        self.swapper = 0x100000
        self.image[self.swapper : self.swapper + self.granule] = bytes(self.granule)
        top = self.swapper + self._top_offset()
        self.tables = Arm64Tables(self.image, self.paging, top)
        self.tables.next = self.swapper + max(self.granule, 0x2000)
        self.linear = kernel_half(va_bits)  # PAGE_OFFSET: the bottom of the kernel half
        self.kimage_voffset = kernel_half(va_bits - 1) + KIMAGE_VOFFSET_BASE
        self.module_va = self.kimage_voffset - (64 << 20)
        self.archive_at = self.module_va + 0x100
        self._map_linear()
        for at in range(0, 4 * self.granule, self.granule):  # a few pages of the image (the tables' too)
            self.tables.map(self.kimage_voffset + self.swapper + at, self.swapper + at)
        self.ptes = self._place_module()

    def _top_offset(self) -> int:
        """64 KiB pages, built for 52 bits, run at 48: TTBR1 points 960 entries into swapper_pg_dir."""
        return (1024 - 64) * 8 if self.granule == 1 << 16 and self.configured == 52 and self.paging.va_bits == 48 else 0

    def _map_linear(self) -> None:
        block = 2 << 20 if self.paging.granule_shift == 12 else None
        step = block or self.granule
        for at in range(0, RAM, step):
            self.tables.map(self.linear + at, at, block)

    def module_pages(self) -> list[int]:
        count = (0x100 + len(ARCHIVE) + self.granule - 1) // self.granule
        return [RAM - (i + 1) * 3 * self.granule for i in range(count)]

    def _place_module(self) -> dict[int, int]:
        data = bytes(0x100) + ARCHIVE
        ptes = {}
        for i, paddr in enumerate(self.module_pages()):
            chunk = data[i * self.granule : (i + 1) * self.granule]
            self.image[paddr : paddr + len(chunk)] = chunk
            ptes[self.module_va + i * self.granule] = self.tables.map(self.module_va + i * self.granule, paddr)
        return ptes

    def vmcoreinfo(self, **drop: bool) -> bytes:
        fields = {"OSRELEASE": "6.1.0-synthetic", "PAGESIZE": str(self.granule),
                  "SYMBOL(swapper_pg_dir)": f"{self.swapper + self.kimage_voffset:x}",
                  "NUMBER(VA_BITS)": str(self.configured),
                  "NUMBER(kimage_voffset)": f"{self.kimage_voffset:#x}", "NUMBER(PHYS_OFFSET)": "0x0",
                  "NUMBER(TCR_EL1_T1SZ)": f"{64 - self.paging.va_bits:#x}", "KERNELOFFSET": "0"}
        return "".join(f"{k}={v}\n" for k, v in fields.items() if not drop.get(k)).encode()

    def memory(self) -> physical.MappedMemory:
        return physical.MappedMemory(bytes(self.image), [physical.Extent(0, len(self.image), 0)],
                                     physical.DumpInfo("raw", ""))

    def walk(self) -> PageTables:
        top = vmcoreinfo_table(physical.parse_vmcoreinfo(self.vmcoreinfo()))
        assert top is not None
        return PageTables(self.memory(), top)

    def elf(self) -> bytes:
        return elf_core([Seg(0, bytes(self.image))], notes=[("VMCOREINFO", 0, self.vmcoreinfo())])


# (granule shift, VA bits the MMU uses): every size the kernel's Kconfig offers per granule
GEOMETRIES = [(12, 39), (12, 48), (12, 52), (14, 36), (14, 47), (14, 48), (14, 52), (16, 42), (16, 48), (16, 52)]
LEVELS = {(12, 39): 3, (12, 48): 4, (12, 52): 5, (14, 36): 2, (14, 47): 3, (14, 48): 4, (14, 52): 4,
          (16, 42): 2, (16, 48): 3, (16, 52): 3}


def geometry_id(geometry: tuple[int, int]) -> str:
    return f"{1 << geometry[0] >> 10}K-{geometry[1]}bit"


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=geometry_id)
def test_geometry_follows_granule_and_va_bits(geometry: tuple[int, int]) -> None:
    paging = Arm64Paging(*geometry)
    assert paging.levels == LEVELS[geometry]
    assert paging.shifts[-1] == geometry[0]
    index_bits = sum((paging.entries(d).bit_length() - 1) for d in range(paging.levels))
    assert index_bits + geometry[0] == geometry[1]  # every VA bit above the page offset is indexed once


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=geometry_id)
def test_translate_linear_image_and_module(geometry: tuple[int, int]) -> None:
    kernel = Kernel(*geometry)
    walk = kernel.walk()
    assert walk.translate(kernel.linear + 0x123456) == 0x123456
    assert walk.translate(kernel.kimage_voffset + kernel.swapper + 5) == kernel.swapper + 5
    pages = kernel.module_pages()
    assert walk.translate(kernel.module_va + kernel.granule + 7) == pages[1] + 7
    hole = walk.translate(kernel.module_va + 50 * kernel.granule)
    assert isinstance(hole, Miss) and "level 3 entry not present" in hole.why
    assert hole.end - hole.start == kernel.granule


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=geometry_id)
def test_module_space_leaves_out_the_linear_map_and_the_image(geometry: tuple[int, int]) -> None:
    kernel = Kernel(*geometry)
    space = pagewalk.ModuleSpace(kernel.walk())
    assert space.direct_delta == kernel.linear and space.image_delta == kernel.kimage_voffset
    pages = kernel.module_pages()
    assert space.aliases(pages[1] + 9) == [kernel.module_va + kernel.granule + 9]
    assert space.aliases(0x300000) == []  # only the linear map maps it


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=geometry_id)
def test_elf_core_with_vmcoreinfo(geometry: tuple[int, int]) -> None:
    kernel = Kernel(*geometry)
    with pytest.raises(Damaged, match="not physically contiguous"):
        search.find_in_raw(bytes(kernel.image), "raw")
    found = search.find_in_dump(kernel.elf(), "dump")
    assert found.archive == ARCHIVE and found.method == Method.PAGEWALK
    assert found.offset == kernel.archive_at
    granule, va_bits = geometry
    assert found.layers[-1].detail == (f"pagewalk, arm64 {1 << granule >> 10} KiB granule, {va_bits}-bit VA, "
                                       f"{LEVELS[geometry]}-level, VMCOREINFO swapper_pg_dir")
    assert any(f"mapped at virtual {kernel.archive_at:#x}" in note for note in found.notes)


def test_kdump_compressed_with_vmcoreinfo() -> None:
    kernel = Kernel(12, 39)
    found = search.find_in_dump(kdump_file(pages_of(bytes(kernel.image)), info=kernel.vmcoreinfo()), "dump")
    assert found.archive == ARCHIVE and found.method == Method.PAGEWALK


@pytest.mark.parametrize("granule", [12, 14])
def test_a_52_bit_kernel_on_a_48_bit_cpu_folds_its_top_level(granule: int) -> None:
    """4/16 KiB pages (LPA2 kernels): swapper_pg_dir is walked as the 48-bit top table, and bits 9:8
    are shareability, not address, as the CPU has no LPA2."""
    kernel = Kernel(granule, 48, configured=52)
    top = vmcoreinfo_table(physical.parse_vmcoreinfo(kernel.vmcoreinfo()))
    assert top is not None and top.paddr == kernel.swapper and top.levels == 4 and not kernel.paging.lpa2
    assert search.find_in_dump(kernel.elf(), "dump").archive == ARCHIVE


def test_a_52_bit_kernel_with_64k_pages_on_a_48_bit_cpu_uses_the_last_64_entries() -> None:
    kernel = Kernel(16, 48, configured=52)
    top = vmcoreinfo_table(physical.parse_vmcoreinfo(kernel.vmcoreinfo()))
    assert top is not None and top.paddr == kernel.swapper + 960 * 8  # TTBR1_BADDR_4852_OFFSET
    assert search.find_in_dump(kernel.elf(), "dump").archive == ARCHIVE


@pytest.mark.parametrize(("granule", "va_bits", "entry", "paddr"), [
    (16, 52, 0x0000_1234_5678_0000 | 0xA << 12 | TABLE, 0x000A_1234_5678_0000),  # LPA: bits 15:12 -> 51:48
    (12, 52, 0x0003_1234_5678_9000 | 0x2 << 8 | TABLE, 0x000B_1234_5678_9000),  # LPA2: bits 9:8 -> 51:50
    (12, 48, 0x0000_1234_5678_9000 | SH | TABLE, 0x0000_1234_5678_9000),  # no LPA2: 9:8 are SH
])
def test_52_bit_output_addresses(granule: int, va_bits: int, entry: int, paddr: int) -> None:
    paging = Arm64Paging(granule, va_bits)
    assert paging.decode(entry | AF, paging.levels - 1) == (Kind.LEAF, paddr)


def test_reserved_descriptors_are_not_followed() -> None:
    assert Arm64Paging(12, 48).decode(1 << 39 | VALID, 0) == (Kind.RESERVED, 0)  # no 512 GiB blocks without LPA2
    assert Arm64Paging(14, 47).decode(1 << 36 | VALID, 0) == (Kind.RESERVED, 0)  # nor 64 GiB ones
    paging = Arm64Paging(12, 39)
    assert paging.decode(0x40000000 | VALID, 0) == (Kind.LEAF, 0x40000000)  # a 1 GiB block at level 1
    assert paging.decode(0x200000 | VALID, 1) == (Kind.LEAF, 0x200000)  # a 2 MiB block at level 2
    assert paging.decode(0x1000 | VALID, 2) == (Kind.RESERVED, 0)  # 0b01 at level 3 is reserved
    kernel = Kernel(12, 39)
    vaddr = kernel.module_va + 2 * kernel.granule
    struct.pack_into("<Q", kernel.image, kernel.ptes[vaddr], 0x5000 | AF | VALID)
    miss = kernel.walk().translate(vaddr)
    assert isinstance(miss, Miss) and "level 3 entry is reserved" in miss.why
    with pytest.raises(Damaged, match=rf"virtual {vaddr:#x}-{vaddr + kernel.granule - 1:#x} is unreachable"):
        search.find_in_dump(kernel.elf(), "dump")


def test_unmapped_module_page_names_the_virtual_range() -> None:
    kernel = Kernel(14, 47)
    vaddr = kernel.module_va + kernel.granule
    struct.pack_into("<Q", kernel.image, kernel.ptes[vaddr], 0)
    with pytest.raises(Damaged, match=rf"virtual {vaddr:#x}-{vaddr + kernel.granule - 1:#x} is not mapped"):
        search.find_in_dump(kernel.elf(), "dump")


@pytest.mark.parametrize("missing", ["SYMBOL(swapper_pg_dir)", "NUMBER(kimage_voffset)", "NUMBER(VA_BITS)"])
def test_without_the_vmcoreinfo_fields_the_break_is_explained(missing: str) -> None:
    kernel = Kernel(12, 39)
    dump = elf_core([Seg(0, bytes(kernel.image))], notes=[("VMCOREINFO", 0, kernel.vmcoreinfo(**{missing: True}))])
    with pytest.raises(Damaged, match=r"no page walk: .*swapper_pg_dir with kimage_voffset on arm64"):
        search.find_in_dump(dump, "dump")


@pytest.mark.parametrize(("field", "value"), [("PAGESIZE", "8192"), ("NUMBER(TCR_EL1_T1SZ)", "0x2"),
                                              ("NUMBER(VA_BITS)", "x"), ("NUMBER(kimage_voffset)", "0x7")])
def test_implausible_vmcoreinfo_gives_no_table(field: str, value: str) -> None:
    info = physical.parse_vmcoreinfo(Kernel(12, 39).vmcoreinfo())
    info[field] = value
    assert vmcoreinfo_table(info) is None


def test_a_top_table_is_never_mistaken_for_another_architecture() -> None:
    kernel = Kernel(12, 48)
    info = physical.parse_vmcoreinfo(kernel.vmcoreinfo())
    top = pagewalk.vmcoreinfo_table(info)
    assert isinstance(top, TopTable) and top.paging == Arm64Paging(12, 48)
    assert top.image_delta == kernel.kimage_voffset


# The corpus' arm64 guests (QEMU virt, -cpu max): 6.1 with 39-bit VA (3 levels), 7.2 with 52-bit VA
# and LPA2 (5 levels) ------------------------------------------------------------------------------


def arm64_elf_dumps(corpus: Corpus) -> list[tuple[str, tuple[str, Path]]]:
    return [(kernel, (kernel, corpus.root / corpus.manifest["kernels"][kernel]["dumps"]["elf"]))
            for kernel in corpus.manifest["arm64_boots"]["kernels"]]


@pytest.mark.parametrize("case", corpus_params(arm64_elf_dumps))
def test_real_tables_map_the_image_and_the_linear_map(corpus: Corpus, case: tuple[str, Path]) -> None:
    """Every kernel-image symbol VMCOREINFO names translates to virtual - kimage_voffset, and the
    linear map's first page to PHYS_OFFSET: the walk reads the guest's own swapper_pg_dir."""
    kernel, path = case
    entry = corpus.manifest["kernels"][kernel]
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        mem = search.open_dump(data)
        info = mem.info.vmcoreinfo
        top = pagewalk.vmcoreinfo_table(info)
        assert top is not None and top.paging == Arm64Paging(12, entry["vmcoreinfo_va_bits"])
        assert top.levels == {39: 3, 48: 4, 52: 5}[entry["vmcoreinfo_va_bits"]]
        walk = PageTables(mem, top)
        voffset = int(info["NUMBER(kimage_voffset)"], 16)
        symbols = {k[len("SYMBOL("):-1]: int(v, 16) for k, v in info.items() if k.startswith("SYMBOL(")}
        image = {name: vaddr for name, vaddr in symbols.items() if mem.read_some(vaddr - voffset, 1)}  # not vmemmap
        assert len(image) >= 5 and "swapper_pg_dir" in image and "vmemmap" not in image
        for name, vaddr in image.items():
            assert walk.translate(vaddr) == vaddr - voffset, name
        phys_offset = int(info["NUMBER(PHYS_OFFSET)"], 16)
        page_offset = kernel_half(entry["vmcoreinfo_va_bits"])
        assert walk.translate(page_offset + 0x1234) == phys_offset + 0x1234
        space = pagewalk.ModuleSpace(walk)
        assert (space.direct_delta, space.image_delta) == (page_offset - phys_offset, voffset)
