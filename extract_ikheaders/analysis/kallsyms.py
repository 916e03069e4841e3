"""The kernel's symbol table (System.map lines) decoded from kallsyms, in any image or dump.

A dump is read through VMCOREINFO first: Linux 6.0+ puts `SYMBOL(kallsyms_*)` entries there, the
running kernel's addresses (KASLR applied) of the tables. They lie in the kernel image, which is
physically contiguous, so each is read at __pa_symbol(addr): x86_64 `addr - __START_KERNEL_map +
phys_base`, arm64 `addr - kimage_voffset`, s390 `addr` (6.10+: `addr - KERNELOFFSET +
KERNELOFFPHYS`), ppc64 `addr - 0xc000000000000000`, 32-bit arm and powerpc through the linear map
(see _linear_32_translation); in the word size and byte order of the dumped machine (the ELF core's
class and data, a kdump header's utsname). Dumps without them (QEMU dumps, older kernels) and every
other image are searched for the tables by their shape (kallsyms_locate.py); in a dump the kernel
has already relocated kallsyms_relative_base, so the addresses are the running kernel's too.

The format (kernel/kallsyms.c, scripts/kallsyms.c):
- kallsyms_names: per symbol a length (one byte; if its top bit is set, a second byte holds bits
  7-14) followed by that many token indices; the expanded text's first char is the symbol type.
- kallsyms_token_table: 256 NUL-terminated tokens; kallsyms_token_index: 256 u16 offsets into it.
- base-relative: kallsyms_offsets (s32) and kallsyms_relative_base (a word, relocated);
  address = base + (u32)offset, or with CONFIG_KALLSYMS_ABSOLUTE_PERCPU an offset >= 0 is absolute
  and a negative one means base - 1 - offset. Otherwise kallsyms_addresses (a word each).

`Kallsyms.kaslr_offset` is VMCOREINFO's KERNELOFFSET (0 when VMCOREINFO lacks it); `kaslr_known` is
False where nothing says it (an image, a dump without VMCOREINFO), and --json reports null.
"""

from __future__ import annotations

import os
import re
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from .. import pipeline
from ..archive import locate
from ..buffer import Buffer
from ..dumps import pagewalk, paging_x86_64
from ..dumps.paging import PageTables
from ..dumps.physical import PhysicalMemory
from ..dumps.search import open_dump
from ..elf.reader import ELF_MAGIC, CorruptElf, ElfImage, Section
from ..errors import Damaged, NotFound, NotMine
from ..model import Layer, Platform
from . import kallsyms_locate
from .kallsyms_locate import (
    DIGIT_TOKENS,
    TOKEN_TABLE_MAX,
    decode_names,
    place_relative_addresses,
    read_array,
    relative_addresses,
)
from .symtab import MAX_SYMS, SymbolTable

MAX_NAMES = 64 << 20  # bytes of kallsyms_names read at most
_START_KERNEL_MAP = 0xFFFFFFFF80000000
SHT_RELA = 4
_NEEDS = "needs a 6.0+ kernel with CONFIG_KALLSYMS and VMCOREINFO"
_REQUIRED = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index")
# Read around a token table found in a dump: the other tables lie within a few MB of it.
_WINDOW_BEFORE = 16 << 20
_WINDOW_AFTER = 8 << 20
_PROBE = 2 * TOKEN_TABLE_MAX


@dataclass(frozen=True)
class Kallsyms:
    """A decoded symbol table, in kallsyms order, and how it was found."""

    symbols: SymbolTable
    kaslr_offset: int
    method: str = "vmcoreinfo"  # or "located": found by its shape
    offset: int | None = None  # kallsyms_names in the innermost layer's data (located)
    layers: tuple[Layer, ...] = ()
    word: int = 8  # bytes in an address: System.map prints two hex digits each
    detail: str = ""
    kaslr_known: bool = True
    kaslr_source: str = "vmcoreinfo"  # or "config": _text against the link address .config gives

    def system_map(self) -> Iterator[bytes]:
        """System.map lines by address then name, in chunks (millions of lines are never one string)."""
        return self.symbols.system_map(self.word)

    def as_dict(self) -> dict[str, object]:
        return {"count": len(self.symbols), "kaslr_offset": self.kaslr_offset if self.kaslr_known else None,
                "kaslr_from": self.kaslr_source or None, "method": self.method, "offset": self.offset,
                "layers": [layer.as_dict() for layer in self.layers], "word_size": self.word, "detail": self.detail}


