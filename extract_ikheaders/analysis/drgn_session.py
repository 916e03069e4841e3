"""drgn on a crash image with no vmlinux: types from the dump's own headers, symbols from its kallsyms.

`open_program(dump)` returns a drgn Program whose
- types come from the types object (debuginfo.build_types: the headers archive compiled with the
  kernel's configuration), loaded as an extra module;
- symbols come from kallsyms decoded through VMCOREINFO, or from a System.map (relocated by the
  dump's KASLR offset); a dump without VMCOREINFO (QEMU's) gets a stand-in (vmcoreinfo_standin.py);
- objects: the well-known globals the types object names (typedef __kheaders_type_<name>, see
  debuginfo.GLOBALS) are found by type, so `prog["init_task"]`, `prog["init_pid_ns"]`, `prog["modules"]`
  and drgn's helpers that use them work unchanged. Each global's address comes from the symbol table,
  else from kernel_globals.well_known (VMCOREINFO's SYMBOL(name), or the kernel image in the dump's
  physical memory: kallsyms holds only functions unless the kernel has CONFIG_KALLSYMS_ALL).

Run `extract-ikheaders-drgn VMCORE` for drgn's interactive shell, or add `-e CODE` or
`SCRIPT [ARGS]` (cli.drgn_main). drgn is the `analysis` extra.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from .. import pipeline
from ..dumps.physical import PhysicalMemory
from ..dumps.search import open_dump
from ..errors import InputError, NotFound, NotMine, ToolError
from . import debuginfo, kernel_globals, vmcoreinfo_standin
from .confined_cc import Limits
from .debuginfo import TYPE_PREFIX, Types
from .symtab import Symbol

if TYPE_CHECKING:
    import drgn


_KERNEL_HALF = 0xFFFF000000000000  # System.map addresses the KASLR offset moves (not percpu offsets)


class DrgnMissing(ToolError):
    """drgn is not installed."""


@dataclass(frozen=True)
class Opened:
    """A program ready for drgn's helpers, and where its types and symbols came from."""

    prog: drgn.Program
    types: Types
    symbols: int
    symbols_from: str  # "kallsyms" or the System.map path


def import_drgn() -> ModuleType:
    try:
        import drgn
    except ImportError:
        raise DrgnMissing("drgn is not installed: pip install 'extract-ikheaders[analysis]'") from None
    return drgn


def open_program(dump: str | os.PathLike[str], *, symbols: str | os.PathLike[str] | None = None,
                 kernel_source: str | os.PathLike[str] | None = None, types: Types | None = None,
                 limits: Limits | None = None) -> Opened:
    """A drgn Program over `dump` (a crash image drgn reads: ELF vmcore, kdump-compressed) with the
    kernel's types and symbols wired in. `symbols` is a System.map to use instead of kallsyms."""
    drgn = import_drgn()

    name = os.fspath(dump)
    types = types or debuginfo.build_types(name, kernel_source=kernel_source, limits=limits)
    vmcoreinfo, table, source = _read_dump(name, symbols)
    prog = drgn.Program(vmcoreinfo=vmcoreinfo_standin.text(vmcoreinfo))  # a dump without VMCOREINFO gets the stand-in
    try:
        prog.set_core_dump(name)
    except (OSError, ValueError, drgn.MissingDebugInfoError) as exc:
        raise InputError(f"drgn cannot open it as a crash dump: {exc}", path=name) from None
    module = prog.extra_module("kheaders_types", 0, create=True)
    module.try_file(str(types.path), force=True)
    prog.register_symbol_finder("kheaders_symbols", drgn.SymbolIndex(drgn_symbols(table)), enable_index=0)
    finder = GlobalFinder(name, vmcoreinfo, {sym[2]: sym[0] for sym in table}, set(types.globals))
    prog.register_object_finder("kheaders_globals", finder, enable_index=-1)
    return Opened(prog, types, len(table), source)


def _read_dump(dump: str, system_map: str | os.PathLike[str] | None) -> tuple[dict[str, str], Sequence[Symbol], str]:
    """The dump's VMCOREINFO (or its stand-in) and symbols: the System.map relocated, else kallsyms."""

    with pipeline.open_input(dump) as buf:
        try:
            mem = open_dump(buf)
        except NotMine:
            raise NotFound("not a crash dump (ELF core, kdump-compressed, flattened or LiME)", path=dump) from None
        _readable_by_drgn(mem, dump)
        # a System.map needs only the KASLR offset: kallsyms only when VMCOREINFO must be stood in for
        standin_needed = system_map is None or not mem.info.vmcoreinfo
        table = vmcoreinfo_standin.kallsyms(mem, buf, dump).symbols if standin_needed else []
        info = mem.info.vmcoreinfo
    if system_map is None:
        return info, table, "kallsyms"
    return info, relocate(read_system_map(Path(system_map)), info), os.fspath(system_map)


