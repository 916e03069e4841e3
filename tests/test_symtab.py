"""The symbol table in columns: what each consumer reads of it (tuples, lookups by name, System.map)."""

from __future__ import annotations

from array import array

import pytest

from extract_ikheaders.analysis.symtab import KSYM_NAME_LEN, SymbolTable, SymbolText
from extract_ikheaders.errors import Damaged

SYMBOLS = [(0x2000, "T", "b_func"), (0x1000, "D", "a_var"), (0x2000, "t", "a_func"), (0x10, "A", "pcpu")]


def test_a_sequence_of_tuples() -> None:
    table = SymbolTable.of(SYMBOLS)
    assert len(table) == 4 and list(table) == SYMBOLS and table == SYMBOLS
    assert table[1] == (0x1000, "D", "a_var") and table[-1] == (0x10, "A", "pcpu")
    assert table[1:3] == SYMBOLS[1:3]
    with pytest.raises(IndexError):
        table[4]


def test_address_of_finds_whole_names_only() -> None:
    table = SymbolTable.of([(1, "T", "x_text"), (2, "T", "_text"), (3, "T", "_text_end"), (4, "T", "_text")])
    assert table.address_of("_text") == 2  # the first, not a name that merely contains it
    assert table.address_of("text") is None and table.address_of("_text_e") is None


def test_system_map_order_is_address_then_name_even_when_unsorted() -> None:
    lines = b"".join(SymbolTable.of(SYMBOLS).system_map(word=4)).decode().splitlines()
    assert lines == ["00000010 A pcpu", "00001000 D a_var", "00002000 t a_func", "00002000 T b_func"]


def test_system_map_escapes_what_would_split_a_line() -> None:
    table = SymbolTable.of([(1, "T", "evil\nffff T forged"), (2, "\x1b", "esc"), (3, "T", "caf\xe9")])
    lines = b"".join(table.system_map(word=2)).splitlines()
    assert lines == [b"0001 T evil\\x0affff\\x20T\\x20forged", b"0002 \\x1b esc", b"0003 T caf\\xe9"]


def test_system_map_comes_in_chunks() -> None:
    table = SymbolTable.of((i, "T", f"s{i}") for i in range(70_000))
    chunks = list(table.system_map())
    assert len(chunks) == 2 and sum(chunk.count(b"\n") for chunk in chunks) == 70_000


def test_names_are_bounded_each_and_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    text = SymbolText("img")
    text.add(b"T" + b"n" * (KSYM_NAME_LEN - 1))
    with pytest.raises(Damaged, match=f"img: kallsyms_names symbol 1 expands to {KSYM_NAME_LEN + 1} bytes"):
        text.add(b"T" + b"n" * KSYM_NAME_LEN)
    with pytest.raises(Damaged, match="symbol 1 expands to b'T'"):
        text.add(b"T")
    from extract_ikheaders.analysis import symtab

    monkeypatch.setattr(symtab, "MAX_TEXT", KSYM_NAME_LEN + 10)
    with pytest.raises(Damaged, match="expands to more than 0 MiB by symbol 1"):
        text.add(b"T" + b"n" * 20)


def test_new_addresses_keep_the_names() -> None:
    table = SymbolTable.of(SYMBOLS[:2])
    moved = table.with_addresses(array("Q", [5, 6]))
    assert list(moved) == [(5, "T", "b_func"), (6, "D", "a_var")]
    with pytest.raises(ValueError, match="1 addresses for 2 names"):
        table.with_addresses(array("Q", [5]))
