"""drgn on a crash image with no vmlinux: types from the dump's own headers, symbols from its kallsyms.

`open_program(dump)` returns a drgn Program whose
- types come from the types object (debuginfo.build_types: the headers archive compiled with the
  kernel's configuration), loaded as an extra module;
- symbols come from kallsyms decoded through VMCOREINFO (kallsyms.read_dump), or from a System.map
  (relocated by the dump's KASLR offset);
- objects: the well-known globals the types object names (typedef __kheaders_type_<name>, see
  debuginfo.GLOBALS) are found by type, so `prog["init_task"]`, `prog["init_pid_ns"]`, `prog["modules"]`
  and drgn's helpers that use them work unchanged. Each global's address comes from, in order:
  the symbol table; VMCOREINFO's SYMBOL(name); or, since kallsyms holds only functions unless the
  kernel has CONFIG_KALLSYMS_ALL, from the data itself: init_task is the task named "swapper" with
  pid 0 whose namespaces lead to VMCOREINFO's init_uts_ns, and init_pid_ns, init_nsproxy, init_cred,
  init_user_ns, init_fs, init_files, init_struct_pid are its pointers; init_mm is the mm_struct whose pgd
  is swapper_pg_dir; `modules` is the list head next to init_task whose entries are struct modules.

Run `python -m extract_ikheaders.drgn VMCORE` for drgn's interactive shell, or add `-c CODE` or
`SCRIPT [ARGS]` (cli.drgn_main). drgn is the `analysis` extra.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from .debuginfo import TYPE_PREFIX, Types
from .errors import ExtractError, InputError, NotFound

if TYPE_CHECKING:
    import drgn

Symbol = tuple[int, str, str]  # (address, type char, name) as kallsyms.Symbol

SEARCH_SPAN = 32 << 20  # bytes either side of init_uts_ns searched for init_task (both lie in .data)
NEAR_SPAN = 8 << 20  # bytes either side of init_task searched for `modules` and init_mm
_CHUNK = 1 << 20
_PAGE = 4096  # the smallest page size: reads around pages a filtered dump left out
_KERNEL_HALF = 0xFFFF000000000000  # System.map addresses the KASLR offset moves (not percpu offsets)
_MODULE_NAME = re.compile(rb"[A-Za-z0-9_-]{1,55}\0")


class DrgnMissing(ExtractError):
    """drgn is not installed."""

    exit_code = 2


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
                 kernel_source: str | os.PathLike[str] | None = None, types: Types | None = None) -> Opened:
    """A drgn Program over `dump` (a crash image drgn reads: ELF vmcore, kdump-compressed) with the
    kernel's types and symbols wired in. `symbols` is a System.map to use instead of kallsyms."""
    drgn = import_drgn()
    from . import debuginfo

    name = os.fspath(dump)
    types = types or debuginfo.build_types(name, kernel_source=kernel_source)
    prog = drgn.Program()
    try:
        prog.set_core_dump(name)
    except (OSError, ValueError, drgn.MissingDebugInfoError) as exc:
        raise InputError(f"{name}: drgn cannot open it as a crash dump: {exc}") from None
    vmcoreinfo = _vmcoreinfo(prog)
    table, source = _symbols(name, symbols, vmcoreinfo)
    module = prog.extra_module("kheaders_types", 0, create=True)
    module.try_file(str(types.path), force=True)
    prog.register_symbol_finder("kheaders_symbols", drgn.SymbolIndex(drgn_symbols(table)), enable_index=0)
    finder = GlobalFinder({sym[2]: sym[0] for sym in table}, vmcoreinfo, set(types.globals))
    prog.register_object_finder("kheaders_globals", finder, enable_index=-1)
    return Opened(prog, types, len(table), source)


def _vmcoreinfo(prog: drgn.Program) -> dict[str, str]:
    try:
        text = prog["VMCOREINFO"].string_().decode(errors="replace")
    except (LookupError, ValueError):
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _symbols(dump: str, system_map: str | os.PathLike[str] | None,
             vmcoreinfo: dict[str, str]) -> tuple[list[Symbol], str]:
    if system_map is not None:
        return relocate(read_system_map(Path(system_map)), vmcoreinfo), os.fspath(system_map)
    from . import api, kallsyms

    with api.open_input(dump) as buf:
        return kallsyms.read_dump(buf, dump).symbols, "kallsyms"