def symbols_from_dump(buf: Buffer, path: str) -> SymbolTable:
    """(address, type, name) of every kallsyms symbol in a crash dump, KASLR applied."""
    return read_dump(buf, path).symbols


def find_symbols(path: str | os.PathLike[str]) -> Kallsyms:
    """The kernel's symbol table decoded from kallsyms, and how it was found.

    A crash dump is read through VMCOREINFO (addresses of the crashed kernel, KASLR offset known)
    or, without it, searched by the tables' shape; any other input is peeled (compressed file,
    bzImage, zboot, arm64 Image, ELF) and the whole kernel image searched.
    Raises NotFound (no kallsyms table), Damaged (one that does not decode) or InputError.
    """
    with pipeline.open_kernel(path) as kernel:
        if kernel.memory is not None:
            return symbols_in_memory(kernel.memory, kernel.path, kernel.source)
        assert kernel.image is not None
        return locate_in_image(kernel.image, kernel.path, kernel.layers, kernel.elf)


def read_dump(buf: Buffer, path: str) -> Kallsyms:
    """The dump's kallsyms through VMCOREINFO and its KASLR offset; NotFound or Damaged (never NotMine)."""
    try:
        mem = open_dump(buf)
    except NotMine:
        raise NotFound(f"not a crash dump (ELF core, kdump-compressed, flattened or LiME); "
                       f"reading kallsyms {_NEEDS}", path=path) from None
    return read_memory(mem, path)


def read_memory(mem: PhysicalMemory, path: str) -> Kallsyms:
    """kallsyms through VMCOREINFO only (callers that need the KASLR offset); NotFound without it."""
    info = mem.info.vmcoreinfo
    if not info:
        raise NotFound(f"the dump has no VMCOREINFO; reading kallsyms {_NEEDS}", path=path)
    if not _names_tables(info):
        raise NotFound(f"VMCOREINFO has no SYMBOL(kallsyms_*) entries; reading kallsyms {_NEEDS}", path=path)
    layer = Layer(mem.info.format, 0, 0, "kallsyms through VMCOREINFO SYMBOL(kallsyms_*)")
    reader = _Reader(mem, info, path)
    return Kallsyms(reader.symbols(), _hex(info, "KERNELOFFSET", path, default=0), layers=(*mem.info.outer, layer),
                    word=reader.word)


def symbols_in_memory(mem: PhysicalMemory, path: str, dump_bytes: Buffer | None = None) -> Kallsyms:
    """Through VMCOREINFO when it names the tables, else by locating them in physical memory
    (`dump_bytes`, the dump's file, gives its notes: QEMU's CR3 places a 7.x table)."""
    info = mem.info.vmcoreinfo
    kaslr = _hex(info, "KERNELOFFSET", path) if "KERNELOFFSET" in info else None
    if not _names_tables(info):
        return locate_in_memory(mem, path, kaslr, dump_bytes)
    try:
        memory_translation(mem, path)
    except NotFound as unplaced:  # no rule for this machine: the tables may still be found by shape
        try:
            return locate_in_memory(mem, path, kaslr, dump_bytes)
        except NotFound:
            raise unplaced from None
    return read_memory(mem, path)


def _names_tables(info: dict[str, str]) -> bool:
    """VMCOREINFO gives every kallsyms table (6.0+)."""
    return all(f"SYMBOL({name})" in info for name in _REQUIRED) and bool(
        {"SYMBOL(kallsyms_offsets)", "SYMBOL(kallsyms_addresses)"} & info.keys())


