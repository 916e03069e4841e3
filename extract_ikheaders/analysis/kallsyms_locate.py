"""Find the kallsyms tables in any kernel image by their shape, without symbols or VMCOREINFO.

One reader for every word size (4, 8) and byte order; the layouts come from scripts/kallsyms.c
(every label is `.balign` to the word size):

    up to 6.9:  [kallsyms_addresses | kallsyms_offsets, kallsyms_relative_base] kallsyms_num_syms
                kallsyms_names kallsyms_markers [kallsyms_seqs_of_names] kallsyms_token_table
                kallsyms_token_index
    6.10+:      kallsyms_num_syms kallsyms_names kallsyms_markers kallsyms_token_table
                kallsyms_token_index kallsyms_offsets kallsyms_relative_base kallsyms_seqs_of_names
    7.x:        the same without kallsyms_relative_base; every label `.balign 4` whatever the word
                size; each offset is place-relative (`.long _text - . + off`: the symbol's address
                is the entry's own plus the signed value), or on a 32-bit kernel that is not
                relocatable the address itself (u32)

Which layout a table has is decided by what follows the offsets, never by a version string: the
7.x kallsyms_seqs_of_names (a permutation of the symbols, 3 bytes each) directly, or a
kallsyms_relative_base first.

The anchor is the token table. Every character that occurs in a symbol name is its own
single-character token at the slot of its code (scripts/kallsyms.c insert_real_symbols_in_table),
so tokens 0x30..0x39 are "0".."9", stored as `0\\0 1\\0 ... 9\\0` — one bytes.find. Tokens are never
empty, so the table ends at the first double NUL; kallsyms_token_index (256 ascending u16, the
first 0) follows, and its slot 0x30 must point at the "0": that fixes the table's start and the
byte order. From there: kallsyms_markers (u32, ascending from 0, one per 256 names) end just
before the token table or before kallsyms_seqs_of_names (3 bytes a symbol); kallsyms_num_syms
sits one word before kallsyms_names; decoding exactly num_syms names must land on every marker
and end at the markers. The addresses are the one table (after the token index, or before
num_syms) that is sorted, as scripts/kallsyms.c sorts symbols by address.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

from ..buffer import Buffer
from ..errors import Damaged, NotFound
from .symtab import KSYM_NAME_LEN, MAX_SYMS, SymbolTable, SymbolText

DIGIT_TOKENS = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00"
TOKEN_TABLE_MAX = 64 * 1024
_BLOCK_MIN = 256 * 2  # 256 names of at least a length byte and one token
_BLOCK_MAX = 256 * (2 + KSYM_NAME_LEN)
_SEQ_SIZE = 3  # kallsyms_seqs_of_names: one 24-bit big-endian index a symbol
_NATIVE = "<" if sys.byteorder == "little" else ">"


@dataclass(frozen=True)
class Located:
    """A decoded kallsyms found at `names_at` (kallsyms_names) in the searched bytes."""

    symbols: SymbolTable
    names_at: int
    token_table_at: int
    word: int  # 4 or 8
    big_endian: bool
    layout: str  # "addresses before names" (up to 6.9) or "addresses after the token index" (6.10+)
    relative_base: int | None  # None: absolute kallsyms_addresses, or place-relative offsets
    relative_base_at: int | None = None
    offsets: array[int] = field(default_factory=lambda: array("i"), repr=False)
    # 7.x: where kallsyms_offsets lies (place-relative); the addresses in `symbols` are then relative
    # to the searched bytes' start until placed() says at what address kallsyms_offsets is
    place_relative_at: int | None = None

    def rebased(self, base: int) -> Located:
        """The table with kallsyms_relative_base = base: a relocatable vmlinux (s390, arm64 built
        with --no-apply-dynamic-relocs) stores 0 there and the value only in its RELA entry."""
        values = relative_addresses(self.offsets, base, self.word)
        return replace(self, symbols=self.symbols.with_addresses(values), relative_base=base)

    def placed(self, offsets_vaddr: int, word: int) -> Located:
        """The place-relative table (7.x) with kallsyms_offsets at `offsets_vaddr`, in a kernel of
        `word`-byte addresses (7.x aligns every table to 4, so the tables do not say)."""
        assert self.place_relative_at is not None
        values = place_relative_addresses(self.offsets, offsets_vaddr, word)
        return replace(self, symbols=self.symbols.with_addresses(values), word=word)

    def describe(self) -> str:
        order = "big" if self.big_endian else "little"
        base = (f", relative_base {self.relative_base:#x}" if self.relative_base is not None
                else "" if self.place_relative_at is not None else ", absolute")
        return f"{self.word * 8}-bit {order}-endian, {self.layout}{base}"


@dataclass(frozen=True)
class _Tokens:
    table_at: int
    index_at: int
    endian: str  # struct byte order: "<" or ">"
    tokens: list[bytes]


@dataclass(frozen=True)
class _Markers:
    at: int  # kallsyms_markers
    values: list[int]
    counts: range  # num_syms values the markers (and the seqs table, if any) allow


def locate(buf: Buffer, path: str, start: int = 0, end: int | None = None) -> Located:
    """The first kallsyms in buf[start:end] that decodes completely.

    NotFound when no token table is there; Damaged when one is but the tables around it do not decode.
    """
    damage: Damaged | None = None
    for tokens in token_tables(buf, start, len(buf) if end is None else end):
        try:
            return _decode_around(buf, tokens, path)
        except Damaged as exc:
            damage = damage or exc
    if damage is not None:
        raise damage
    raise NotFound("no kallsyms table found (was the kernel built with CONFIG_KALLSYMS?)", path=path)


def token_tables(buf: Buffer, start: int, end: int) -> Iterator[_Tokens]:
    """Every kallsyms_token_table + kallsyms_token_index pair in buf[start:end]."""
    hit = buf.find(DIGIT_TOKENS, start, end)
    while hit != -1:
        found = _tokens_at(buf, hit)
        if found is not None:
            yield found
        hit = buf.find(DIGIT_TOKENS, hit + 1, end)


def _tokens_at(buf: Buffer, digits: int) -> _Tokens | None:
    stop = buf.find(b"\0\0", digits + len(DIGIT_TOKENS) - 1, digits + TOKEN_TABLE_MAX)
    if stop == -1:
        return None
    table_end = stop + 1
    for index_at in range(table_end, table_end + 8):  # the index is aligned after the table
        raw = bytes(buf[index_at : index_at + 512])
        if len(raw) < 512 or raw[:2] != b"\0\0":
            continue
        for endian in "<>":
            index = struct.unpack(f"{endian}256H", raw)
            table_at = digits - index[0x30]
            if table_at < 0 or table_at > digits:
                continue
            tokens = _split_tokens(bytes(buf[table_at:table_end]), index)
            if tokens is not None:
                return _Tokens(table_at, index_at, endian, tokens)
    return None


def _split_tokens(table: bytes, index: tuple[int, ...]) -> list[bytes] | None:
    """The 256 tokens if `index` gives exactly their offsets in `table`."""
    parts = table[:-1].split(b"\0")
    if len(parts) != 256:
        return None
    offset = 0
    for part, expected in zip(parts, index, strict=True):
        if not part or offset != expected:
            return None
        offset += len(part) + 1
    return parts


def _decode_around(buf: Buffer, tokens: _Tokens, path: str) -> Located:
    where = f"kallsyms token table at {tokens.table_at:#x}"
    first_failure = ""
    for markers in _marker_candidates(buf, tokens):
        for count_at, word in _count_candidates(buf, markers, tokens.endian):
            names_at = count_at + word
            names = _decode_checked(buf, names_at, markers, tokens.tokens, _u32(buf, count_at, tokens.endian))
            if not isinstance(names, SymbolText):
                first_failure = first_failure or f" (the first candidate at {names_at:#x}: {names})"
                continue
            addresses = _addresses(buf, tokens, count_at, len(names), word)
            if addresses is None:
                raise Damaged(f"{where}: {len(names)} names decode but no sorted address table lies next to them",
                              path=path)
            values, layout, base_at, offsets = addresses
            if layout == _PLACE_RELATIVE:
                return Located(SymbolTable(values, names), names_at, tokens.table_at, word, tokens.endian == ">",
                               layout, None, None, offsets, place_relative_at=base_at)
            base = _word(buf, base_at, word, tokens.endian) if offsets else None
            return Located(SymbolTable(values, names), names_at, tokens.table_at, word, tokens.endian == ">",
                           layout, base, base_at if offsets else None, offsets)
    raise Damaged(f"{where}, but no kallsyms_names/kallsyms_markers before it decode{first_failure}", path=path)


def _words(buf: Buffer, start: int, end: int, endian: str) -> array[int]:
    """u32s of buf[start:end] (4-aligned length) in the given byte order."""
    return read_array(buf, start, (end - start) // 4, "I", endian)


def _u32(buf: Buffer, at: int, endian: str) -> int:
    value: int = struct.unpack_from(f"{endian}I", buf, at)[0]
    return value


def _marker_candidates(buf: Buffer, tokens: _Tokens) -> Iterator[_Markers]:
    """kallsyms_markers arrays ending before the token table (directly, or before seqs_of_names)."""
    end = tokens.table_at
    span = min(end // 4 * 4, (_SEQ_SIZE * MAX_SYMS + 32) // 4 * 4)  # whole words back from the table
    start = end - span
    words = _words(buf, start, end, tokens.endian)
    run_starts = _run_starts(words)
    for last in range(len(words) - 1, -1, -1):
        gap = end - (start + 4 * (last + 1))  # bytes between the last marker and the token table
        value = words[last]
        if value == 0:
            if gap > _SEQ_SIZE * 256 + 16:
                continue  # a single marker (<= 256 symbols) sits right before a short seqs table
            first = last
        elif _BLOCK_MIN <= value <= _BLOCK_MAX * MAX_SYMS // 256 and run_starts[last] >= 0:
            first = run_starts[last]
        else:
            continue
        counts = _counts(last - first + 1, gap)
        if counts:  # copied only then: a long run of markers is tried at a few ends, not at each
            yield _Markers(start + 4 * first, list(words[first : last + 1]), counts)


def _run_starts(words: array[int]) -> array[int]:
    """For each word, the index of the 0 that starts the run of markers ending there (each step
    up a plausible block of names), or -1: one pass, where walking back from every end was n²."""
    starts = array("i", bytes(4 * len(words)))
    current, previous = -1, 0
    for i, value in enumerate(words):
        if value == 0:
            current = i
        elif current >= 0 and not _BLOCK_MIN <= value - previous <= _BLOCK_MAX:
            current = -1
        starts[i] = current
        previous = value
    return starts


def _counts(markers: int, gap: int) -> range:
    """num_syms values that `markers` markers and `gap` bytes up to the token table allow."""
    counts = range(256 * (markers - 1) + 1, min(256 * markers, MAX_SYMS) + 1)
    if gap < 8:  # only alignment: no seqs_of_names between (6.10+, or 6.1 before seqs)
        return counts
    # seqs_of_names: aligned after the markers, 3 bytes a symbol, then aligned again
    low, high = max(counts.start, (gap - 14 + 2) // 3), min(counts.stop - 1, gap // 3)
    return range(low, high + 1) if low <= high else range(0)


def _count_candidates(buf: Buffer, markers: _Markers, endian: str) -> Iterator[tuple[int, int]]:
    """(offset of kallsyms_num_syms, word size) pairs: num_syms in range, one word before the names."""
    latest = markers.at - markers.values[-1] - 2  # the last block holds at least one name
    earliest = max(0, latest - _BLOCK_MAX - 16)
    base = markers.at % 4
    latest -= (latest - base) % 4
    earliest += (base - earliest) % 4
    if latest - 4 < earliest:
        return
    words = _words(buf, earliest, latest, endian)
    for i in range(len(words) - 1, -1, -1):
        if words[i] in markers.counts:
            at = earliest + 4 * i
            if bytes(buf[at + 4 : at + 8]) == b"\0\0\0\0":
                yield at, 8  # 64-bit: .long then .balign 8
            else:
                yield at, 4


def _decode_checked(buf: Buffer, names_at: int, markers: _Markers, tokens: list[bytes],
                    count: int) -> SymbolText | str:
    """`count` names from names_at if they land on every marker and end at the markers; else why not."""
    data = bytes(buf[names_at : markers.at])
    try:
        names, end = decode_names(data, count, tokens, path="", markers=markers.values)
    except Damaged as exc:
        return str(exc)
    return names if len(data) - end < 8 else f"{len(data) - end} bytes left after {count} names"


def decode_names(data: bytes, count: int, tokens: list[bytes], path: str = "kallsyms",
                 markers: list[int] | None = None) -> tuple[SymbolText, int]:
    """The texts (type, name) of `count` symbols from kallsyms_names, and where the stream ended.

    With `markers`, symbol 256*k must start at markers[k] (kallsyms_markers). SymbolText bounds
    what the tokens expand to: per name and in all.
    """
    out, where = SymbolText(path), path or None
    pos = 0
    lookup = tokens.__getitem__
    for number in range(count):
        if markers is not None and number & 0xFF == 0 and markers[number >> 8] != pos:
            raise Damaged(f"kallsyms_names symbol {number} is not where kallsyms_markers says", path=where)
        if pos >= len(data):
            raise Damaged(f"kallsyms_names ends at symbol {number} of {count}", path=where)
        length = data[pos]
        pos += 1
        if length & 0x80:  # a "big" symbol: the next byte holds bits 7-14
            if pos >= len(data):
                raise Damaged(f"kallsyms_names ends at symbol {number} of {count}", path=where)
            length = (length & 0x7F) | (data[pos] << 7)
            pos += 1
        if length == 0 or pos + length > len(data):
            raise Damaged(f"kallsyms_names symbol {number} of {count} is broken (length {length})", path=where)
        out.add(b"".join(map(lookup, data[pos : pos + length])))
        pos += length
    if markers is not None and len(markers) != (count + 255) >> 8:
        raise Damaged(f"{count} symbols but {len(markers)} kallsyms_markers", path=where)
    return out, pos


def _align(value: int, word: int) -> int:
    return value + (-value % word)


_PLACE_RELATIVE = "7.x: offsets after the token index, place-relative"
_IMAGE_REACH = 512 << 20  # from kallsyms_offsets to any symbol of the image


def _addresses(buf: Buffer, tokens: _Tokens, count_at: int, count: int,
               word: int) -> tuple[array[int], str, int, array[int]] | None:
    """(addresses, layout, kallsyms_relative_base's offset, kallsyms_offsets) (no offsets: absolute);
    7.x place-relative: (addresses relative to buf[0], _PLACE_RELATIVE, kallsyms_offsets' offset, offsets)."""
    seven = _seven_addresses(buf, tokens, count)
    if seven is not None:
        return seven
    after = _align(tokens.index_at + 512, word)
    base_before = count_at - word
    tries = [(after, _align(after + 4 * count, word), "addresses after the token index"),
             (base_before - (base_before - 4 * count) % word - 4 * count, base_before, "addresses before names")]
    for offsets_at, base_at, layout in tries:
        if offsets_at < 0 or offsets_at + 4 * count > len(buf) or base_at + word > len(buf):
            continue
        offsets = read_array(buf, offsets_at, count, "i", tokens.endian)
        values = relative_addresses(offsets, _word(buf, base_at, word, tokens.endian), word)
        if _sorted(values):
            return values, layout, base_at, offsets
    absolute_at = count_at - word * count
    if absolute_at >= 0 and count_at <= len(buf):
        values = array("Q", read_array(buf, absolute_at, count, "Q" if word == 8 else "I", tokens.endian))
        if _sorted(values):
            return values, "addresses before names", absolute_at, array("i")
    return None


def _seven_addresses(buf: Buffer, tokens: _Tokens, count: int) -> tuple[array[int], str, int, array[int]] | None:
    """The 7.x table: kallsyms_offsets right after the token index, kallsyms_seqs_of_names right
    after them (4-byte alignment only)."""
    offsets_at = tokens.index_at + 512
    if not _is_permutation(buf, _align(offsets_at + 4 * count, 4), count):
        return None
    offsets = read_array(buf, offsets_at, count, "i", tokens.endian)
    # A place-relative value reaches within the kernel image; an address of a 32-bit kernel that is
    # not relocatable (PAGE_OFFSET: 0x40000000, 0x80000000, 0xb0000000, 0xc0000000), read as signed,
    # does not. (A no-MMU kernel's low addresses would pass for offsets: none is in the corpus.)
    if all(-_IMAGE_REACH < off < _IMAGE_REACH for off in offsets) and _sorted(
            [offsets_at + 4 * i + off for i, off in enumerate(offsets)]):  # signed: before buf[0] too
        return place_relative_addresses(offsets, offsets_at), _PLACE_RELATIVE, offsets_at, offsets
    absolute = read_array(buf, offsets_at, count, "I", tokens.endian)
    if _sorted(absolute):
        return array("Q", absolute), "7.x: addresses after the token index", offsets_at, array("i")
    return None


def _is_permutation(buf: Buffer, at: int, count: int) -> bool:
    """kallsyms_seqs_of_names: `count` 24-bit big-endian indices, each symbol's exactly once."""
    data = bytes(buf[at : at + 3 * count])
    if len(data) != 3 * count:
        return False
    seen = bytearray(count)
    for pos in range(0, len(data), 3):
        seq = int.from_bytes(data[pos : pos + 3], "big")
        if seq >= count or seen[seq]:
            return False
        seen[seq] = 1
    return True


def place_relative_addresses(offsets: Sequence[int], offsets_vaddr: int, word: int = 8) -> array[int]:
    """kallsyms_sym_address() on 7.x: the address of entry i (kallsyms_offsets + 4 i) plus its value."""
    mask = (1 << (8 * word)) - 1
    return array("Q", ((offsets_vaddr + 4 * i + off) & mask for i, off in enumerate(offsets)))


def read_array(buf: Buffer, at: int, count: int, code: str, endian: str) -> array[int]:
    """`count` integers of array type `code` (i, I, Q) at `at`, in the given byte order."""
    values = array(code)
    values.frombytes(bytes(buf[at : at + count * values.itemsize]))
    if endian != _NATIVE:
        values.byteswap()
    return values


def _word(buf: Buffer, at: int, word: int, endian: str) -> int:
    value: int = struct.unpack_from(f"{endian}{'Q' if word == 8 else 'I'}", buf, at)[0]
    return value


def relative_addresses(offsets: Sequence[int], base: int, word: int = 8) -> array[int]:
    """kallsyms_sym_address() for base-relative kallsyms.

    With CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP) every kernel-image symbol has a negative
    offset, so any negative offset means that mode; without it, offsets are unsigned from base.
    """
    mask = (1 << (8 * word)) - 1
    if any(off < 0 for off in offsets):
        return array("Q", (off if off >= 0 else (base - 1 - off) & mask for off in offsets))
    return array("Q", ((base + off) & mask for off in offsets))


def _sorted(values: Sequence[int]) -> bool:
    return all(a <= b for a, b in pairwise(values)) and (len(values) < 2 or values[0] != values[-1])


def decode_tokens(table: bytes, index: tuple[int, ...], path: str = "kallsyms") -> list[bytes]:
    """The 256 tokens: NUL-terminated strings at the offsets kallsyms_token_index gives."""
    tokens = []
    for number, start in enumerate(index):
        end = table.find(b"\0", start)
        if start >= len(table) or end == -1:
            raise Damaged(f"kallsyms token {number} at offset {start} runs past the token table", path=path)
        tokens.append(table[start:end])
    return tokens
