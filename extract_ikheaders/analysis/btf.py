"""--btf: the kernel's own BTF, byte for byte as /sys/kernel/btf/vmlinux serves it.

A kernel built with CONFIG_DEBUG_INFO_BTF carries its BTF in the vmlinux section .BTF, which it
serves as /sys/kernel/btf/vmlinux (__start_BTF..__stop_BTF, the section exactly). From a vmlinux
the section is read. From a raw or compressed image or a crash dump the blob is found by its own
header: magic 0xeB9F, version 1, a header whose type and string sections follow it; its length
comes from the header, and it must check out: the string section starts and ends with a NUL and
every type record parses to the end of the type section. A split BTF (a module's, whose types
continue a base's numbering) is told apart by its strings: they do not start with the empty
name. No maintained Python library reads BTF, and the checks need only the record sizes, so the
parsing is here; the BTF kinds and their trailers are include/uapi/linux/btf.h's.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from .. import pipeline
from ..buffer import Buffer
from ..dumps.physical import PhysicalMemory
from ..elf.reader import CorruptElf, ElfImage
from ..errors import Damaged, NotFound

MAGIC = 0xEB9F
MAX_BTF = 256 << 20  # a whole distribution kernel's BTF is ~6 MiB
_HEADER = struct.Struct("HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("III")  # name_off, info (vlen 0-15, kind 24-28, kind_flag 31), size or type
_STRUCT, _UNION = 4, 5
# kind -> (bytes after the record, bytes per vlen entry)
_TRAILERS = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0),
             9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12),
             16: (0, 0), 17: (4, 0), 18: (0, 0), 19: (0, 12)}
_MAGICS = {"<": struct.pack("<HB", MAGIC, 1), ">": struct.pack(">HB", MAGIC, 1)}


@dataclass(frozen=True)
class Btf:
    """A checked BTF blob: its bytes, byte order, how many types it defines, and where it was."""

    data: bytes
    endian: str  # "<" or ">"
    types: int
    named_structs: int  # named structs and unions: what CO-RE relocations resolve against
    where: str  # "vmlinux section .BTF", "raw image at 0x...", "physical memory at 0x..."

    @property
    def size(self) -> int:
        return len(self.data)

    def as_dict(self) -> dict[str, object]:
        return {"source": "image", "bytes": self.size, "sha256": hashlib.sha256(self.data).hexdigest(),
                "types": self.types, "named_structs": self.named_structs, "where": self.where,
                "endian": "little" if self.endian == "<" else "big"}


def parse(data: bytes, where: str) -> Btf | None:
    """`data` starting with a whole base BTF (anything may follow it), checked; None if it is not one."""
    header = _header(data[: _HEADER.size])
    if header is None:
        return None
    endian, hdr_len, type_off, type_len, str_off, str_len = header
    end = hdr_len + max(type_off + type_len, str_off + str_len)
    if hdr_len < _HEADER.size or end > min(len(data), MAX_BTF) or type_len % 4:
        return None
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    if not strings.startswith(b"\0") or not strings.endswith(b"\0"):
        return None  # a split BTF's strings continue its base's: they do not start with ""
    counts = _count_types(data[hdr_len + type_off : hdr_len + type_off + type_len], endian)
    if counts is None:
        return None
    return Btf(bytes(data[:end]), endian, counts[0], counts[1], where)


def _count_types(section: bytes, endian: str) -> tuple[int, int] | None:
    """(types, named structs and unions) if every record parses to the section's end exactly."""
    reached = types = named = 0
    for _, end, name_off, info, _ in _walk(section, endian):
        reached = end
        types += 1
        named += info >> 24 & 0x1F in (_STRUCT, _UNION) and name_off != 0
    return (types, named) if reached == len(section) else None


def _walk(section: bytes, endian: str) -> Iterator[tuple[int, int, int, int, int]]:
    """(start, end, name_off, info, size or type) of each type record, while they parse: it stops at
    a record of an unknown kind or one the section cannot hold (the last end then falls short)."""
    layout = struct.Struct(endian + _TYPE.format)
    at = 0
    while at + layout.size <= len(section):
        name_off, info, size_or_type = layout.unpack_from(section, at)
        trailer = _TRAILERS.get(info >> 24 & 0x1F)
        if trailer is None:
            return
        end = at + layout.size + trailer[0] + trailer[1] * (info & 0xFFFF)
        if end > len(section):
            return
        yield at, end, name_off, info, size_or_type
        at = end


