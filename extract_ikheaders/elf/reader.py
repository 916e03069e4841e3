"""Just enough ELF, read straight from a buffer (usually an mmap), for any class and byte order.

The symbol lookup never builds an object per symbol: it finds the wanted names in the string
table, then finds their string-table offsets among the symbol entries with bytes.find. A 631 MB
debug vmlinux with 130k symbols is answered in milliseconds. Everything read from the file is
bounds-checked; a malformed file raises CorruptElf, which callers treat as "use the raw bytes".
"""

from __future__ import annotations

import enum
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from ..buffer import Buffer
from ..errors import ParserSignal

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF  # e_phnum escape: the real count is in section header 0's sh_info
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHF_ALLOC = 0x2
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
STB_GLOBAL = 1
_NAME_MAX = 256  # section names are short; a longer one is read only this far
_NAME_COPIES_MAX = 16  # more copies of a wanted name in .strtab: one pass over the symbols instead
_STRAY_HITS_MAX = 4096  # misaligned matches of a name offset in .symtab before giving up on bytes.find

# e_machine -> (the name an ELF header calls it, the kernel's architecture name): the one table
# describe() and arch.py read.
MACHINES = {2: ("sparc", "sparc"), 3: ("i386", "x86"), 8: ("mips", "mips"), 15: ("parisc", "parisc"),
            18: ("sparc32plus", "sparc"), 20: ("powerpc", "powerpc"), 21: ("powerpc64", "powerpc"),
            22: ("s390", "s390"), 40: ("arm", "arm"), 42: ("sh", "sh"), 43: ("sparcv9", "sparc"), 50: ("ia64", "ia64"),
            62: ("x86_64", "x86"), 183: ("arm64", "arm64"), 243: ("riscv", "riscv"), 258: ("loongarch", "loongarch")}


class ElfType(enum.IntEnum):
    REL = 1
    EXEC = 2
    DYN = 3
    CORE = 4


class CorruptElf(ParserSignal):
    """The ELF structures are inconsistent with the file; the raw bytes may still be useful."""


