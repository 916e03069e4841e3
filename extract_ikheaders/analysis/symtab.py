"""A kernel symbol table held in columns, so that a million symbols cost tens of MB, not hundreds.

As (address, type, name) tuples a symbol costs about 400 bytes of Python objects (425 MB for the
million an image may declare); here it costs an address (8 bytes), an end offset (4) and its text
(type character and name) in one byte string. The text is bounded twice while it is decoded: each
name by KSYM_NAME_LEN, the kernel's own limit (scripts/kallsyms.c refuses longer names), and all
of them together by MAX_TEXT, because a token table from an image can make every two bytes of
kallsyms_names expand to 64 KiB.

Symbols are handed out one at a time as (address, type, name) tuples: a SymbolTable is a
Sequence[Symbol], and every consumer that iterated a list of tuples reads it unchanged.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby, pairwise
from typing import overload

from ..errors import Damaged

Symbol = tuple[int, str, str]  # (address, type char, name)

KSYM_NAME_LEN = 512  # 6.1+ (128 before): a name is shorter, its type character not counted
MAX_SYMS = 1 << 20  # a 6.x kernel with every option has ~200k (Debian's 6.1: 129,573)
# Debian's 6.1 holds 3.6 MiB of symbol text; this allows MAX_SYMS names of 128 bytes on average.
MAX_TEXT = 128 << 20
_MAP_CHUNK = 1 << 16  # System.map lines joined per write
_UNSAFE = re.compile(rb"[^\x21-\x7e]")  # would split a System.map line, drive a terminal, or not be ASCII


class SymbolText:
    """The symbols' texts (type character, then name) back to back, as kallsyms_names expands."""

    __slots__ = ("_ends", "_path", "_text")

    def __init__(self, path: str = "kallsyms") -> None:
        self._text = bytearray()
        self._ends = array("I")
        self._path = path or None

    def add(self, text: bytes) -> None:
        number = len(self._ends)
        if len(text) < 2:
            raise Damaged(f"kallsyms_names symbol {number} expands to {text!r}", path=self._path)
        if len(text) > KSYM_NAME_LEN:
            raise Damaged(f"kallsyms_names symbol {number} expands to {len(text)} bytes, "
                          f"longer than any kernel allows ({KSYM_NAME_LEN})", path=self._path)
        if len(self._text) + len(text) > MAX_TEXT:
            raise Damaged(f"kallsyms_names expands to more than {MAX_TEXT >> 20} MiB "
                          f"by symbol {number:,}", path=self._path)
        self._text += text
        self._ends.append(len(self._text))

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(type, name) of each symbol."""
        start = 0
        for end in self._ends:
            yield chr(self._text[start]), self._text[start + 1 : end].decode("latin-1")
            start = end

    def span(self, index: int) -> tuple[int, int]:
        """Where symbol `index`'s text lies in the blob."""
        return (self._ends[index - 1] if index else 0), self._ends[index]

    def index_ending_at(self, end: int) -> int | None:
        """The symbol whose text ends at `end` in the blob, if one does."""
        index = bisect.bisect_left(self._ends, end)
        return index if index < len(self._ends) and self._ends[index] == end else None

    @property
    def blob(self) -> bytearray:
        return self._text


class SymbolTable(Sequence[Symbol]):
    """Symbols in kallsyms order: addresses in one array, texts in a SymbolText."""

    __slots__ = ("_addresses", "_text")

    def __init__(self, addresses: array[int], text: SymbolText) -> None:
        if len(addresses) != len(text):
            raise ValueError(f"{len(addresses)} addresses for {len(text)} names")
        self._addresses = addresses
        self._text = text

    @classmethod
    def of(cls, symbols: Iterable[Symbol], path: str = "symbols") -> SymbolTable:
        addresses, text = array("Q"), SymbolText(path)
        for address, kind, name in symbols:
            addresses.append(address)
            text.add((kind + name).encode("latin-1"))
        return cls(addresses, text)

    def __len__(self) -> int:
        return len(self._addresses)

    @overload
    def __getitem__(self, index: int) -> Symbol: ...
    @overload
    def __getitem__(self, index: slice) -> list[Symbol]: ...
    def __getitem__(self, index: int | slice) -> Symbol | list[Symbol]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("symbol index out of range")
        start, end = self._text.span(index)
        blob = self._text.blob
        return self._addresses[index], chr(blob[start]), blob[start + 1 : end].decode("latin-1")

    def __iter__(self) -> Iterator[Symbol]:
        for address, (kind, name) in zip(self._addresses, self._text, strict=True):
            yield address, kind, name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and compared by value

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols)"

    def with_addresses(self, addresses: array[int]) -> SymbolTable:
        return SymbolTable(addresses, self._text)

    def address_of(self, name: str) -> int | None:
        """The address of the first symbol called `name`: found in the blob, not by building every
        symbol (the stand-in VMCOREINFO and the KASLR offset need two or three names)."""
        blob, wanted = self._text.blob, name.encode("latin-1")
        at = blob.find(wanted)
        while at != -1:
            index = self._text.index_ending_at(at + len(wanted))
            if index is not None and self._text.span(index)[0] + 1 == at:
                return self._addresses[index]
            at = blob.find(wanted, at + 1)
        return None

    def in_address_order(self) -> Iterator[int]:
        """Indices by address, then name, as System.map lists them. kallsyms is sorted by address
        already (scripts/kallsyms.c): then only names sharing an address are sorted."""
        addresses = self._addresses
        order: Iterable[int] = range(len(addresses))
        if not all(a <= b for a, b in pairwise(addresses)):
            order = sorted(order, key=addresses.__getitem__)
        for _, same in groupby(order, key=addresses.__getitem__):
            group = list(same)
            if len(group) > 1:
                group.sort(key=self._name_bytes)
            yield from group

    def _name_bytes(self, index: int) -> bytes:
        start, end = self._text.span(index)
        return bytes(self._text.blob[start + 1 : end])

    def system_map(self, word: int = 8) -> Iterator[bytes]:
        """System.map lines, sorted, in chunks. Bytes a name cannot hold in a System.map line
        (space, control bytes, non-ASCII) are written as \\xNN, so a line is always `address type name`."""
        blob, width, unsafe = self._text.blob, 2 * word, _UNSAFE.search(self._text.blob) is not None
        lines: list[bytes] = []
        for index in self.in_address_order():
            start, end = self._text.span(index)
            kind, name = bytes(blob[start : start + 1]), bytes(blob[start + 1 : end])
            if unsafe:
                kind, name = _escaped(kind), _escaped(name)
            lines.append(b"%0*x %s %s\n" % (width, self._addresses[index], kind, name))
            if len(lines) == _MAP_CHUNK:
                yield b"".join(lines)
                lines.clear()
        if lines:
            yield b"".join(lines)


def _escaped(text: bytes) -> bytes:
    return _UNSAFE.sub(lambda m: b"\\x%02x" % m[0][0], text)