def read_system_map(path: Path) -> list[Symbol]:
    """System.map / /proc/kallsyms lines: `address type name [module]`."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[1]) == 1:
            try:
                out.append((int(parts[0], 16), parts[1], parts[2]))
            except ValueError:
                continue
    if not out:
        raise NotFound(f"{path}: no `address type name` lines: not a System.map")
    return out


def relocate(table: list[Symbol], vmcoreinfo: dict[str, str]) -> list[Symbol]:
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


# Globals that are init_task's own pointers: name -> the path from init_task to the object.
_FROM_INIT_TASK: dict[str, Callable[[drgn.Object], drgn.Object]] = {
    "init_pid_ns": lambda t: t.thread_pid.numbers[0].ns[0],
    "init_struct_pid": lambda t: t.thread_pid[0],
    "init_nsproxy": lambda t: t.nsproxy[0],
    "init_uts_ns": lambda t: t.nsproxy.uts_ns[0],
    "init_ipc_ns": lambda t: t.nsproxy.ipc_ns[0],
    "init_net": lambda t: t.nsproxy.net_ns[0],
    "init_cred": lambda t: t.real_cred[0],
    "init_user_ns": lambda t: t.real_cred.user_ns[0],
    "init_fs": lambda t: t.fs[0],
    "init_files": lambda t: t.files[0],
}
# VMCOREINFO SYMBOL()s that are not the variable's address (VMCOREINFO_SYMBOL_ARRAY of a pointer).
_NOT_ADDRESSES = {"mem_section"}


class GlobalFinder:
    """drgn object finder: a typed global at the address the symbols, VMCOREINFO or the data give."""

    def __init__(self, addresses: dict[str, int], vmcoreinfo: dict[str, str], typed: set[str]) -> None:
        self._addresses = addresses
        self._vmcoreinfo = vmcoreinfo
        self._typed = typed
        self._found: dict[str, drgn.Object | None] = {}

    def __call__(self, prog: drgn.Program, name: str, flags: drgn.FindObjectFlags,
                 filename: str | None) -> drgn.Object | None:
        drgn = import_drgn()
        if name not in self._typed or not flags & drgn.FindObjectFlags.VARIABLE:
            return None
        if name not in self._found:
            self._found[name] = self._find(prog, name)
        return self._found[name]

    def _type(self, prog: drgn.Program, name: str) -> drgn.Type:
        return prog.type(TYPE_PREFIX + name).type

    def _find(self, prog: drgn.Program, name: str) -> drgn.Object | None:
        drgn = import_drgn()
        address = self.address(name)
        if address is not None:
            return drgn.Object(prog, self._type(prog, name), address=address)
        try:
            return self._derive(prog, name)
        except (drgn.FaultError, LookupError, AttributeError, ValueError):
            return None  # this kernel's configuration lacks the member, or memory is missing

    def address(self, name: str) -> int | None:
        if name in self._addresses:
            return self._addresses[name]
        value = self._vmcoreinfo.get(f"SYMBOL({name})")
        return int(value, 16) if value and name not in _NOT_ADDRESSES else None

    def _derive(self, prog: drgn.Program, name: str) -> drgn.Object | None:
        if name == "init_task":
            return find_init_task(prog, self.address("init_uts_ns"))
        task = prog["init_task"]
        if name in _FROM_INIT_TASK:
            return _FROM_INIT_TASK[name](task)
        if name == "init_mm":
            return find_init_mm(prog, task, self.address("swapper_pg_dir"))
        if name == "modules":
            return find_modules(prog, task.address_)
        return None


def _chunks(prog: drgn.Program, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Kernel memory [start, end) a chunk at a time, skipping what the dump does not hold."""
    drgn = import_drgn()
    for addr in range(start & ~(_CHUNK - 1), end, _CHUNK):
        try:
            yield addr, prog.read(addr, _CHUNK)
        except drgn.FaultError:
            # Filtered dumps (makedumpfile -d) leave out zero and free pages: read what is there.
            pages = [_page(prog, page) for page in range(addr, addr + _CHUNK, _PAGE)]
            if any(pages):
                yield addr, b"".join(page or bytes(_PAGE) for page in pages)


def _page(prog: drgn.Program, address: int) -> bytes | None:
    try:
        data: bytes = prog.read(address, _PAGE)
        return data
    except import_drgn().FaultError:
        return None


