"""The kernel's symbol table from a crash dump, decoded from kallsyms through VMCOREINFO.

Linux 6.0+ puts `SYMBOL(kallsyms_*)` entries in VMCOREINFO: the running kernel's addresses (KASLR
applied) of the compressed name stream, the token tables and the address table. They lie in the
kernel image, which is physically contiguous, so each is read at __pa_symbol(addr):
x86_64 `addr - __START_KERNEL_map + phys_base`, arm64 `addr - kimage_voffset`.

The 6.1 format (kernel/kallsyms.c, scripts/kallsyms.c):
- kallsyms_names: per symbol a length (one byte; if its top bit is set, a second byte holds bits
  7-14) followed by that many token indices; the expanded text's first char is the symbol type.
- kallsyms_token_table: 256 NUL-terminated tokens; kallsyms_token_index: 256 u16 offsets into it.
- CONFIG_KALLSYMS_BASE_RELATIVE: kallsyms_offsets (s32) and kallsyms_relative_base (u64, relocated);
  address = base + (u32)offset, or with CONFIG_KALLSYMS_ABSOLUTE_PERCPU an offset >= 0 is absolute
  and a negative one means base - 1 - offset. Otherwise kallsyms_addresses (u64 each).

Addresses are returned as the crashed kernel had them; `Kallsyms.kaslr_offset` is VMCOREINFO's
KERNELOFFSET (0 when absent).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import Damaged, NotFound, NotMine
from .memory import PhysicalMemory, open_dump
from .xzstream import Buffer

Symbol = tuple[int, str, str]  # (address, type char, name)

MAX_SYMS = 1 << 20  # a 6.x kernel with every option has ~200k; more is not a symbol table
MAX_NAMES = 64 << 20  # bytes of kallsyms_names read at most
_TOKEN_TABLE_MAX = 64 * 1024  # 256 tokens, each a few bytes
_START_KERNEL_MAP = 0xFFFFFFFF80000000
_NEEDS = "needs a 6.0+ kernel with CONFIG_KALLSYMS and VMCOREINFO"
_REQUIRED = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index")


@dataclass(frozen=True)
class Kallsyms:
    """A dump's decoded symbol table, in kallsyms order, and the KASLR offset it ran with."""

    symbols: list[Symbol]
    kaslr_offset: int

    def sorted(self) -> list[Symbol]:
        """By address then name, as System.map lists them."""
        return sorted(self.symbols, key=lambda s: (s[0], s[2]))

    def system_map(self) -> str:
        return "".join(format_line(sym) for sym in self.sorted())


def format_line(sym: Symbol) -> str:
    """One System.map line."""
    return f"{sym[0]:016x} {sym[1]} {sym[2]}\n"


def symbols_from_dump(buf: Buffer, path: str) -> list[Symbol]:
    """(address, type, name) of every kallsyms symbol in a crash dump, KASLR applied."""
    return read_dump(buf, path).symbols


def read_dump(buf: Buffer, path: str) -> Kallsyms:
    """The dump's kallsyms and KASLR offset; NotFound or Damaged (never NotMine)."""
    try:
        mem = open_dump(buf)
    except NotMine:
        raise NotFound(f"{path}: not a crash dump (ELF core, kdump-compressed, flattened or LiME); "
                       f"reading kallsyms {_NEEDS}") from None
    return read_memory(mem, path)


def read_memory(mem: PhysicalMemory, path: str) -> Kallsyms:
    info = mem.info.vmcoreinfo
    if not info:
        raise NotFound(f"{path}: the dump has no VMCOREINFO; reading kallsyms {_NEEDS}")
    missing = [name for name in _REQUIRED if f"SYMBOL({name})" not in info]
    if missing or not ({"SYMBOL(kallsyms_offsets)", "SYMBOL(kallsyms_addresses)"} & info.keys()):
        raise NotFound(f"{path}: VMCOREINFO has no SYMBOL(kallsyms_*) entries; reading kallsyms {_NEEDS}")
    return Kallsyms(_Reader(mem, info, path).symbols(), _hex(info, "KERNELOFFSET", path, default=0))