def _readable_by_drgn(mem: PhysicalMemory, dump: str) -> None:
    """drgn reads ELF cores and kdump-compressed files; say so before libkdumpfile fails obscurely."""
    if any(layer.format == "flattened" for layer in mem.info.outer):
        raise InputError(f"drgn cannot read makedumpfile's flattened format; reassemble it first: "
                         f"makedumpfile -R NEWFILE < {dump}", path=dump)
    if mem.info.format not in ("elf-core", "kdump"):
        raise InputError(f"drgn cannot read a {mem.info.format} dump (only ELF cores and kdump-compressed)", path=dump)


def read_system_map(path: Path) -> list[Symbol]:
    """System.map / /proc/kallsyms lines: `address type name [module]`."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[1]) == 1:
            try:
                out.append((int(parts[0], 16), parts[1], parts[2]))
            except ValueError:
                continue
    if not out:
        raise NotFound("no `address type name` lines: not a System.map", path=str(path))
    return out


def relocate(table: Sequence[Symbol], vmcoreinfo: dict[str, str]) -> list[Symbol]:
    """A build's System.map moved to where the crashed kernel ran: by VMCOREINFO's _stext when both
    have it, else by KERNELOFFSET. Per-cpu offsets (low absolute values) stay."""
    stext = [addr for addr, _, name in table if name == "_stext"]
    if "SYMBOL(_stext)" in vmcoreinfo and stext:
        shift = int(vmcoreinfo["SYMBOL(_stext)"], 16) - stext[0]
    else:
        shift = int(vmcoreinfo.get("KERNELOFFSET", "0"), 16)
    return [(addr + shift if addr >= _KERNEL_HALF else addr, kind, name) for addr, kind, name in table]


def drgn_symbols(table: Sequence[Symbol]) -> list[drgn.Symbol]:
    """kallsyms has no sizes: each symbol runs to the next higher address (0 for the last)."""
    drgn = import_drgn()
    ordered = sorted(table)
    out = []
    for i, (addr, kind, name) in enumerate(ordered):
        nxt = next((a for a, _, _ in ordered[i + 1 : i + 16] if a > addr), addr)
        binding = drgn.SymbolBinding.GLOBAL if kind.isupper() else drgn.SymbolBinding.LOCAL
        sym_kind = drgn.SymbolKind.FUNC if kind in "tTwW" else drgn.SymbolKind.OBJECT
        out.append(drgn.Symbol(name, addr, nxt - addr, binding, sym_kind))
    return out


class GlobalFinder:
    """drgn object finder: a typed global at the address the symbols or kernel_globals.well_known give."""

    def __init__(self, dump: str, vmcoreinfo: dict[str, str], addresses: dict[str, int], typed: set[str]) -> None:
        self._dump = dump
        self._vmcoreinfo = vmcoreinfo
        self._addresses = addresses
        self._typed = typed
        self._well_known: dict[str, int] | None = None

    def __call__(self, prog: drgn.Program, name: str, flags: drgn.FindObjectFlags,
                 filename: str | None) -> drgn.Object | None:
        drgn = import_drgn()
        if name not in self._typed or not flags & drgn.FindObjectFlags.VARIABLE:
            return None
        address = self._addresses.get(name)
        if address is None:
            if self._well_known is None:
                self._well_known = self._find_well_known(prog)
            address = self._well_known.get(name)
        return None if address is None else drgn.Object(prog, prog.type(TYPE_PREFIX + name).type, address=address)

    def _find_well_known(self, prog: drgn.Program) -> dict[str, int]:
        """Every global the symbols lack, found once (a search of the kernel image)."""

        drgn = import_drgn()
        flags = prog.platform.flags if prog.platform is not None else drgn.PlatformFlags(0)
        size = 8 if flags & drgn.PlatformFlags.IS_64_BIT else 4
        endian = "little" if flags & drgn.PlatformFlags.IS_LITTLE_ENDIAN else "big"
        with pipeline.open_input(self._dump) as buf:
            try:
                mem = open_dump(buf)
            except NotMine:
                return {}
            mem.info = replace(mem.info, vmcoreinfo=self._vmcoreinfo)  # the stand-in when the dump has none
            found = kernel_globals.well_known(mem, partial(_offset, prog), size, endian, set(self._addresses),
                                         self._dump)
        return {name: glob.address for name, glob in found.items()}


def _offset(prog: drgn.Program, struct_name: str, member: str) -> int | None:
    drgn = import_drgn()
    try:
        return int(drgn.offsetof(prog.type(f"struct {struct_name}"), member))
    except (LookupError, ValueError):
        return None  # this configuration lacks the struct or member