def in_elf(elf: ElfImage, path: str) -> Btf | None:
    """A vmlinux's .BTF section, or None when it has none; Damaged if the section is not BTF."""
    try:
        section = elf.section(".BTF")
        data = elf.section_bytes(section) if section is not None else None
    except CorruptElf:
        return None
    if data is None:
        return None
    btf = parse(data, "vmlinux section .BTF")
    if btf is None or btf.size != len(data):
        raise Damaged("the .BTF section does not hold one whole, well-formed BTF blob", path=path,
                      offset=section.offset if section is not None else None)
    return btf


def in_image(data: Buffer, where: str = "raw image") -> Btf | None:
    """The largest base BTF whose header is found in a kernel image's bytes (a linear scan)."""
    found = []
    for magic in _MAGICS.values():
        for at in _aligned(data.find, magic, 0):
            claimed = _claimed(bytes(data[at : at + _HEADER.size]))
            found.append(parse(bytes(data[at : at + claimed]), f"{where} at {at:#x}"))
    return _largest(found)


def in_memory(mem: PhysicalMemory) -> Btf | None:
    """The largest base BTF in a dump's physical memory: the kernel image keeps .BTF contiguous."""
    found = []
    for lo, hi in mem.ranges():
        for magic in _MAGICS.values():
            for at in _aligned(partial(_find_below, mem, hi), magic, lo):
                claimed = _claimed(mem.read_some(at, _HEADER.size))
                found.append(parse(mem.read_some(at, claimed), f"physical memory at {at:#x}"))
    return _largest(found)


def _find_below(mem: PhysicalMemory, hi: int, magic: bytes, start: int) -> int:
    return mem.find(magic, start, hi)


def _header(head: bytes) -> tuple[str, int, int, int, int, int] | None:
    """(byte order, hdr_len, type_off, type_len, str_off, str_len) of a BTF header, or None."""
    endian = next((e for e, magic in _MAGICS.items() if head.startswith(magic)), None)
    if endian is None or len(head) < _HEADER.size:
        return None
    _, _, _, *fields = struct.unpack_from(endian + _HEADER.format, head)
    hdr_len, type_off, type_len, str_off, str_len = fields
    return endian, hdr_len, type_off, type_len, str_off, str_len


def _claimed(head: bytes) -> int:
    """The length a BTF header says its blob has (0 when it is not a header, capped at MAX_BTF)."""
    header = _header(head)
    if header is None:
        return 0
    _, hdr_len, type_off, type_len, str_off, str_len = header
    return min(hdr_len + max(type_off + type_len, str_off + str_len), MAX_BTF)


def _aligned(find: Callable[[bytes, int], int], magic: bytes, start: int) -> Iterator[int]:
    """Every 4-byte aligned occurrence of `magic` (.BTF is 4-byte aligned), left to right."""
    at = find(magic, start)
    while at != -1:
        if at % 4 == 0:
            yield at
        at = find(magic, at + 1)


def _largest(candidates: list[Btf | None]) -> Btf | None:
    """The vmlinux BTF: the biggest that checks out (a module's split BTF never does)."""
    return max((btf for btf in candidates if btf is not None), key=lambda btf: btf.size, default=None)


def kernel_btf(path: str | os.PathLike[str]) -> Btf:
    """The BTF the kernel in `path` carries (a vmlinux's .BTF; else found by its header); NotFound if none."""
    name = os.fspath(path)
    with pipeline.open_kernel(name) as kernel:
        if kernel.memory is not None:
            found = in_memory(kernel.memory)
        elif kernel.elf is not None:
            found = in_elf(kernel.elf, name)
        else:
            assert kernel.image is not None
            found = in_image(kernel.image, kernel.layers[-1].format if kernel.layers else "image")
    if found is None:
        raise missing(name)
    return found


def missing(path: str) -> NotFound:
    return NotFound("the kernel carries no BTF of its own (it was built without CONFIG_DEBUG_INFO_BTF); "
                    "--btf-from headers generates it from the kernel's headers", path=path)


# --- the types: what a generated BTF is compared with the kernel's by ------------------------------

_INT, _PTR, _ARRAY, _FWD, _TYPEDEF, _FUNC_PROTO, _FLOAT = 1, 2, 3, 7, 8, 13, 16
_ENUMS = (6, 19)
_QUALIFIERS = {9: "volatile", 10: "const", 11: "restrict", 18: "type_tag"}
_SPELL_DEPTH = 4  # anonymous structs inside anonymous structs are spelled out this deep