class _Reader:
    """Reads the kallsyms tables VMCOREINFO points at from physical memory."""

    def __init__(self, mem: PhysicalMemory, info: dict[str, str], path: str) -> None:
        self._mem = mem
        self._info = info
        self._path = path
        self._to_phys = _symbol_translation(info, path)

    def symbols(self) -> list[Symbol]:
        count = self._u32("kallsyms_num_syms")
        if not 0 < count <= MAX_SYMS:
            raise Damaged(f"{self._path}: kallsyms_num_syms is {count}, not in 1..{MAX_SYMS}")
        tokens = self._tokens()
        names = decode_names(self._names(), count, tokens, self._path)
        addresses = self._addresses(count)
        return [(addr, typ, name) for addr, (typ, name) in zip(addresses, names, strict=True)]

    def _addr(self, name: str) -> int:
        return _hex(self._info, f"SYMBOL({name})", self._path)

    def _read(self, name: str, size: int) -> bytes:
        vaddr = self._addr(name)
        try:
            return self._mem.read(self._to_phys(vaddr), size)
        except Damaged as exc:
            raise Damaged(f"{self._path}: {name} at {vaddr:#x} cannot be read: {exc}") from None

    def _u32(self, name: str) -> int:
        value: int = struct.unpack("<I", self._read(name, 4))[0]
        return value

    def _tokens(self) -> list[str]:
        index = struct.unpack("<256H", self._read("kallsyms_token_index", 512))
        span = self._addr("kallsyms_token_index") - self._addr("kallsyms_token_table")
        size = span if 0 < span <= _TOKEN_TABLE_MAX else _TOKEN_TABLE_MAX
        vaddr = self._addr("kallsyms_token_table")
        table = self._mem.read_some(self._to_phys(vaddr), size)
        return decode_tokens(table, index, self._path)

    def _names(self) -> bytes:
        vaddr = self._addr("kallsyms_names")
        span = self._addr("kallsyms_token_table") - vaddr  # the tables between: markers, seqs
        size = span if 0 < span <= MAX_NAMES else MAX_NAMES
        return self._mem.read_some(self._to_phys(vaddr), size)

    def _addresses(self, count: int) -> list[int]:
        if "SYMBOL(kallsyms_offsets)" not in self._info:
            return list(struct.unpack(f"<{count}Q", self._read("kallsyms_addresses", 8 * count)))
        if "SYMBOL(kallsyms_relative_base)" not in self._info:
            raise NotFound(f"{self._path}: VMCOREINFO has kallsyms_offsets but no kallsyms_relative_base")
        offsets = struct.unpack(f"<{count}i", self._read("kallsyms_offsets", 4 * count))
        base: int = struct.unpack("<Q", self._read("kallsyms_relative_base", 8))[0]
        return relative_addresses(offsets, base)


def relative_addresses(offsets: tuple[int, ...], base: int) -> list[int]:
    """kallsyms_sym_address() for CONFIG_KALLSYMS_BASE_RELATIVE.

    With CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP) every kernel-image symbol has a negative
    offset, so any negative offset means that mode; without it, offsets are unsigned from base.
    """
    if any(off < 0 for off in offsets):
        return [off if off >= 0 else base - 1 - off for off in offsets]
    return [base + off for off in offsets]


def decode_tokens(table: bytes, index: tuple[int, ...], path: str = "kallsyms") -> list[str]:
    """The 256 tokens: NUL-terminated strings at the offsets kallsyms_token_index gives."""
    tokens = []
    for number, start in enumerate(index):
        end = table.find(b"\0", start)
        if start >= len(table) or end == -1:
            raise Damaged(f"{path}: kallsyms token {number} at offset {start} runs past the token table")
        tokens.append(table[start:end].decode("latin-1"))
    return tokens


def decode_names(data: bytes, count: int, tokens: list[str], path: str = "kallsyms") -> list[tuple[str, str]]:
    """(type, name) of `count` symbols from the kallsyms_names stream (kallsyms_expand_symbol)."""
    out = []
    pos = 0
    for number in range(count):
        if pos >= len(data):
            raise Damaged(f"{path}: kallsyms_names ends at symbol {number} of {count}")
        length = data[pos]
        pos += 1
        if length & 0x80:  # a "big" symbol: the next byte holds bits 7-14
            if pos >= len(data):
                raise Damaged(f"{path}: kallsyms_names ends at symbol {number} of {count}")
            length = (length & 0x7F) | (data[pos] << 7)
            pos += 1
        if length == 0 or pos + length > len(data):
            raise Damaged(f"{path}: kallsyms_names symbol {number} of {count} is broken (length {length})")
        text = "".join(tokens[b] for b in data[pos : pos + length])
        pos += length
        if not text:
            raise Damaged(f"{path}: kallsyms_names symbol {number} of {count} expands to nothing")
        out.append((text[0], text[1:]))
    return out


def _symbol_translation(info: dict[str, str], path: str) -> _Translate:
    """__pa_symbol for the dump's architecture, from VMCOREINFO."""
    if "NUMBER(phys_base)" in info:
        phys_base = _number(info, "NUMBER(phys_base)", path)
        return _Translate(_START_KERNEL_MAP - phys_base, _START_KERNEL_MAP)
    if "NUMBER(kimage_voffset)" in info:
        return _Translate(_hex(info, "NUMBER(kimage_voffset)", path), 0)
    raise NotFound(f"{path}: VMCOREINFO says neither phys_base nor kimage_voffset: "
                   "cannot place the kernel image in physical memory")


@dataclass(frozen=True)
class _Translate:
    delta: int  # physical = virtual - delta
    lowest: int  # virtual addresses below this are not in the kernel image

    def __call__(self, vaddr: int) -> int:
        paddr = vaddr - self.delta
        if vaddr < self.lowest or paddr < 0:
            raise Damaged(f"kernel symbol address {vaddr:#x} is not in the kernel image")
        return paddr


def _number(info: dict[str, str], key: str, path: str) -> int:
    try:
        return int(info[key], 0)
    except ValueError:
        raise Damaged(f"{path}: VMCOREINFO {key}={info[key]!r} is not a number") from None


def _hex(info: dict[str, str], key: str, path: str, default: int | None = None) -> int:
    if key not in info and default is not None:
        return default
    try:
        return int(info[key], 16)
    except ValueError:
        raise Damaged(f"{path}: VMCOREINFO {key}={info[key]!r} is not hexadecimal") from None