def find_init_task(prog: drgn.Program, init_uts_ns: int | None) -> drgn.Object | None:
    """The boot CPU's idle task: comm "swapper" or "swapper/0", pid 0, on the task list, and (when
    VMCOREINFO names init_uts_ns) in the initial UTS namespace. Searched near init_uts_ns in .data."""
    if init_uts_ns is None:
        return None
    drgn = import_drgn()
    task_type = prog.type("struct task_struct")
    comm = drgn.offsetof(task_type, "comm")
    for base, data in _chunks(prog, init_uts_ns - SEARCH_SPAN, init_uts_ns + SEARCH_SPAN):
        for match in re.finditer(rb"swapper(?:/0)?\0", data):
            address = base + match.start() - comm
            if address % 8 == 0 and _is_init_task(prog, drgn.Object(prog, task_type, address=address), init_uts_ns):
                return drgn.Object(prog, task_type, address=address)
    return None


def _is_init_task(prog: drgn.Program, task: drgn.Object, init_uts_ns: int) -> bool:
    drgn = import_drgn()
    try:
        tasks = task.tasks
        return bool(task.pid.value_() == 0 and tasks.next.prev.value_() == tasks.address_
                and tasks.prev.next.value_() == tasks.address_
                and task.nsproxy.uts_ns.value_() == init_uts_ns)
    except (drgn.FaultError, LookupError, AttributeError):
        return False


def _words(prog: drgn.Program, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(address, value) of every aligned pointer-sized word in [start, end) the dump holds."""
    import array

    flags = prog.platform.flags if prog.platform is not None else 0
    size = 8 if flags & import_drgn().PlatformFlags.IS_64_BIT else 4
    for base, data in _chunks(prog, start, end):
        words = array.array("Q" if size == 8 else "I", data)
        if not flags & import_drgn().PlatformFlags.IS_LITTLE_ENDIAN:
            words.byteswap()
        for i, value in enumerate(words):
            yield base + i * size, value


def find_init_mm(prog: drgn.Program, task: drgn.Object, swapper_pg_dir: int | None) -> drgn.Object | None:
    """The mm_struct whose pgd is swapper_pg_dir: init_task's active_mm if it still is, else searched."""
    drgn = import_drgn()
    if swapper_pg_dir is None:
        return None
    active = task.active_mm
    if active.value_() and active.pgd.value_() == swapper_pg_dir:
        return active[0]
    mm_type = prog.type("struct mm_struct")
    pgd = drgn.offsetof(mm_type, "pgd")
    start = task.address_
    for address, value in _words(prog, start - NEAR_SPAN, start + NEAR_SPAN):
        if value == swapper_pg_dir:
            mm = drgn.Object(prog, mm_type, address=address - pgd)
            try:
                if mm.mmap_base.value_() == 0 or mm.mm_users.counter.value_() >= 1:
                    return mm
            except (drgn.FaultError, AttributeError):
                continue
    return None


def find_modules(prog: drgn.Program, near: int) -> drgn.Object | None:
    """The `modules` list head: a list_head in the kernel's data whose entries are struct modules
    (outside the kernel image, each with a plausible name and state, linked back to the head).
    An empty list is not recognisable: None."""
    drgn = import_drgn()
    try:
        module_type = prog.type("struct module")
    except LookupError:
        return None  # CONFIG_MODULES=n
    list_offset = drgn.offsetof(module_type, "list")
    head_type = prog.type("struct list_head")
    lo, hi = near - NEAR_SPAN, near + NEAR_SPAN
    previous = (0, 0)
    for address, value in _words(prog, lo, hi):
        candidate = previous[0]
        next_entry, prev_entry = previous[1], value
        previous = (address, value)
        if (candidate % 8 or min(next_entry, prev_entry) <= list_offset or lo <= next_entry < hi
                or lo <= prev_entry < hi):
            continue
        if _is_modules_head(prog, candidate, next_entry, prev_entry, module_type, list_offset):
            return drgn.Object(prog, head_type, address=candidate)
    return None


def _is_modules_head(prog: drgn.Program, head: int, first: int, last: int, module_type: drgn.Type,
                     list_offset: int) -> bool:
    drgn = import_drgn()
    try:
        entry = drgn.Object(prog, module_type, address=first - list_offset)
        tail = drgn.Object(prog, module_type, address=last - list_offset)
        return (entry.list.prev.value_() == head and tail.list.next.value_() == head
                and 0 <= entry.state.value_() <= 3
                and _MODULE_NAME.match(prog.read(entry.name.address_, 56)) is not None)
    except (drgn.FaultError, LookupError, AttributeError, ValueError):
        return False


if __name__ == "__main__":
    from .cli import drgn_main

    drgn_main()
