"""--isf: a Volatility 3 symbol table (ISF JSON) for a crash dump, from the types object and kallsyms.

Volatility 3 needs, per kernel, an ISF file (what dwarf2json makes from a vmlinux with debug info):
`base_types`, `user_types` (structs and unions with member offsets), `enums`, and `symbols` with
link-time addresses, one of them `linux_banner` carrying the banner bytes (`constant_data`) that
Volatility scans memory for to pick the table. Here the types come from the DWARF of the object that
--debuginfo compiles from the dump's own headers, the addresses from the dump's kallsyms (VMCOREINFO,
6.0+, or its stand-in for dumps without one: vmcoreinfo_standin.py) with the KASLR offset taken off, and the
banner from the dump's `linux_banner`.

The JSON follows dwarf2json's conventions (format 6.2.0), which Volatility's code relies on: an
anonymous struct behind a typedef is named by the typedef (`atomic_t`), other anonymous ones
`unnamed_<offset>`; unnamed members are `unnamed_field_<n>` with `anonymous: true`, which Volatility
flattens into the parent; qualifiers and typedefs resolve to what they name; bitfields give the byte
of their first bit and the bit within it.

Symbols kallsyms lacks (a kernel without CONFIG_KALLSYMS_ALL has functions only) come from
VMCOREINFO's SYMBOL() entries and, for the variables Volatility cannot do without, from the kernel
image itself (imagesyms).

Stock Volatility 3 walks 4-level x86_64 page tables only (its issue #1938): a dump of a kernel
running with 5-level paging (`la57`, no `no5lvl` on the command line) is not readable by it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, BinaryIO

from .. import pipeline
from ..buffer import Buffer
from ..cachekey import producer
from ..dumps import pagewalk
from ..dumps.physical import PhysicalMemory
from ..dumps.search import open_dump
from ..errors import Damaged, InputError, NotFound, NotMine
from ..outfile import write_file
from ..pipeline import find_banner
from ..version import __version__
from . import debuginfo, kernel_globals, vmcoreinfo_standin
from .confined_cc import Limits
from .kallsyms import memory_translation

FORMAT_VERSION = "6.2.0"
Desc = dict[str, Any]  # an ISF type descriptor
VOID: Desc = {"kind": "base", "name": "void"}

# Types Volatility 3's Linux symbol table class requires (set_type_class, not the optional one): a
# table without any of them is refused before any plugin runs.
REQUIRED_TYPES = (
    "file", "list_head", "hlist_head", "mm_struct", "super_block", "task_struct", "vm_area_struct", "qstr",
    "dentry", "fs_struct", "files_struct", "kobject", "cred", "inode", "idr", "address_space", "page",
    "vfsmount", "net", "socket", "sock", "inet_sock", "unix_sock",
)
# Symbols its kernel detection (LinuxIntelStacker.find_aslr) and pslist read.
REQUIRED_SYMBOLS = ("init_task", "init_mm", "init_files", "linux_banner")

_QUALIFIERS = frozenset({"DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                         "DW_TAG_atomic_type", "DW_TAG_immutable_type"})
_AGGREGATES = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union", "DW_TAG_class_type": "class"}
_LOCAL_REFS = frozenset({"DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8", "DW_FORM_ref_udata"})
# DW_ATE_* encoding -> (kind, signed)
_ENCODINGS = {1: ("int", False), 2: ("bool", False), 3: ("float", True), 4: ("float", True), 5: ("int", True),
              6: ("char", True), 7: ("int", False), 8: ("char", False), 0x10: ("char", False)}
_DW_OP_PLUS_UCONST = 0x23
_BANNER_MAX = 1024


@dataclass
class DwarfTypes:
    """The ISF type sections of one DWARF object, and the type of each variable it declares."""

    base_types: dict[str, Desc]
    user_types: dict[str, Desc]
    enums: dict[str, Desc]
    variables: dict[str, Desc]
    source: dict[str, str]  # metadata: the object's name and sha256

    def as_dict(self) -> dict[str, Any]:
        return {"base_types": self.base_types, "user_types": self.user_types, "enums": self.enums,
                "variables": self.variables, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DwarfTypes:
        return cls(data["base_types"], data["user_types"], data["enums"], data["variables"], data["source"])


class _Die:
    """What the converter needs of one DIE: tag, attributes (type refs made absolute), children."""

    __slots__ = ("attrs", "children", "offset", "tag")

    def __init__(self, offset: int, tag: str, attrs: dict[str, Any]) -> None:
        self.offset = offset
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Die] = []


def read_dwarf(path: str | os.PathLike[str]) -> DwarfTypes:
    """The ISF types of an ELF object's DWARF (the --debuginfo types object)."""
    from elftools.common.exceptions import ELFError

    with open(path, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
        stream.seek(0)
        try:
            elf = _elf_file(stream)
            if not elf.has_dwarf_info():
                raise InputError("no DWARF debug info", path=os.fspath(path))
            endian = "little" if elf.little_endian else "big"
            dies = list(_top_dies(elf.get_dwarf_info(relocate_dwarf_sections=True)))
            pointer_size = elf.elfclass // 8
        except ELFError as exc:
            raise InputError(f"not a readable ELF object with DWARF ({exc})", path=os.fspath(path)) from None
    converter = _Converter(dies, endian, pointer_size)
    source = {"kind": "dwarf", "name": os.path.basename(path), "hash_type": "sha256", "hash_value": digest}
    return converter.convert(source)


def _elf_file(stream: BinaryIO) -> Any:
    """pyelftools' ELFFile, asking the machine's name once: it asks again for every relocation it
    applies to the DWARF (42,000 in a types object: 2.1 s -> 1.4 s for the whole conversion)."""
    from elftools.elf.elffile import ELFFile

    class _ElfFile(ELFFile):
        @cached_property
        def _machine_arch(self) -> str:
            arch: str = super().get_machine_arch()
            return arch

        def get_machine_arch(self) -> str:
            return self._machine_arch

    return _ElfFile(stream)


def _top_dies(dwarf: Any) -> Iterator[_Die]:
    """Every compile unit's DIE tree, flattened into _Die nodes (children kept on their parents)."""
    for cu in dwarf.iter_CUs():
        base = cu.cu_offset
        stack: list[_Die] = []
        for die in cu.iter_DIEs():
            if die.is_null():
                if stack:  # padding after the unit's last DIE is null too
                    stack.pop()
                continue
            node = _Die(die.offset, die.tag, _attributes(die.attributes, base))
            if stack:
                stack[-1].children.append(node)
            else:
                yield node  # the compile unit itself; its tree hangs below
            if die.has_children:
                stack.append(node)


def _attributes(attributes: dict[str, Any], base: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, attr in attributes.items():
        value = attr.value
        if attr.form in _LOCAL_REFS:
            value += base  # CU-relative reference: make it a .debug_info offset
        elif isinstance(value, bytes):  # pyelftools gives strings as bytes, blocks as lists
            value = value.decode("utf-8", "replace")
        out[name] = value
    return out


class _Converter:
    def __init__(self, units: list[_Die], endian: str, pointer_size: int) -> None:
        self._endian = endian
        self._dies: dict[int, _Die] = {}
        for unit in units:
            self._index(unit)
        self._names: dict[int, str] = {}  # aggregate/enum DIE offset -> ISF name
        self._defined: dict[tuple[str, str], int] = {}  # (kind, name) -> the DIE that defines it
        self.base_types: dict[str, Desc] = {
            "void": {"size": 0, "signed": False, "kind": "void", "endian": endian},
            "pointer": {"size": pointer_size, "signed": False, "kind": "int", "endian": endian},
        }

    def _index(self, die: _Die) -> None:
        self._dies[die.offset] = die
        for child in die.children:
            self._index(child)

    def convert(self, source: dict[str, str]) -> DwarfTypes:
        self._name_aggregates()
        user_types: dict[str, Desc] = {}
        enums: dict[str, Desc] = {}
        variables: dict[str, Desc] = {}
        for die in self._dies.values():
            if die.tag == "DW_TAG_base_type":
                self._base(die)
        for die in self._dies.values():
            name = self._names.get(die.offset)
            if name is not None and self._defined.get((die.tag, name)) == die.offset:
                if die.tag == "DW_TAG_enumeration_type":
                    enums[name] = self._enum(die)
                else:
                    user_types[name] = self._aggregate(die)
            elif die.tag == "DW_TAG_variable" and "DW_AT_name" in die.attrs and "DW_AT_type" in die.attrs:
                variables.setdefault(die.attrs["DW_AT_name"], self.desc(die.attrs["DW_AT_type"]))
        return DwarfTypes(self.base_types, user_types, enums, variables, source)

    def _name_aggregates(self) -> None:
        """Name every struct/union/enum: its tag, else the typedef naming it, else its DIE offset."""
        kinds = (*_AGGREGATES, "DW_TAG_enumeration_type")
        tags = {(d.tag, d.attrs["DW_AT_name"]) for d in self._dies.values()
                if d.tag in kinds and "DW_AT_name" in d.attrs}
        typedef_names: dict[int, str] = {}
        for die in self._dies.values():
            target = self._dies.get(die.attrs.get("DW_AT_type", -1)) if die.tag == "DW_TAG_typedef" else None
            if target is not None and target.tag in kinds and "DW_AT_name" not in target.attrs \
                    and (target.tag, die.attrs["DW_AT_name"]) not in tags:
                typedef_names.setdefault(target.offset, die.attrs["DW_AT_name"])
        for die in self._dies.values():
            if die.tag not in kinds:
                continue
            name = die.attrs.get("DW_AT_name") or typedef_names.get(die.offset) or f"unnamed_{die.offset:x}"
            self._names[die.offset] = name
            if die.attrs.get("DW_AT_declaration") or "DW_AT_byte_size" not in die.attrs:
                continue
            self._defined.setdefault((die.tag, name), die.offset)

    def _base(self, die: _Die) -> None:
        name = die.attrs.get("DW_AT_name")
        if not name or name in self.base_types:
            return
        kind, signed = _ENCODINGS.get(die.attrs.get("DW_AT_encoding", 0), ("int", False))
        self.base_types[name] = {"size": die.attrs.get("DW_AT_byte_size", 0), "signed": signed, "kind": kind,
                                 "endian": self._endian}

    def desc(self, offset: int | None) -> Desc:
        """The ISF type descriptor of the DIE at `offset` (None: void)."""
        if offset is None:
            return VOID
        die = self._dies.get(offset)
        if die is None:
            return VOID
        tag = die.tag
        if tag == "DW_TAG_base_type":
            return {"kind": "base", "name": die.attrs.get("DW_AT_name", "void")}
        if tag == "DW_TAG_pointer_type":
            return {"kind": "pointer", "subtype": self.desc(die.attrs.get("DW_AT_type"))}
        if tag in _AGGREGATES:
            return {"kind": _AGGREGATES[tag], "name": self._names[offset]}
        if tag == "DW_TAG_enumeration_type":
            return {"kind": "enum", "name": self._names[offset]}
        if tag == "DW_TAG_typedef":
            target = self._dies.get(die.attrs.get("DW_AT_type", -1))
            if target is not None and self._names.get(target.offset) == die.attrs.get("DW_AT_name"):
                return self.desc(target.offset)  # an anonymous struct named after this typedef
            return self.desc(die.attrs.get("DW_AT_type"))
        if tag in _QUALIFIERS:
            return self.desc(die.attrs.get("DW_AT_type"))
        if tag == "DW_TAG_array_type":
            return self._array(die)
        if tag == "DW_TAG_subroutine_type":
            return {"kind": "function"}
        return VOID  # DW_TAG_unspecified_type and anything C does not have

    def _array(self, die: _Die) -> Desc:
        desc = self.desc(die.attrs.get("DW_AT_type"))
        ranges: list[_Die | None] = [c for c in die.children if c.tag == "DW_TAG_subrange_type"] or [None]
        for sub in reversed(ranges):  # int a[2][3]: array of 2 arrays of 3
            desc = {"kind": "array", "count": _count(sub), "subtype": desc}
        return desc

    def _aggregate(self, die: _Die) -> Desc:
        fields: dict[str, Desc] = {}
        unnamed = 0
        for member in die.children:
            if member.tag != "DW_TAG_member":
                continue
            field: Desc = {"type": self.desc(member.attrs.get("DW_AT_type")),
                           "offset": _member_offset(member.attrs)}
            name = member.attrs.get("DW_AT_name")
            if not name:
                name = f"unnamed_field_{unnamed:x}"
                unnamed += 1
                field["anonymous"] = True
            if "DW_AT_bit_size" in member.attrs:
                field = self._bitfield(member, field)
            fields[name] = field
        return {"kind": _AGGREGATES[die.tag], "size": die.attrs.get("DW_AT_byte_size", 0), "fields": fields}

    def _bitfield(self, member: _Die, field: Desc) -> Desc:
        attrs = member.attrs
        bits = attrs["DW_AT_bit_size"]
        if "DW_AT_data_bit_offset" in attrs:  # DWARF 4+: bits from the start of the struct
            first = attrs["DW_AT_data_bit_offset"]
        else:  # DWARF 2/3: storage unit at data_member_location, bit_offset counted from its MSB
            unit = attrs.get("DW_AT_byte_size", 0)
            bit_offset = attrs.get("DW_AT_bit_offset", 0)
            from_lsb = 8 * unit - (bit_offset + bits) if self._endian == "little" else bit_offset
            first = 8 * field["offset"] + from_lsb
        typ = {"kind": "bitfield", "bit_length": bits, "bit_position": first % 8, "type": field["type"]}
        out: Desc = {"type": typ, "offset": first // 8}
        if field.get("anonymous"):
            out["anonymous"] = True
        return out

    def _enum(self, die: _Die) -> Desc:
        constants = {c.attrs["DW_AT_name"]: int(c.attrs.get("DW_AT_const_value", 0))
                     for c in die.children if c.tag == "DW_TAG_enumerator"}
        size = die.attrs.get("DW_AT_byte_size", 0)
        base = self.desc(die.attrs.get("DW_AT_type")) if "DW_AT_type" in die.attrs else None
        if base is None or base.get("kind") != "base":
            base = {"name": self._int_named(size, any(v < 0 for v in constants.values()))}
        return {"size": size, "base": base["name"], "constants": constants}

    def _int_named(self, size: int, signed: bool) -> str:
        for name in sorted(self.base_types):
            info = self.base_types[name]
            if info["kind"] == "int" and info["size"] == size and info["signed"] == signed and name != "pointer":
                return name
        return "void"


def _count(sub: _Die | None) -> int:
    if sub is None:
        return 0
    if "DW_AT_count" in sub.attrs and isinstance(sub.attrs["DW_AT_count"], int):
        return int(sub.attrs["DW_AT_count"])
    upper = sub.attrs.get("DW_AT_upper_bound")
    if isinstance(upper, int):
        lower = sub.attrs.get("DW_AT_lower_bound", 0)
        return max(upper - (lower if isinstance(lower, int) else 0) + 1, 0)
    return 0  # flexible array member


def _member_offset(attrs: dict[str, Any]) -> int:
    loc = attrs.get("DW_AT_data_member_location", 0)
    if isinstance(loc, int):
        return loc
    if isinstance(loc, list | bytes) and loc and loc[0] == _DW_OP_PLUS_UCONST:  # DWARF 2 expression
        return _uleb(bytes(loc[1:]))
    return 0


def _uleb(data: bytes) -> int:
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value


@dataclass(frozen=True)
class IsfReport:
    """What --isf wrote."""

    output: str
    banner: str
    kaslr_offset: int
    symbols: int
    user_types: int
    enums: int
    typed_symbols: int  # symbols whose type the types object declares (init_task, modules, ...)
    recovered: tuple[str, ...]  # data symbols found in the image because kallsyms lacks them
    from_vmcoreinfo: tuple[str, ...]  # symbols kallsyms lacks that VMCOREINFO names (init_top_pgt, prb, ...)
    missing_types: tuple[str, ...]  # of REQUIRED_TYPES: Volatility refuses the table without them
    types_object: str
    types_cached: bool
    paging_levels: int | None = None  # of the dump's kernel page tables (QEMU's CR4.LA57, VMCOREINFO)
    warnings: tuple[str, ...] = ()  # what will keep Volatility from using the table, and what to do

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in vars(self).items()}


FIVE_LEVEL_WARNING = ("the dump's kernel uses 5-level paging (LA57), which stock Volatility 3 cannot translate: "
                      "its plugins will list nothing. Capture a kernel booted with no5lvl, or read this dump "
                      "with extract-ikheaders-drgn, which walks 5-level tables")
ARM64_WARNING = ("the dump is of an arm64 kernel, and released Volatility 3 has no AArch64 layer to translate its "
                 "addresses (its development tree has one): read this dump with extract-ikheaders-drgn, or give "
                 "the table to a tool that reads ISF types and symbols")


def build_isf(types: DwarfTypes, symbols: Iterable[tuple[int, str, str]], kaslr_offset: int, banner: bytes,
              producer_version: str = "") -> dict[str, Any]:
    """The ISF document: `types` plus kallsyms `symbols` (runtime addresses) moved back to link time."""
    table: dict[str, Desc] = {}
    for address, _, name in _preferred(symbols):
        entry: Desc = {"address": link_address(address, kaslr_offset), "type": types.variables.get(name, VOID)}
        table[name] = entry
    if "linux_banner" in table:
        table["linux_banner"]["constant_data"] = base64.b64encode(banner).decode()
    metadata = {"format": FORMAT_VERSION,
                "producer": {"name": "extract-ikheaders", "version": producer_version},
                "linux": {"symbols": [{"kind": "system-map", "name": "kallsyms"}], "types": [types.source]}}
    return {"metadata": metadata, "base_types": types.base_types, "user_types": types.user_types,
            "enums": types.enums, "symbols": table}


def link_address(address: int, kaslr_offset: int) -> int:
    """A kallsyms address as the vmlinux had it before KASLR moved it.

    Per-CPU symbols on x86_64 (CONFIG_KALLSYMS_ABSOLUTE_PERCPU) are small offsets that KASLR does
    not move; only kernel-half addresses (top bit set) are shifted.
    """
    return address - kaslr_offset if address >= 1 << 63 else address


def _preferred(symbols: Iterable[tuple[int, str, str]]) -> Iterator[tuple[int, str, str]]:
    """One symbol per name: a global (upper-case type) over a static of the same name, else the first."""
    chosen: dict[str, tuple[int, str, str]] = {}
    for sym in symbols:
        old = chosen.get(sym[2])
        if old is None or (old[1].islower() and sym[1].isupper()):
            chosen[sym[2]] = sym
    return iter(chosen.values())


def write_isf(doc: dict[str, Any], dest: str) -> None:
    """JSON, xz-compressed when `dest` ends in .xz (Volatility reads .json.xz as is)."""
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    if dest.endswith(".xz"):
        data = lzma.compress(data, preset=1)  # a few MB of JSON: fast beats small here

    try:
        write_file(data, dest)
    except OSError as exc:
        raise InputError(f"{dest}: cannot write the symbol table: {exc.strerror or exc}") from None


def cached_types(types_object: Path) -> tuple[DwarfTypes, bool]:
    """read_dwarf, remembered next to the object (the types cache is keyed per archive already) with
    the object's digest and the code that converted it."""
    cache = types_object.with_name(types_object.name + ".isf-types.json")
    digest = hashlib.sha256(types_object.read_bytes()).hexdigest()
    made_by = producer(sys.modules[__name__])
    try:
        data = json.loads(cache.read_text())
        if data["source"]["hash_value"] == digest and data.get("producer") == made_by:
            return DwarfTypes.from_dict(data), True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    types = read_dwarf(types_object)
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({**types.as_dict(), "producer": made_by}, separators=(",", ":")))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs the next run the conversion
    return types, False


def make_isf(image: str, dest: str, *, kernel_source: str | None = None,
             types_object: Path | None = None, limits: Limits | None = None) -> IsfReport:
    """--isf for a crash dump: its kallsyms and banner with the --debuginfo types (built or cached for
    the dump's headers archive; `types_object` gives an existing one instead), written to dest."""

    with pipeline.open_input(image) as buf:
        try:
            mem = open_dump(buf)
        except NotMine:
            raise NotFound("not a crash dump (ELF core, kdump-compressed, flattened or LiME)", path=image) from None
        table = vmcoreinfo_standin.kallsyms(mem, buf, image)  # fails fast, before any compile
        types, cached, types_object = _types(image, kernel_source, types_object, limits)
        found = _DumpSymbols.gather(mem, types, table.symbols, image)
        banner = dump_banner(mem, found.symbols, image) or _scanned_banner(buf, image)
        tops = pagewalk.top_tables(mem, buf)
        levels = max((top.levels for top in tops), default=None)
        arm64 = any(top.paging.arch == "arm64" for top in tops)
    doc = build_isf(types, found.symbols, table.kaslr_offset, banner, __version__)
    write_isf(doc, dest)
    return IsfReport(output=dest, banner=banner.rstrip(b"\0\n").decode(errors="replace"),
                     kaslr_offset=table.kaslr_offset, symbols=len(doc["symbols"]),
                     user_types=len(types.user_types), enums=len(types.enums),
                     typed_symbols=sum(1 for s in doc["symbols"].values() if s["type"] != VOID),
                     recovered=found.recovered, from_vmcoreinfo=found.from_vmcoreinfo,
                     missing_types=tuple(t for t in REQUIRED_TYPES if t not in types.user_types),
                     types_object=str(types_object), types_cached=cached, paging_levels=levels,
                     warnings=(ARM64_WARNING,) if arm64 else (FIVE_LEVEL_WARNING,) if levels == 5 else ())


def _types(image: str, kernel_source: str | None, types_object: Path | None,
           limits: Limits | None = None) -> tuple[DwarfTypes, bool, Path]:
    """The ISF types of the image's --debuginfo object (or of `types_object`), and whether both the
    compile and the conversion came from the cache."""
    compiled_cached = True
    if types_object is None:
        built = debuginfo.build_types(image, kernel_source=kernel_source, limits=limits)
        types_object, compiled_cached = built.path, built.cached
    types, converted_cached = cached_types(types_object)
    return types, compiled_cached and converted_cached, types_object


@dataclass(frozen=True)
class _DumpSymbols:
    """kallsyms, plus what VMCOREINFO and the kernel image give of the symbols it lacks."""

    symbols: list[tuple[int, str, str]]
    from_vmcoreinfo: tuple[str, ...]
    recovered: tuple[str, ...]

    @classmethod
    def gather(cls, mem: PhysicalMemory, types: DwarfTypes, kallsyms: Sequence[tuple[int, str, str]],
               path: str) -> _DumpSymbols:
        symbols = list(kallsyms)
        names = {name for _, _, name in symbols}
        pointer = types.base_types["pointer"]
        found = kernel_globals.well_known(mem, partial(field_offset, types), pointer["size"], pointer["endian"], names,
                                     path)
        missing = [name for name in REQUIRED_SYMBOLS if name not in names and name not in found]
        if missing:
            raise NotFound(f"neither kallsyms nor the kernel image give {', '.join(missing)}; "
                           "Volatility cannot use the table", path=path)
        symbols.extend((glob.address, "D", name) for name, glob in found.items())
        return cls(symbols, _named(found, kernel_globals.VMCOREINFO), _named(found, kernel_globals.IMAGE))


def _named(found: dict[str, kernel_globals.Global], source: str) -> tuple[str, ...]:
    return tuple(sorted(name for name, glob in found.items() if glob.source == source))


def dump_banner(mem: PhysicalMemory, symbols: list[tuple[int, str, str]], path: str) -> bytes | None:
    """The bytes of `linux_banner` (with its newline and NUL), read where kallsyms says it is."""

    address = next((addr for addr, _, name in symbols if name == "linux_banner"), None)
    if address is None:
        return None
    try:
        data = mem.read_some(memory_translation(mem, path)(address), _BANNER_MAX)
    except (Damaged, NotFound):
        return None
    end = data.find(b"\0")
    return data[:end + 1] if data.startswith(b"Linux version ") and end > 0 else None


def _scanned_banner(buf: Buffer, path: str) -> bytes:
    """The first banner line in the dump when linux_banner cannot be read (Volatility matches it as text)."""

    found = find_banner(buf)
    if found is None:
        raise NotFound("no 'Linux version' banner in the dump; Volatility could not match the table", path=path)
    return found[1].encode()


def field_offset(types: DwarfTypes, struct_name: str, member: str) -> int | None:
    """Byte offset of `member` in a struct, looking through anonymous members as Volatility does."""
    definition = types.user_types.get(struct_name)
    if definition is None:
        return None
    for name, field in definition["fields"].items():
        if name == member:
            return int(field["offset"])
        if field.get("anonymous"):
            inner = field_offset(types, field["type"].get("name", ""), member)
            if inner is not None:
                return int(field["offset"]) + inner
    return None