@dataclass(frozen=True)
class Member:
    name: str
    bit_offset: int
    bitfield_size: int  # 0: not a bit field
    type: str  # the member's type as C spells it; anonymous structs and unions by their members


@dataclass(frozen=True)
class Layout:
    """A struct or union as CO-RE relocations see it."""

    kind: str  # "struct" or "union"
    size: int
    members: tuple[Member, ...]


@dataclass(frozen=True)
class _Record:
    kind: int
    name: str
    kind_flag: bool
    size_or_type: int
    members: tuple[tuple[str, int, int], ...] = ()  # struct/union: (name, type id, offset)
    array: tuple[int, int] = (0, 0)  # array: (element type id, element count)


def structs(btf: Btf) -> dict[str, Layout]:
    """Every named struct and union of a base BTF; a name defined twice keeps its first definition."""
    records = [None, *_records(btf)]
    found: dict[str, Layout] = {}
    for record in records:
        if record is not None and record.kind in (_STRUCT, _UNION) and record.name and record.name not in found:
            found[record.name] = _layout(records, record)
    return found


def _records(btf: Btf) -> Iterator[_Record]:
    header = _header(btf.data[: _HEADER.size])
    assert header is not None  # a Btf is a parsed, checked blob
    endian, hdr_len, type_off, type_len, str_off, str_len = header
    strings = btf.data[hdr_len + str_off : hdr_len + str_off + str_len]
    section = btf.data[hdr_len + type_off : hdr_len + type_off + type_len]

    def name(offset: int) -> str:
        end = strings.find(b"\0", offset)
        return strings[offset:end].decode("utf-8", "replace") if 0 <= offset < len(strings) else ""

    entry = struct.Struct(endian + "III")  # a member (name_off, type, offset); an array (type, index, count)
    for at, _, name_off, info, size_or_type in _walk(section, endian):
        kind, vlen, trailer = info >> 24 & 0x1F, info & 0xFFFF, at + _TYPE.size
        members: tuple[tuple[str, int, int], ...] = ()
        array = (0, 0)
        if kind in (_STRUCT, _UNION):
            members = tuple((name(m_name), m_type, m_offset) for m_name, m_type, m_offset in
                            (entry.unpack_from(section, trailer + entry.size * i) for i in range(vlen)))
        elif kind == _ARRAY:
            element, _, count = entry.unpack_from(section, trailer)
            array = (element, count)
        yield _Record(kind, name(name_off), bool(info >> 31), size_or_type, members, array)


def _layout(records: list[_Record | None], record: _Record) -> Layout:
    bitfields = record.kind_flag  # kind_flag: offsets hold (bit field size << 24 | bit offset)
    members = tuple(Member(m_name, offset & 0xFFFFFF if bitfields else offset, offset >> 24 if bitfields else 0,
                           spell(records, m_type)) for m_name, m_type, offset in record.members)
    return Layout("struct" if record.kind == _STRUCT else "union", record.size_or_type, members)


def spell(records: list[_Record | None], type_id: int, depth: int = 0) -> str:
    """A type as C spells it; an anonymous struct or union by its members' types and offsets."""
    record = records[type_id] if 0 <= type_id < len(records) else None
    if record is None:
        return "void"
    kind = record.kind
    if kind in (_STRUCT, _UNION, _FWD):
        word = "union" if kind == _UNION or (kind == _FWD and record.kind_flag) else "struct"
        if record.name or depth >= _SPELL_DEPTH:
            return f"{word} {record.name}"
        inner = "; ".join(f"{spell(records, t, depth + 1)} {n}@{o}" for n, t, o in record.members)
        return f"{word} {{{inner}}}"
    if kind in _ENUMS:
        return f"enum {record.name}" if record.name else f"enum <{record.size_or_type} bytes>"
    if kind == _PTR:
        return spell(records, record.size_or_type, depth) + " *"
    if kind == _ARRAY:
        return f"{spell(records, record.array[0], depth)} [{record.array[1]}]"
    if kind in _QUALIFIERS:
        return f"{_QUALIFIERS[kind]} {spell(records, record.size_or_type, depth)}"
    if kind == _FUNC_PROTO:
        return "function"
    return record.name  # int, float, typedef
