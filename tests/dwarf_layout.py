"""Structure layouts from an object's DWARF (pyelftools), for comparing --debuginfo with kbuild's -g compile."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

Member = tuple[str, int, int, str]  # (path, byte offset, size, type name)


def _attr(die: Any, name: str) -> Any:
    attr = die.attributes.get(name)
    return attr.value if attr is not None else None


def _name(die: Any) -> str | None:
    value = _attr(die, "DW_AT_name")
    return value.decode() if isinstance(value, bytes) else value


def _target(die: Any) -> Any:
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def type_name(die: Any) -> str:
    """A C-like spelling of a type DIE, for comparing members' types."""
    if die is None:
        return "void"
    tag = die.tag
    if tag == "DW_TAG_pointer_type":
        return type_name(_target(die)) + " *"
    if tag in ("DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
        return tag[len("DW_TAG_"):-len("_type")] + " " + type_name(_target(die))
    if tag == "DW_TAG_array_type":
        dims = "".join(f"[{_count(sub)}]" for sub in die.iter_children() if sub.tag == "DW_TAG_subrange_type")
        return type_name(_target(die)) + dims
    if tag == "DW_TAG_subroutine_type":
        return "fn"
    prefix = {"DW_TAG_structure_type": "struct ", "DW_TAG_union_type": "union ",
              "DW_TAG_enumeration_type": "enum "}.get(tag, "")
    return prefix + (_name(die) or "<anon>")


def _count(subrange: Any) -> int | str:
    count = _attr(subrange, "DW_AT_count")
    if count is not None:
        return int(count)
    upper = _attr(subrange, "DW_AT_upper_bound")
    return int(upper) + 1 if isinstance(upper, int) else ""


def byte_size(die: Any) -> int | None:
    while die is not None:
        size = _attr(die, "DW_AT_byte_size")
        if size is not None:
            return int(size)
        if die.tag == "DW_TAG_pointer_type":
            return None
        if die.tag == "DW_TAG_array_type":
            inner = byte_size(_target(die))
            counts = [_count(s) for s in die.iter_children() if s.tag == "DW_TAG_subrange_type"]
            total = inner or 0
            for c in counts:
                total *= c if isinstance(c, int) else 0
            return total
        die = _target(die)
    return None


def _members(die: Any, prefix: str, base: int, out: list[Member]) -> None:
    """Every member, anonymous structs and unions flattened into their parent (bit fields by bit)."""
    for child in die.iter_children():
        if child.tag != "DW_TAG_member":
            continue
        loc = _attr(child, "DW_AT_data_member_location") or 0
        bits = _attr(child, "DW_AT_data_bit_offset")
        offset = base + int(loc) if not isinstance(loc, list) else base
        member_type = _target(child)
        name = _name(child)
        if bits is not None:
            out.append((f"{prefix}{name}:bit{bits}", base * 8 + int(bits), int(_attr(child, "DW_AT_bit_size") or 0),
                        type_name(member_type)))
            continue
        if name is None and member_type is not None:
            inner = member_type
            while inner is not None and inner.tag == "DW_TAG_typedef":
                inner = _target(inner)
            if inner is not None and inner.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                _members(inner, prefix, offset, out)
                continue
        out.append((f"{prefix}{name}", offset, byte_size(member_type) or 0, type_name(member_type)))


def _relocated(path: Path, work: Path) -> Path:
    """pyelftools cannot apply RISC-V relocations to a .o's DWARF: let the linker do it."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_RISCV" or elf["e_type"] != "ET_REL":
            return path
    linker = shutil.which("riscv64-linux-gnu-ld")
    if linker is None:
        pytest.skip("riscv64-linux-gnu-ld is needed to read a RISC-V object's DWARF")
    out = work / (path.name + ".so")
    subprocess.run([linker, "-shared", "-o", str(out), str(path)], check=True, capture_output=True)
    return out


def layouts(path: Path, names: set[str]) -> dict[str, tuple[int, list[Member]]]:
    """struct name -> (size, members) for the complete definitions of `names` in the object."""
    with tempfile.TemporaryDirectory() as work:
        return _layouts(_relocated(path, Path(work)), names)


def _layouts(path: Path, names: set[str]) -> dict[str, tuple[int, list[Member]]]:
    found: dict[str, tuple[int, list[Member]]] = {}
    with path.open("rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag != "DW_TAG_structure_type" or _attr(die, "DW_AT_declaration"):
                    continue
                name = _name(die)
                if name in names and name not in found:
                    members: list[Member] = []
                    _members(die, "", 0, members)
                    found[name] = (int(_attr(die, "DW_AT_byte_size") or 0), members)
    return found