def locate_in_memory(mem: PhysicalMemory, path: str, kaslr_offset: int | None = None,
                     dump_bytes: Buffer | None = None) -> Kallsyms:
    """kallsyms found by shape in a dump's physical memory (the kernel image is contiguous there)."""
    damage: Damaged | None = None
    for lo, hi in mem.ranges():
        hit = mem.find(DIGIT_TOKENS, lo, hi)
        while hit != -1:
            if _token_table_near(mem, hit, lo):
                start = max(lo, (hit - _WINDOW_BEFORE) & ~0xFFF)
                window = mem.read_some(start, min(hi, hit + _WINDOW_AFTER) - start)
                try:
                    found = kallsyms_locate.locate(window, path, hit - start, hit - start + len(DIGIT_TOKENS))
                except NotFound:
                    pass
                except Damaged as exc:
                    damage = damage or exc
                else:
                    if found.place_relative_at is not None:
                        found = _placed_in_memory(found, mem, start, path, dump_bytes)
                    layer = Layer("physical memory", start, len(window), "kernel image around the kallsyms tables")
                    source = "vmcoreinfo"
                    if kaslr_offset is None:
                        kaslr_offset, source = x86_64_kaslr_offset(window, found.symbols), "config"
                    return _from_located(found, kaslr_offset, (*mem.info.outer, layer), source)
            hit = mem.find(DIGIT_TOKENS, hit + 1, hi)
    if damage is not None:
        raise damage
    why = "no VMCOREINFO" if not mem.info.vmcoreinfo else "VMCOREINFO has no SYMBOL(kallsyms_*) entries"
    raise NotFound(f"no kallsyms table found in the dump's memory ({why}; "
                   f"was the kernel built with CONFIG_KALLSYMS?)", path=path)


def _placed_in_memory(found: kallsyms_locate.Located, mem: PhysicalMemory, start: int, path: str,
                      dump_bytes: Buffer | None) -> kallsyms_locate.Located:
    """A 7.x place-relative table found at physical `start` + its offset, placed at its virtual
    address: through what VMCOREINFO says of the kernel image's mapping (phys_base,
    kimage_voffset), else through the page tables of QEMU's CR3 (x86_64)."""
    assert found.place_relative_at is not None
    paddr = start + found.place_relative_at
    word = kernel_words(mem.info.platform)[0]
    try:
        return found.placed(paddr + memory_translation(mem, path).delta, word)
    except NotFound:
        pass
    tops = paging_x86_64.qemu_cr3_tables(pagewalk.dump_notes(mem, dump_bytes)) if dump_bytes is not None else []
    vaddr = paging_x86_64.image_vaddr(PageTables(mem, tops[0]), paddr) if tops else None
    if vaddr is None:
        raise NotFound(f"kallsyms at physical {paddr:#x} has place-relative offsets (the 7.x layout): symbol "
                       "addresses need the kernel image's virtual address, which the dump does not give "
                       "(no VMCOREINFO that places the kernel image, no QEMU CR3 that maps it)", path=path)
    return found.placed(vaddr, word)


def _token_table_near(mem: PhysicalMemory, hit: int, lo: int) -> bool:
    """Cheap check before reading a big window: a whole token table and index around `hit`."""
    start = max(lo, hit - _PROBE)
    data = mem.read_some(start, hit - start + _PROBE)
    return next(kallsyms_locate.token_tables(data, hit - start, hit - start + len(DIGIT_TOKENS)), None) is not None


def locate_in_image(buf: Buffer, path: str, layers: tuple[Layer, ...], elf: ElfImage | None = None) -> Kallsyms:
    """kallsyms found by shape in a kernel image (vmlinux, raw or decompressed image)."""
    try:
        found = kallsyms_locate.locate(buf, path)
    except NotFound:
        names = {"elf": "the ELF file", "raw image": "the decompressed kernel"}
        where = names.get(layers[-1].format, f"the {layers[-1].format}") if layers else "the file"
        raise NotFound(f"no kallsyms table found in {where} "
                       f"(was the kernel built with CONFIG_KALLSYMS?)", path=path) from None
    if found.place_relative_at is not None:
        found = _placed_in_image(found, buf, path, elf)
    if found.relative_base == 0 and found.relative_base_at is not None:
        if elf is not None:
            base = _relocated_word(elf, found.relative_base_at)
        else:
            base = _raw_relocated_word(buf, found.relative_base_at, ">" if found.big_endian else "<", found.word)
        if base is not None:
            found = found.rebased(base)
    return _from_located(found, None, layers)


