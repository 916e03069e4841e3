"""/proc/kcore (or any ELF core whose PT_LOADs are virtual ranges), read through a symbol source.

kcore describes the whole kernel address space, terabytes of it sparse: it is never scanned.
The archive's two symbols come from /proc/kallsyms or a System.map; only the bytes between them
are read, with pread (kcore cannot be mmapped).
"""

from __future__ import annotations

import os
import struct

from ..archive import xzstream
from ..archive.locate import END_SYMBOL, START_SYMBOL
from ..errors import Damaged, InputError, NotFound, UsageError
from ..model import Found, Layer, Method

KCORE = "/proc/kcore"
KALLSYMS = "/proc/kallsyms"
PT_LOAD = 1


def is_kcore(path: str) -> bool:
    return os.path.realpath(path) == KCORE


def symbol_addresses(symbol_file: str, *names: str) -> dict[str, int]:
    """Addresses from System.map / /proc/kallsyms lines: `address type name [module]`."""
    wanted, found = set(names), {}
    try:
        with open(symbol_file, encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in wanted:
                    found[parts[2]] = int(parts[0], 16)
    except OSError as exc:
        raise InputError(f"{symbol_file}: cannot read symbols: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{symbol_file}: not a System.map or kallsyms file") from None
    if any(found.get(n, 0) == 0 for n in names):
        missing = [n for n in names if found.get(n, 0) == 0]
        hint = " (addresses read as 0: run as root, or kptr_restrict hides them)" if found else ""
        raise NotFound(f"{symbol_file}: no {', '.join(missing)}: CONFIG_IKHEADERS is not built in{hint}")
    return found


def find_in_core(path: str, symbol_file: str) -> Found:
    """The archive from an ELF core with virtual PT_LOADs, at the symbols' addresses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from None
    try:
        symbols = symbol_addresses(symbol_file, START_SYMBOL, END_SYMBOL)
        start, end = symbols[START_SYMBOL], symbols[END_SYMBOL]
        if not 0 < end - start <= xzstream.MAX_ARCHIVE:
            raise Damaged(f"{symbol_file}: {END_SYMBOL} - {START_SYMBOL} = {end - start:#x} is not an archive size")
        offset = _file_offset(fd, path, start, end - start)
        archive = os.pread(fd, end - start, offset)
    finally:
        os.close(fd)
    if len(archive) != end - start:
        raise Damaged(f"the archive at {start:#x} is cut off after {len(archive)} bytes", offset=start, path=path)
    info = xzstream.stream_end(archive, 0)
    if any(archive[info.end :]):
        raise Damaged(f"the bytes at {start:#x} are not one xz stream", offset=start, path=path)
    layer = Layer("kernel core (virtual)", start, end - start, f"symbols from {symbol_file}")
    return Found(path=path, method=Method.SYMBOLS, offset=start, archive=archive, layers=(layer,),
                 notes=(f"read {START_SYMBOL}..{END_SYMBOL} only; the core was not scanned",))


def _file_offset(fd: int, path: str, vaddr: int, size: int) -> int:
    """Where virtual address `vaddr` lies in the core file, from its PT_LOAD headers."""
    header = os.pread(fd, 64, 0)
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
        raise NotFound("not a 64-bit ELF core", path=path)
    endian = "<" if header[5] == 1 else ">"
    e_type, = struct.unpack_from(f"{endian}H", header, 16)
    phoff, = struct.unpack_from(f"{endian}Q", header, 32)
    phentsize, phnum = struct.unpack_from(f"{endian}HH", header, 54)
    if e_type != 4 or phentsize < 56 or phnum > 1 << 16:
        raise NotFound("not an ELF core file", path=path)
    table = os.pread(fd, phentsize * phnum, phoff)
    for i in range(len(table) // phentsize):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(f"{endian}IIQQQQQQ", table,
                                                                           i * phentsize)
        if p_type == PT_LOAD and p_vaddr <= vaddr and vaddr + size <= p_vaddr + p_filesz:
            return int(p_offset + vaddr - p_vaddr)
    raise Damaged(f"no segment holds {vaddr:#x}..{vaddr + size:#x}", offset=vaddr, path=path)