class _TooManyMatches(ParserSignal):
    """find_symbols' fast path would take quadratic time on these tables."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    shndx: int
    bind: int


@dataclass(frozen=True)
class Note:
    name: str
    type: int
    desc: bytes


@dataclass(frozen=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


class SegmentTable:
    """Program headers in columns of 64-bit integers (48 bytes each), a Segment made on access."""

    def __init__(self) -> None:
        self.type, self.offset, self.vaddr = array("Q"), array("Q"), array("Q")
        self.paddr, self.filesz, self.memsz = array("Q"), array("Q"), array("Q")

    def append(self, p_type: int, offset: int, vaddr: int, paddr: int, filesz: int, memsz: int) -> None:
        for column, value in ((self.type, p_type), (self.offset, offset), (self.vaddr, vaddr),
                              (self.paddr, paddr), (self.filesz, filesz), (self.memsz, memsz)):
            column.append(value)

    def __len__(self) -> int:
        return len(self.type)

    def __getitem__(self, i: int) -> Segment:
        return Segment(self.type[i], self.offset[i], self.vaddr[i], self.paddr[i], self.filesz[i], self.memsz[i])

    def indices_of(self, p_type: int) -> Iterator[int]:
        return (i for i, t in enumerate(self.type) if t == p_type)


class ElfImage:
    """An ELF file in a buffer. Headers are parsed on construction; the rest on demand."""

    def __init__(self, buf: Buffer) -> None:
        if len(buf) < 52 or bytes(buf[:4]) != ELF_MAGIC:
            raise CorruptElf("not an ELF file")
        ei_class, ei_data = buf[4], buf[5]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            raise CorruptElf(f"unknown ELF class/data {ei_class}/{ei_data}")
        self.buf = buf
        self.bits = 64 if ei_class == 2 else 32
        self.endian = "<" if ei_data == 1 else ">"
        word = "Q" if self.bits == 64 else "I"
        fmt = f"{self.endian}HHI{word}{word}{word}IHHHHHH"
        fields = self._unpack(fmt, 16)
        (self.type, self.machine, _, self.entry, self.phoff, self.shoff, _, _, self.phentsize,
         self.phnum, self.shentsize, self.shnum, self.shstrndx) = fields
        self._sections: tuple[Section, ...] | None = None

    @property
    def machine_name(self) -> str:
        known = MACHINES.get(self.machine)
        return known[0] if known else f"machine {self.machine}"

    def describe(self) -> str:
        kind = ElfType(self.type).name if self.type in {t.value for t in ElfType} else str(self.type)
        return f"ET_{kind} {self.machine_name} {self.bits}-bit {self.byte_order}-endian"

    @property
    def byte_order(self) -> str:
        return "little" if self.endian == "<" else "big"

    def _unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.buf):
            raise CorruptElf(f"structure at {offset:#x} runs past the end of the file")
        return struct.unpack(fmt, self.buf[offset : offset + size])

    def _check_span(self, what: str, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.buf):
            raise CorruptElf(f"{what} ({offset:#x}+{size:#x}) lies outside the file ({len(self.buf):#x} bytes)")

    # Sections ------------------------------------------------------------------------------

    def sections(self) -> tuple[Section, ...]:
        if self._sections is None:
            self._sections = self._read_sections()
        return self._sections

    def _read_sections(self) -> tuple[Section, ...]:
        if self.shoff == 0 or self.shnum == 0:
            return ()
        entsize = 64 if self.bits == 64 else 40
        if self.shentsize < entsize:
            raise CorruptElf(f"section header entry size {self.shentsize} is too small")
        self._check_span("section header table", self.shoff, self.shnum * self.shentsize)
        word = "Q" if self.bits == 64 else "I"
        fmt = f"{self.endian}II{word}{word}{word}{word}II{word}{word}"
        raw = [self._unpack(fmt, self.shoff + i * self.shentsize) for i in range(self.shnum)]
        names = self._section_names(raw)
        return tuple(Section(i, names[i], r[1], r[2], r[3], r[4], r[5], r[6], r[9]) for i, r in enumerate(raw))

    def _section_names(self, raw: list[tuple[int, ...]]) -> list[str]:
        if self.shstrndx >= len(raw):
            return [""] * len(raw)
        str_off, str_size = raw[self.shstrndx][4], raw[self.shstrndx][5]
        self._check_span("section name table", str_off, str_size)
        return [self._name_at(str_off, str_size, r[0]) for r in raw]

    def _name_at(self, table: int, size: int, offset: int) -> str:
        """The NUL-terminated name at `offset` in a string table, read in place (a damaged e_shstrndx
        may point at a section of hundreds of MB); an unterminated name ends with the table."""
        if offset >= size:
            return ""
        start, end = table + offset, table + size
        nul = self.buf.find(b"\0", start, min(end, start + _NAME_MAX))
        return bytes(self.buf[start : nul if nul != -1 else min(end, start + _NAME_MAX)]).decode("ascii", "replace")

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections() if s.name == name), None)

    def section_bytes(self, section: Section) -> bytes:
        if section.type == SHT_NOBITS:
            return b""
        self._check_span(f"section {section.name}", section.offset, section.size)
        return bytes(self.buf[section.offset : section.offset + section.size])

    def loaded_ranges(self) -> list[tuple[int, int]]:
        """File ranges that are loaded into memory (SHF_ALLOC sections with data), merged.

        The archive lives in .rodata; searching only here skips a debug vmlinux's ~500 MB of
        DWARF. Without section headers, the PT_LOAD segments; without those, the whole file.
        """
        spans = [(s.offset, s.offset + s.size) for s in self.sections()
                 if s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.size]
        if not spans:
            spans = [(p.offset, p.offset + p.filesz) for p in self.segments() if p.type == 1 and p.filesz]
        spans = [(max(0, a), min(b, len(self.buf))) for a, b in spans if a < len(self.buf)]
        if not spans:
            return [(0, len(self.buf))]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def vaddr_of(self, offset: int) -> int | None:
        """The link-time virtual address of file offset `offset`: from the SHF_ALLOC section that
        holds it, else the PT_LOAD segment (a file without section headers); None if neither does."""
        for s in self.sections():
            if s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.offset <= offset < s.offset + s.size:
                return s.addr + offset - s.offset
        for p in self.segments():
            if p.type == PT_LOAD and p.offset <= offset < p.offset + p.filesz:
                return p.vaddr + offset - p.offset
        return None

    # Segments ------------------------------------------------------------------------------

    def program_header_count(self) -> int:
        """e_phnum, or for cores with 65535+ segments (QEMU, makedumpfile) section 0's sh_info."""
        if self.phnum != PN_XNUM or self.shoff == 0:
            return self.phnum
        word = "Q" if self.bits == 64 else "I"
        return self._unpack(f"{self.endian}II{word}{word}{word}{word}II", self.shoff)[7]

    def segments(self) -> tuple[Segment, ...]:
        table = self.segment_table()
        return tuple(table[i] for i in range(len(table)))

    def segment_table(self) -> SegmentTable:
        """The program headers as columns: a core may have a million of them (QEMU writes one per
        RAM block, a hostile one can fill 64 MiB with them), which as objects took 0.9 GB."""
        count = self.program_header_count()
        table = SegmentTable()
        if self.phoff == 0 or count == 0:
            return table
        entry = f"{self.endian}IIQQQQQQ" if self.bits == 64 else f"{self.endian}IIIIIIII"
        if self.phentsize < struct.calcsize(entry):
            raise CorruptElf(f"program header entry size {self.phentsize} is too small")
        self._check_span("program header table", self.phoff, count * self.phentsize)
        raw = bytes(self.buf[self.phoff : self.phoff + count * self.phentsize])
        if self.phentsize != struct.calcsize(entry):  # padded entries: keep each one's first bytes
            raw = b"".join(raw[at : at + struct.calcsize(entry)] for at in range(0, len(raw), self.phentsize))
        for fields in struct.iter_unpack(entry, raw):
            if self.bits == 64:
                p_type, _, off, vaddr, paddr, filesz, memsz, _ = fields
            else:
                p_type, off, vaddr, paddr, filesz, memsz, _, _ = fields
            table.append(p_type, off, vaddr, paddr, filesz, memsz)
        return table

    def notes(self, max_segment: int = 1 << 24) -> tuple[Note, ...]:
        """Every note in the PT_NOTE segments (4-byte aligned, as in Linux cores); segments larger
        than `max_segment` are skipped rather than read into memory."""
        notes: list[Note] = []
        table = self.segment_table()
        for seg in (table[i] for i in table.indices_of(PT_NOTE)):
            if seg.filesz <= max_segment:
                self._check_span("note segment", seg.offset, seg.filesz)
                data = bytes(self.buf[seg.offset : seg.offset + seg.filesz])
                notes.extend(parse_notes(data, self.endian, strict=True))
        return tuple(notes)

    # Symbols -------------------------------------------------------------------------------

    def has_symbols(self) -> bool:
        return any(s.type == SHT_SYMTAB and s.size for s in self.sections())

    def find_symbols(self, *names: str) -> dict[str, Symbol]:
        """The named symbols from .symtab (global binding preferred), without parsing the rest."""
        symtab = next((s for s in self.sections() if s.type == SHT_SYMTAB), None)
        if symtab is None:
            return {}
        entsize = 24 if self.bits == 64 else 16
        if symtab.entsize != entsize or symtab.size % entsize or symtab.link >= len(self.sections()):
            raise CorruptElf(f"malformed symbol table (entry size {symtab.entsize}, size {symtab.size:#x})")
        strtab = self.sections()[symtab.link]
        self._check_span("symbol table", symtab.offset, symtab.size)
        self._check_span("string table", strtab.offset, strtab.size)
        found: dict[str, Symbol] = {}
        for name in names:
            try:
                candidates = [s for off in self._string_offsets(strtab, name)
                              for s in self._symbols_named(symtab, off, name)]
            except _TooManyMatches:
                # Only a damaged or hostile table gets here; searching per copy would be quadratic.
                candidates = self._symbols_by_scan(symtab, strtab, name)
            if candidates:
                found[name] = max(candidates, key=lambda s: (s.bind == STB_GLOBAL, s.shndx != SHN_UNDEF))
        return found

    def _string_offsets(self, strtab: Section, name: str) -> list[int]:
        """Every offset in the string table at which `name` can be read (tail merging included)."""
        needle = name.encode() + b"\0"
        start, end = strtab.offset, strtab.offset + strtab.size
        offsets: list[int] = []
        pos = self.buf.find(needle, start, end)
        while pos != -1:
            if len(offsets) == _NAME_COPIES_MAX:
                raise _TooManyMatches("too many candidates for the fast path")
            offsets.append(pos - start)
            pos = self.buf.find(needle, pos + 1, end)
        return offsets

    def _symbols_named(self, symtab: Section, name_offset: int, name: str) -> list[Symbol]:
        entsize = symtab.entsize
        needle = struct.pack(f"{self.endian}I", name_offset)
        start, end = symtab.offset, symtab.offset + symtab.size
        symbols = []
        stray = 0
        pos = self.buf.find(needle, start, end)
        while pos != -1:
            if (pos - start) % entsize == 0:
                symbols.append(self._symbol_at(pos, name))
            else:
                stray += 1
                if stray > _STRAY_HITS_MAX:
                    raise _TooManyMatches("too many candidates for the fast path")
            pos = self.buf.find(needle, pos + 1, end)
        return symbols

    def _symbols_by_scan(self, symtab: Section, strtab: Section, name: str) -> list[Symbol]:
        """The slow, linear way: every entry's st_name compared with `name` (bounded time whatever the tables hold)."""
        needle = name.encode() + b"\0"
        entsize = symtab.entsize
        fmt = f"{self.endian}I{entsize - 4}x"
        block = entsize * 4096
        symbols = []
        for base in range(symtab.offset, symtab.offset + symtab.size, block):
            data = bytes(self.buf[base : min(base + block, symtab.offset + symtab.size)])
            for i, (st_name,) in enumerate(struct.iter_unpack(fmt, data)):
                at = strtab.offset + st_name
                if st_name + len(needle) <= strtab.size and self.buf[at : at + len(needle)] == needle:
                    symbols.append(self._symbol_at(base + i * entsize, name))
        return symbols

    def _symbol_at(self, at: int, name: str) -> Symbol:
        if self.bits == 64:
            _, info, _, shndx, value, size = self._unpack(f"{self.endian}IBBHQQ", at)
        else:
            _, value, size, info, _, shndx = self._unpack(f"{self.endian}IIIBBH", at)
        return Symbol(name, value, size, shndx, info >> 4)

    def symbol_file_offset(self, symbol: Symbol) -> int:
        """Where a defined symbol's bytes sit in the file (ET_REL: value is section-relative)."""
        if symbol.shndx == SHN_UNDEF or symbol.shndx >= SHN_LORESERVE:
            raise CorruptElf(f"symbol {symbol.name} is not defined in a section")
        if symbol.shndx >= len(self.sections()):
            raise CorruptElf(f"symbol {symbol.name} names section {symbol.shndx}, which does not exist")
        section = self.sections()[symbol.shndx]
        relative = symbol.value if self.type == ElfType.REL else symbol.value - section.addr
        if not 0 <= relative <= section.size:
            raise CorruptElf(f"symbol {symbol.name} ({symbol.value:#x}) lies outside section {section.name}")
        if section.type == SHT_NOBITS:
            raise CorruptElf(f"symbol {symbol.name} is in {section.name}, which has no file data")
        self._check_span(f"section {section.name} (holding {symbol.name})", section.offset, section.size)
        return section.offset + relative


def parse_notes(data: bytes, endian: str = "<", *, strict: bool = False) -> list[Note]:
    """ELF notes (4-byte aligned, as Linux writes them in cores and kdump files). A note that runs
    past the data is CorruptElf when `strict`, else where the list stops."""
    notes, pos = [], 0
    while pos + 12 <= len(data):
        namesz, descsz, n_type = struct.unpack_from(f"{endian}III", data, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        if desc_at + descsz > len(data):
            if strict:
                raise CorruptElf(f"note at {pos:#x} in a PT_NOTE segment runs past its end")
            break
        name = data[name_at : name_at + namesz].split(b"\0", 1)[0].decode("ascii", "replace")
        notes.append(Note(name, n_type, data[desc_at : desc_at + descsz]))
        pos = desc_at + ((descsz + 3) & ~3)
    return notes