def _placed_in_image(found: kallsyms_locate.Located, buf: Buffer, path: str,
                     elf: ElfImage | None) -> kallsyms_locate.Located:
    """A 7.x place-relative table at the link-time address of kallsyms_offsets, which the ELF file
    (a vmlinux, or the ELF a bzImage decompresses to) gives; a raw image does not."""
    assert found.place_relative_at is not None
    if elf is None and bytes(buf[:4]) == ELF_MAGIC:
        try:
            elf = ElfImage(buf)
        except CorruptElf:
            elf = None
    vaddr = None
    if elf is not None:
        try:
            vaddr = elf.vaddr_of(found.place_relative_at)
        except CorruptElf:
            vaddr = None
    if vaddr is None or elf is None:
        raise NotFound(f"kallsyms at {found.names_at:#x} has place-relative offsets (the 7.x layout): "
                       "symbol addresses need the tables' virtual address, which a raw image does not "
                       "give; give the vmlinux (or a crash dump with VMCOREINFO)", path=path)
    return found.placed(vaddr, elf.bits // 8)


@dataclass(frozen=True)
class _RawRelocs:
    """Where a raw 64-bit image of a relocatable kernel starts (its _text) and its RELA types."""

    endian: str
    starts: tuple[int, ...]
    relative: int  # R_*_RELATIVE: the value is the addend
    absolute: int  # R_*_64 against a symbol: kallsyms writes `_text + X`, and the image starts at _text


# arm64 _text = KIMAGE_VADDR = _PAGE_END(VA_BITS_MIN) + MODULES_VSIZE (128 MiB up to 6.1, 2 GiB after);
# s390's decompressed image starts at _text = 0x100000.
_RAW_RELOCS = (
    _RawRelocs("<", tuple((-(1 << (bits - 1)) + size) & (1 << 64) - 1 for bits in (48, 39, 47, 42, 36, 52)
                          for size in (128 << 20, 2 << 30)), 1027, 257),
    _RawRelocs(">", (0x100000,), 12, 22),
)


def _raw_relocated_word(buf: Buffer, offset: int, endian: str, word: int) -> int | None:
    """The value of the word at `offset` of a raw image, from the image's own .rela.dyn.

    A relocatable arm64 or s390 kernel links with --no-apply-dynamic-relocs: the word holds 0 and
    the value sits in a RELA entry inside the image, keyed by its link address (_text + offset).
    """
    for relocs in _RAW_RELOCS:
        if relocs.endian != endian or word != 8:
            continue
        for start in relocs.starts:
            key = struct.pack(f"{endian}Q", start + offset)
            at = buf.find(key)
            while at != -1 and at + 24 <= len(buf):
                fields: tuple[int, int] = struct.unpack_from(f"{endian}Qq", buf, at + 8)
                kind, symbol, addend = fields[0] & 0xFFFFFFFF, fields[0] >> 32, fields[1]
                if at % 8 == 0 and kind == relocs.relative and symbol == 0:
                    return addend & (1 << 64) - 1
                if at % 8 == 0 and kind == relocs.absolute and symbol != 0:
                    return (start + addend) & (1 << 64) - 1
                at = buf.find(key, at + 1)
    return None


def _relocated_word(elf: ElfImage, file_offset: int) -> int | None:
    """S + A of the RELA entry that relocates the word at file_offset, if any.

    A relocatable vmlinux linked with --no-apply-dynamic-relocs (s390, arm64) keeps 0 in the word
    and the value only in .rela.dyn (RELATIVE: the addend; s390 R_390_64: _text + addend).
    """
    try:
        sections = elf.sections()
        vaddr = elf.vaddr_of(file_offset)
        if vaddr is None:
            return None
        wide = elf.bits == 64
        entry = struct.Struct(f"{elf.endian}QQq" if wide else f"{elf.endian}IIi")
        wanted = struct.pack(f"{elf.endian}{'Q' if wide else 'I'}", vaddr)
        for rela in (s for s in sections if s.type == SHT_RELA and s.entsize == entry.size):
            data = elf.section_bytes(rela)
            at = data.find(wanted)
            while at != -1 and at % entry.size:
                at = data.find(wanted, at + 1)
            if at != -1:
                info: int = entry.unpack_from(data, at)[1]
                addend: int = entry.unpack_from(data, at)[2]
                index = info >> 32 if wide else info >> 8
                return addend + (_symbol_value(elf, sections[rela.link], index) if index else 0)
    except (CorruptElf, IndexError, struct.error):
        return None
    return None


def _symbol_value(elf: ElfImage, symtab: Section, index: int) -> int:
    """st_value of symbol `index` in a (dynamic) symbol table."""
    if elf.bits == 64:
        value: int = struct.unpack_from(f"{elf.endian}8xQ", elf.buf, symtab.offset + 24 * index)[0]
    else:
        value = struct.unpack_from(f"{elf.endian}4xI", elf.buf, symtab.offset + 16 * index)[0]
    return value


def _from_located(found: kallsyms_locate.Located, kaslr_offset: int | None, layers: tuple[Layer, ...],
                  kaslr_source: str = "") -> Kallsyms:
    return Kallsyms(found.symbols, kaslr_offset or 0, "located", found.names_at, layers, found.word, found.describe(),
                    kaslr_known=kaslr_offset is not None, kaslr_source=kaslr_source if kaslr_offset is not None else "")


def x86_64_kaslr_offset(image: Buffer, symbols: SymbolTable) -> int | None:
    """The KASLR offset of an x86_64 kernel without VMCOREINFO: the running `_text` minus the
    link-time one, __START_KERNEL_map + ALIGN(CONFIG_PHYSICAL_START, CONFIG_PHYSICAL_ALIGN), read
    from the kernel's own .config (CONFIG_IKCONFIG) when it lies in `image`."""

    span = locate.config_by_markers(image)
    running = symbols.address_of("_text")
    if span is None or running is None:
        return None
    try:
        text = locate.gunzip_config(bytes(image[span.start : span.end]), span.start)
    except Damaged:
        return None
    config = dict(re.findall(rb"^(CONFIG_\w+)=(\S+)$", text, re.M))
    if config.get(b"CONFIG_X86_64") != b"y" or b"CONFIG_PHYSICAL_START" not in config:
        return None
    start, align = int(config[b"CONFIG_PHYSICAL_START"], 0), int(config.get(b"CONFIG_PHYSICAL_ALIGN", b"0x200000"), 0)
    return running - (_START_KERNEL_MAP + -(-start // align) * align)


def kernel_words(platform: Platform | None) -> tuple[int, str]:
    """(bytes in a word, struct byte order) of the dumped kernel: what the dump's header says (ELF
    class and data, kdump utsname), else 64-bit little-endian (x86_64, arm64: what VMCOREINFO alone
    can place)."""
    if platform is None or platform.bits not in (32, 64) or platform.endian not in ("little", "big"):
        return 8, "<"
    return platform.bits // 8, "<" if platform.endian == "little" else ">"


class _Reader:
    """Reads the kallsyms tables VMCOREINFO points at from physical memory, in the kernel's word
    size and byte order."""

    def __init__(self, mem: PhysicalMemory, info: dict[str, str], path: str) -> None:
        self._mem = mem
        self._info = info
        self._path = path
        self.word, self._endian = kernel_words(mem.info.platform)
        self._to_phys = memory_translation(mem, path)

    def symbols(self) -> SymbolTable:
        count = self._u32("kallsyms_num_syms")
        if not 0 < count <= MAX_SYMS:
            raise self._misplaced() or Damaged(f"kallsyms_num_syms is {count}, not in 1..{MAX_SYMS}", path=self._path)
        try:
            tokens = self._tokens()
        except Damaged as exc:
            raise self._misplaced() or exc from None
        names, _ = decode_names(self._names(), count, tokens, self._path)
        return SymbolTable(self._addresses(count), names)

    def _misplaced(self) -> NotFound | None:
        """Where the kernel image's place was assumed (32-bit linear map), tables that do not decode
        mean the assumption is wrong: say so rather than call the dump damaged."""
        if not self._to_phys.assumed:
            return None
        return NotFound(f"kallsyms not found where {self._to_phys.assumed} put it; the dump does not say where "
                        "the kernel image lies in physical memory", path=self._path)

    def _addr(self, name: str) -> int:
        return _hex(self._info, f"SYMBOL({name})", self._path)

    def _read(self, name: str, size: int) -> bytes:
        vaddr = self._addr(name)
        try:
            return self._mem.read(self._to_phys(vaddr), size)
        except Damaged as exc:
            raise self._misplaced() or Damaged(f"{name} at {vaddr:#x} cannot be read: {exc}", path=self._path) from None

    def _u32(self, name: str) -> int:
        value: int = struct.unpack(f"{self._endian}I", self._read(name, 4))[0]
        return value

    def _tokens(self) -> list[bytes]:
        index = struct.unpack(f"{self._endian}256H", self._read("kallsyms_token_index", 512))
        span = self._addr("kallsyms_token_index") - self._addr("kallsyms_token_table")
        size = span if 0 < span <= TOKEN_TABLE_MAX else TOKEN_TABLE_MAX
        vaddr = self._addr("kallsyms_token_table")
        table = self._mem.read_some(self._to_phys(vaddr), size)
        return kallsyms_locate.decode_tokens(table, index, self._path)

    def _names(self) -> bytes:
        vaddr = self._addr("kallsyms_names")
        span = self._addr("kallsyms_token_table") - vaddr  # the tables between: markers, seqs
        size = span if 0 < span <= MAX_NAMES else MAX_NAMES
        return self._mem.read_some(self._to_phys(vaddr), size)

    def _addresses(self, count: int) -> array[int]:
        word, endian = self.word, self._endian
        if "SYMBOL(kallsyms_offsets)" not in self._info:
            words = read_array(self._read("kallsyms_addresses", word * count), 0, count, "Q" if word == 8 else "I",
                               endian)
            return array("Q", words)
        offsets = read_array(self._read("kallsyms_offsets", 4 * count), 0, count, "i", endian)
        if "SYMBOL(kallsyms_relative_base)" not in self._info:  # 7.x: each offset relative to itself
            return place_relative_addresses(offsets, self._addr("kallsyms_offsets"), word)
        base: int = struct.unpack(f"{endian}{'Q' if word == 8 else 'I'}", self._read("kallsyms_relative_base", word))[0]
        return relative_addresses(offsets, base, word)


_PPC64_PAGE_OFFSET = 0xC000000000000000  # book3s and book3e: the kernel image is in the linear map
_VMSPLIT_ALIGN = 0x10000000  # a 32-bit PAGE_OFFSET (VMSPLIT_1G ... 3G_OPT) is a multiple of 256 MiB
_PHYS_OFFSET_ALIGN = 2 << 20  # arm's PHYS_OFFSET is 2 MiB aligned (ARM_PATCH_PHYS_VIRT); ppc32's is 0


def memory_translation(mem: PhysicalMemory, path: str) -> _Translate:
    """__pa_symbol for the dumped kernel: symbol_translation with what the dump itself says."""
    lowest = next(iter(mem.ranges()), None)
    return symbol_translation(mem.info.vmcoreinfo, path, mem.info.platform, lowest[0] if lowest else None)


def symbol_translation(info: dict[str, str], path: str, platform: Platform | None = None,
                       lowest_ram: int | None = None) -> _Translate:
    """__pa_symbol for the dump's architecture, from VMCOREINFO and the dumped machine (the kernel's
    arch/*/kernel/vmcore_info.c or machine_kexec.c says what each one exports)."""
    if "NUMBER(phys_base)" in info:  # x86_64
        phys_base = _number(info, "NUMBER(phys_base)", path)
        return _Translate(_START_KERNEL_MAP - phys_base, _START_KERNEL_MAP)
    if "NUMBER(kimage_voffset)" in info:  # arm64
        return _Translate(_hex(info, "NUMBER(kimage_voffset)", path), 0)
    arch, bits = (platform.arch, platform.bits) if platform is not None else ("", None)
    if arch == "s390":
        return _s390_translation(info, path)
    if arch == "powerpc" and bits == 64:
        return _Translate(_PPC64_PAGE_OFFSET, _PPC64_PAGE_OFFSET)
    if arch in ("arm", "powerpc") and bits == 32 and lowest_ram is not None and "SYMBOL(_stext)" in info:
        return _linear_32_translation(info, path, lowest_ram)
    machine = f"this {arch} {bits}-bit" if arch else "this unknown machine's"
    raise NotFound(f"cannot place the kernel image of {machine} dump in physical memory: VMCOREINFO says "
                   "neither phys_base (x86_64) nor kimage_voffset (arm64), and no rule for it is known", path=path)


def _s390_translation(info: dict[str, str], path: str) -> _Translate:
    """s390 up to 6.9 maps the kernel 1:1 (KERNELOFFSET moves it physically and virtually alike);
    6.10+ gives the image its own virtual place: __kernel_pa(x) = x - KERNELOFFSET + KERNELOFFPHYS."""
    if "KERNELOFFPHYS" not in info:
        return _Translate(0, 0)
    virtual = _hex(info, "KERNELOFFSET", path)
    return _Translate(virtual - _hex(info, "KERNELOFFPHYS", path), virtual)


def _linear_32_translation(info: dict[str, str], path: str, lowest_ram: int) -> _Translate:
    """32-bit arm and powerpc export neither PAGE_OFFSET nor PHYS_OFFSET: the kernel image lies in
    the linear map, so __pa(x) = x - PAGE_OFFSET + PHYS_OFFSET, with PAGE_OFFSET the 256 MiB
    boundary below _stext (less a ppc32 KASLR offset) and PHYS_OFFSET the dump's lowest address
    (as makedumpfile assumes for arm) rounded down to 2 MiB, in case the dump left its first pages
    out. The reader checks that the tables decode there."""
    stext = _hex(info, "SYMBOL(_stext)", path) - _hex(info, "KERNELOFFSET", path, default=0)
    page_offset = stext & ~(_VMSPLIT_ALIGN - 1)
    phys_offset = lowest_ram & ~(_PHYS_OFFSET_ALIGN - 1)
    assumed = f"PAGE_OFFSET {page_offset:#x} and PHYS_OFFSET {phys_offset:#x} (from the lowest address in the dump)"
    return _Translate(page_offset - phys_offset, page_offset, assumed)


@dataclass(frozen=True)
class _Translate:
    delta: int  # physical = virtual - delta
    lowest: int  # virtual addresses below this are not in the kernel image
    assumed: str = ""  # what the translation assumes where the dump does not say it

    def __call__(self, vaddr: int) -> int:
        paddr = vaddr - self.delta
        if vaddr < self.lowest or paddr < 0:
            raise Damaged(f"kernel symbol address {vaddr:#x} is not in the kernel image")
        return paddr


def _number(info: dict[str, str], key: str, path: str) -> int:
    try:
        return int(info[key], 0)
    except ValueError:
        raise Damaged(f"VMCOREINFO {key}={info[key]!r} is not a number", path=path) from None


def _hex(info: dict[str, str], key: str, path: str, default: int | None = None) -> int:
    if key not in info and default is not None:
        return default
    try:
        return int(info[key], 16)
    except ValueError:
        raise Damaged(f"VMCOREINFO {key}={info[key]!r} is not hexadecimal", path=path) from None
