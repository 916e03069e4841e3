"""An independent oracle for the dump readers (issue 22): every page our reader returns for a corpus
dump equals what libkdumpfile returns for the same physical address, and the two agree on which
pages are present at all.

Every dump the corpus manifest lists is compared, whatever its stage or architecture: the boot
stages' QEMU dump-guest-memory files (dump.*) and the kdump stages' /proc/vmcore with its
makedumpfile outputs (vmcore*), so arm64 dumps are covered as soon as the corpus lists them.

libkdumpfile is Debian 12's libkdumpfile10 (0.5.1, fixtures/install-deps.sh), called through ctypes
below. No pykdumpfile on PyPI builds against 0.5.1 (0.5.5.1 and 0.5.3 name ADDRXLAT_PTE_ARM/RISCV*,
0.4.1 ADDRXLAT_SYM_*, none in 0.5.1's headers), and Debian's python3-libkdumpfile is built for
/usr/bin/python3 only; the few entry points used here are the library's stable C ABI (soname 10).
The oracle lives in the tests only: the package never imports libkdumpfile.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest
from conftest import REQUIRE_CORPUS, Corpus, corpus_params
from dump_builders import Seg, elf_core

from extract_ikheaders.dumps.physical import PhysicalMemory
from extract_ikheaders.dumps.search import open_dump

LIBRARY = "libkdumpfile.so.10"  # Debian 12's libkdumpfile10 (0.5.1)
_FLATTENED = b"makedumpfile\0\0\0\0"  # makedumpfile -F and QEMU 7.2's kdump-* output
_WINDOW = 4 << 20  # bytes of physical memory compared at a time

# kdump_status and kdump_attr_type_t values (libkdumpfile/kdumpfile.h)
_OK, _NODATA = 0, 3
_NUMBER, _STRING, _BITMAP = 2, 4, 5
# The address space of every read. KDUMP_KPHYSADDR (0) first sets up the kernel's address
# translation from VMCOREINFO, which 0.5.1 cannot do for the corpus kernels ("Cannot determine
# 5-level paging"); outside Xen the kernel's physical addresses are the machine's, and
# KDUMP_MACHPHYSADDR reads the file's own physical map: the addresses our readers use.
_MACHPHYSADDR = 1

# Dumps libkdumpfile 0.5.1 cannot read at all, by <stage without its hash>/<file name>, each with
# the reason; they are left out of the comparison, listed by test_the_oracle_covers_every_dump.
NOT_COMPARED = {
    "*.lime": "libkdumpfile has no LiME reader",
    "*/dump.win-dmp": "a Windows crash dump (QEMU win-dmp): libkdumpfile reads no Windows format",
    "boot-*arm64*/dump.kdump-*": "QEMU's aarch64 kdump output has 64 KiB blocks (its dump page size) for a 4 KiB-page "
                                 "guest: libkdumpfile fails to decompress them (zlib error -5, Z_BUF_ERROR)",
}
# Flattened files (makedumpfile -F, QEMU 7.2's dump-guest-memory kdump-*) are compared too: 0.5.1
# has no reader for them, so libkdumpfile reads the kdump file `makedumpfile -R` reassembles, and
# our flattened reader is checked against a rebuild neither it nor libkdumpfile made.


def _is_dump(name: str) -> bool:
    return name.startswith(("dump.", "vmcore"))


def dump_cases(corpus: Corpus) -> Iterator[tuple[str, str]]:
    """Every dump file in the manifest's "files" map that libkdumpfile reads, by its corpus path."""
    for rel in sorted(corpus.manifest["files"]):
        if _is_dump(rel.rpartition("/")[2]) and not _left_out(rel):
            yield _case(rel), rel


def _case(rel: str) -> str:
    stage_dir, _, name = rel.rpartition("/")
    return f"{stage_dir.rsplit('-', 1)[0]}/{name}"  # the directory without its recipe hash


def _left_out(rel: str) -> bool:
    return any(fnmatch(_case(rel), pattern) for pattern in NOT_COMPARED)


# libkdumpfile through ctypes ----------------------------------------------------------------


class _Value(ctypes.Union):
    _fields_ = [("number", ctypes.c_uint64), ("string", ctypes.c_char_p), ("pointer", ctypes.c_void_p)]


class _Attr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("val", _Value)]


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBRARY)
    lib.kdump_new.restype = ctypes.c_void_p
    lib.kdump_new.argtypes = []
    lib.kdump_free.restype = None
    lib.kdump_free.argtypes = [ctypes.c_void_p]
    lib.kdump_get_err.restype = ctypes.c_char_p
    lib.kdump_get_err.argtypes = [ctypes.c_void_p]
    lib.kdump_open_fdset.restype = ctypes.c_int
    lib.kdump_open_fdset.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_int)]
    lib.kdump_get_attr.restype = ctypes.c_int
    lib.kdump_get_attr.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Attr)]
    lib.kdump_read.restype = ctypes.c_int
    lib.kdump_read.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p,
                               ctypes.POINTER(ctypes.c_size_t)]
    for name in ("kdump_bmp_find_set", "kdump_bmp_find_clear"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
    return lib


class Kdumpfile:
    """One dump opened by libkdumpfile: its attributes and its physical memory as present runs."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self._lib = lib
        self._fd = os.open(path, os.O_RDONLY)
        self._ctx = lib.kdump_new()
        assert self._ctx, "kdump_new failed"
        self._buf = ctypes.create_string_buffer(_WINDOW)
        status = lib.kdump_open_fdset(self._ctx, 1, (ctypes.c_int * 1)(self._fd))
        if status != _OK:
            error = self._error()
            self.close()
            raise AssertionError(f"libkdumpfile cannot open {path}: {error}")

    def close(self) -> None:
        self._lib.kdump_free(self._ctx)
        os.close(self._fd)

    def _error(self) -> str:
        err = self._lib.kdump_get_err(self._ctx)
        return err.decode() if err else "(no message)"

    def _attr(self, key: str, kind: int) -> _Value | None:
        value = _Attr()
        if self._lib.kdump_get_attr(self._ctx, key.encode(), ctypes.byref(value)) != _OK:
            return None
        assert value.type == kind, f"libkdumpfile attribute {key} has type {value.type}, not {kind}"
        return value.val

    def number(self, key: str) -> int:
        value = self._attr(key, _NUMBER)
        assert value is not None, f"libkdumpfile attribute {key}: {self._error()}"
        return int(value.number)

    def string(self, key: str) -> str:
        """The attribute, or "-" when the dump does not set it (QEMU's kdump files name no machine)."""
        value = self._attr(key, _STRING)
        return (value.string or b"").decode() if value is not None else "-"

    def pagemap(self, limit_pfn: int) -> list[tuple[int, int]]:
        """Runs [first, end) of pfns below limit_pfn that libkdumpfile's file.pagemap marks present."""
        value = self._attr("file.pagemap", _BITMAP)
        assert value is not None, f"libkdumpfile attribute file.pagemap: {self._error()}"
        bmp, idx, runs = value.pointer, ctypes.c_uint64(0), []
        while idx.value < limit_pfn:
            if self._lib.kdump_bmp_find_set(bmp, ctypes.byref(idx)) != _OK or idx.value >= limit_pfn:
                break
            first = idx.value
            assert self._lib.kdump_bmp_find_clear(bmp, ctypes.byref(idx)) == _OK
            # Over overlapping segments (/proc/vmcore maps the kernel text twice) 0.5.1's
            # elf_find_clear can step back to the end of the inner one: go on a page at a time
            idx.value = max(idx.value, first + 1)
            end = min(idx.value, limit_pfn)
            if runs and runs[-1][1] >= first:
                runs[-1] = (runs[-1][0], max(runs[-1][1], end))
            else:
                runs.append((first, end))
        return runs

    def runs(self, lo: int, hi: int, page: int) -> list[tuple[int, bytes]]:
        """The present runs of [lo, hi) (at most _WINDOW bytes) and their bytes: kdump_read stops with
        KDUMP_ERR_NODATA at the first absent page, saying how much it read before it."""
        out: list[tuple[int, bytes]] = []
        addr = lo
        while addr < hi:
            length = ctypes.c_size_t(hi - addr)
            status = self._lib.kdump_read(self._ctx, _MACHPHYSADDR, addr, self._buf, ctypes.byref(length))
            if length.value:
                out.append((addr, ctypes.string_at(self._buf, length.value)))
            if status == _OK:
                break
            assert status == _NODATA, f"libkdumpfile read at {addr + length.value:#x}: {self._error()}"
            addr = (addr + length.value) // page * page + page  # past the absent page
        return out


@pytest.fixture(scope="module")
def libkdumpfile() -> ctypes.CDLL:
    try:
        return _load()
    except OSError as exc:
        reason = f"the oracle library {LIBRARY} is not installed (fixtures/install-deps.sh): {exc}"
        if os.environ.get(REQUIRE_CORPUS):
            pytest.fail(f"{reason} (and {REQUIRE_CORPUS} is set)")
        pytest.skip(reason)


@contextmanager
def opened(lib: ctypes.CDLL, path: Path) -> Iterator[Kdumpfile]:
    dump = Kdumpfile(lib, path)
    try:
        yield dump
    finally:
        dump.close()


# The comparison -----------------------------------------------------------------------------


@dataclass
class Counts:
    compared: int = 0  # pages both readers return
    equal: int = 0
    partial: int = 0  # of the equal ones, pages an ELF segment covers in part (below)
    phantom: int = 0  # pages libkdumpfile invents below an ELF segment (below)
    differing: list[int] = field(default_factory=list)  # pfns whose bytes differ
    only_ours: list[int] = field(default_factory=list)  # pfns we return and libkdumpfile does not
    only_theirs: list[int] = field(default_factory=list)  # pfns libkdumpfile returns and we do not

    def line(self) -> str:
        return (f"{self.compared} pages compared, {self.equal} equal ({self.partial} partial), "
                f"{len(self.differing)} differing, {len(self.only_ours)} only ours, "
                f"{len(self.only_theirs)} only libkdumpfile's (+{self.phantom} phantom)")


def _pages(runs: list[tuple[int, bytes]], page: int) -> dict[int, tuple[int, bytes]]:
    """pfn -> (offset of the present bytes in the page, those bytes)."""
    pages: dict[int, tuple[int, bytes]] = {}
    for start, data in runs:
        at = start
        while at < start + len(data):
            pfn, skip = divmod(at, page)
            take = min(page - skip, start + len(data) - at)
            chunk = data[at - start : at - start + take]
            if pfn in pages:  # two runs share the page: join them (a hole between them stays a hole)
                off, prev = pages[pfn]
                chunk = prev + bytes(skip - off - len(prev)) + chunk
                skip = off
            pages[pfn] = (skip, chunk)
            at += take
    return pages


def _zero_filled(ours: tuple[int, bytes], theirs: tuple[int, bytes], page: int) -> bool:
    """libkdumpfile's whole page holds our bytes where we have them and zeros elsewhere. Its ELF
    reader serves every page a LOAD segment touches, zero-filling what the segment leaves out
    (kdumpfile.h: "If only part of a page is present, the corresponding bit is set to 1"): /proc/vmcore's
    first segment ends at 0x9fc00, inside a page. Our reader serves the bytes the segment has."""
    (off, data), (their_off, their_data) = ours, theirs
    return (their_off == 0 and len(their_data) == page and their_data[off : off + len(data)] == data
            and not their_data[:off].strip(b"\0") and not their_data[off + len(data) :].strip(b"\0"))


def _phantom(pfn: int, theirs: tuple[int, bytes], starts: set[int], pagemap: list[tuple[int, int]],
             page: int) -> bool:
    """A page libkdumpfile 0.5.1 invents: all zeros, just below a LOAD segment that starts on a page
    boundary, in no segment and not in its own file.pagemap. find_closest_load() takes a segment that
    starts a whole page above the address for the page's own (test_libkdumpfile_invents_the_page_below_a_segment
    shows it on a small core); the ELF has no byte of that page, and our reader has none either."""
    i = bisect.bisect_right(pagemap, (pfn, 1 << 64)) - 1
    in_pagemap = i >= 0 and pagemap[i][0] <= pfn < pagemap[i][1]
    return (pfn + 1) * page in starts and not in_pagemap and theirs[0] == 0 and theirs[1] == bytes(page)


def _probed(runs: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """The runs, each with the page either side of it (where off-by-one errors show), merged."""
    merged: list[tuple[int, int]] = []
    for first, end in sorted((max(0, first - 1), min(limit, end + 1)) for first, end in runs):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((first, end))
    return merged


def _ours(mem: PhysicalMemory, mem_ranges: list[tuple[int, int]], ends: list[int], lo: int,
          hi: int) -> list[tuple[int, bytes]]:
    out = []
    for start, end in mem_ranges[bisect.bisect_right(ends, lo) :]:
        if start >= hi:
            break
        start, end = max(lo, start), min(hi, end)
        data = mem.read_some(start, end - start)  # short only if ranges() and reads disagree
        if data:
            out.append((start, data))
    return out


def compare(mem: PhysicalMemory, theirs: Kdumpfile, page: int) -> Counts:
    """Window by window over the pages either reader has: ours by ranges(), libkdumpfile's by its
    file.pagemap, each run with the page either side of it; a stretch both call absent is not read
    page by page (one kdump_read of an absent page costs 10-20 us, and QEMU's dumps span 4 GiB).
    Whatever is present is what each reader's reads return."""
    mem_ranges = list(mem.ranges())
    ends = [end for _, end in mem_ranges]
    limit = max(theirs.number("max_pfn"), (ends[-1] + page - 1) // page if ends else 0)
    ours_pfns = [(start // page, (end + page - 1) // page) for start, end in mem_ranges]
    elf = theirs.string("file.format") == "elf"  # the two libkdumpfile ELF behaviours above
    starts = {start for start, _ in mem_ranges if start % page == 0} if elf else set()
    pagemap = theirs.pagemap(limit)
    counts = Counts()
    for first, end in _probed(ours_pfns + pagemap, limit):
        for lo in range(first * page, end * page, _WINDOW):
            hi = min(end * page, lo + _WINDOW)
            ours, their_runs = _ours(mem, mem_ranges, ends, lo, hi), theirs.runs(lo, hi, page)
            if ours == their_runs:  # the common case, compared at C speed
                pages = len({pfn for s, d in ours for pfn in range(s // page, (s + len(d) - 1) // page + 1)})
                counts.compared += pages
                counts.equal += pages
                continue
            _compare_pages(_pages(ours, page), _pages(their_runs, page), counts, elf, starts, pagemap, page)
    return counts


def _compare_pages(a: dict[int, tuple[int, bytes]], b: dict[int, tuple[int, bytes]], counts: Counts, elf: bool,
                   starts: set[int], pagemap: list[tuple[int, int]], page: int) -> None:
    for pfn in sorted(a.keys() | b.keys()):
        if pfn not in b:
            counts.only_ours.append(pfn)
        elif pfn not in a:
            if elf and _phantom(pfn, b[pfn], starts, pagemap, page):
                counts.phantom += 1
            else:
                counts.only_theirs.append(pfn)
        else:
            counts.compared += 1
            if a[pfn] == b[pfn]:
                counts.equal += 1
            elif elf and _zero_filled(a[pfn], b[pfn], page):
                counts.equal += 1
                counts.partial += 1
            else:
                counts.differing.append(pfn)


def _reassembled(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / (path.name + ".reassembled")
    with path.open("rb") as flat:
        subprocess.run(["makedumpfile", "-R", str(out)], stdin=flat, check=True, capture_output=True, timeout=600)
    return out


def _flattened(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_FLATTENED)) == _FLATTENED


def _describe(pfns: list[int], page: int) -> str:
    shown = ", ".join(f"{pfn * page:#x}" for pfn in pfns[:8])
    return f"{len(pfns)} pages ({shown}{', ...' if len(pfns) > 8 else ''})"


@pytest.mark.slow  # 0.2-6 s a file: about 1 min for the 31 x86_64 dumps on one core, 45 s with -n 2
@pytest.mark.parametrize("rel", corpus_params(dump_cases))
def test_every_page_equals_libkdumpfile(corpus: Corpus, libkdumpfile: ctypes.CDLL, rel: str,
                                        tmp_path: Path) -> None:
    path = corpus.root / rel
    assert path.is_file(), f"corpus file missing: {path}"
    oracle_path = _reassembled(path, tmp_path) if _flattened(path) else path  # see NOT_COMPARED
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf, \
            opened(libkdumpfile, oracle_path) as theirs:
        mem = open_dump(buf)
        page = theirs.number("arch.page_size")
        counts = compare(mem, theirs, page)
        rebuilt = " (makedumpfile -R)" if oracle_path != path else ""
        header = (f"{rel}: {mem.info.format} / libkdumpfile {theirs.string('file.format')}{rebuilt} "
                  f"{theirs.string('arch.name')}: {counts.line()}")
        print(header)
    assert not counts.differing, f"{header}; differing: {_describe(counts.differing, page)}"
    assert not counts.only_ours, f"{header}; only ours: {_describe(counts.only_ours, page)}"
    assert not counts.only_theirs, f"{header}; only libkdumpfile's: {_describe(counts.only_theirs, page)}"
    assert counts.compared == counts.equal > 0


def test_the_oracle_covers_every_dump(corpus: Corpus) -> None:
    """Every dump file the manifest lists is compared or left out by NOT_COMPARED; the corpus has
    each kind the readers handle: QEMU ELF and flattened kdump, /proc/vmcore, makedumpfile ELF and
    kdump outputs."""
    names = [rel.rpartition("/")[2] for rel in corpus.manifest["files"] if _is_dump(rel.rpartition("/")[2])]
    compared = [rel.rpartition("/")[2] for _, rel in dump_cases(corpus)]
    left_out = [rel.rpartition("/")[2] for rel in corpus.manifest["files"]
                if _is_dump(rel.rpartition("/")[2]) and _left_out(rel)]
    assert sorted(compared + left_out) == sorted(names)
    for kind in ("dump.elf", "dump.kdump-zlib", "vmcore", "vmcore.elf-d31", "vmcore.kdump-zlib-d31",
                 "vmcore.kdump-lzo-d1", "vmcore.flat-zlib-d31"):
        assert kind in compared


# The oracle's own rules, on a core of two segments ---------------------------------------------


def _core(tmp_path: Path, flip: int | None = None) -> Path:
    """Segment 1 at 0x100000 (page-aligned, 4 pages of 0xaa); segment 2 at 0x200800, 0x1000 bytes of
    0xbb: it touches pages 0x200000 and 0x201000 in part. `flip`: one byte of segment 1 changed."""
    first = bytearray(b"\xaa" * 0x4000)
    if flip is not None:
        first[flip] ^= 0xFF
    path = tmp_path / f"core-{flip}"
    path.write_bytes(elf_core([Seg(0x100000, bytes(first)), Seg(0x200800, b"\xbb" * 0x1000)]))
    return path


def test_libkdumpfile_invents_the_page_below_a_segment(libkdumpfile: ctypes.CDLL, tmp_path: Path) -> None:
    """libkdumpfile 0.5.1 reads the page below a page-aligned segment as zeros (no segment has a
    byte of it: a phantom), and zero-fills the pages a segment covers in part; every other page
    agrees with our reader byte for byte."""
    path = _core(tmp_path)
    with opened(libkdumpfile, path) as theirs:
        assert [(start, len(data)) for start, data in theirs.runs(0xF0000, 0x210000, 4096)] == [
            (0xFF000, 0x5000), (0x200000, 0x2000)]
        assert theirs.runs(0xFF000, 0x100000, 4096) == [(0xFF000, bytes(4096))]
        mem = open_dump(path.read_bytes())
        assert list(mem.ranges()) == [(0x100000, 0x104000), (0x200800, 0x201800)]
        counts = compare(mem, theirs, 4096)
    assert (counts.compared, counts.equal, counts.partial, counts.phantom) == (6, 6, 2, 1)
    assert counts.differing == counts.only_ours == counts.only_theirs == []


def test_the_oracle_sees_one_changed_byte(libkdumpfile: ctypes.CDLL, tmp_path: Path) -> None:
    """Our reader over a core whose byte 0x2345 differs: that page, and only that page, differs."""
    with opened(libkdumpfile, _core(tmp_path)) as theirs:
        counts = compare(open_dump(_core(tmp_path, flip=0x2345).read_bytes()), theirs, 4096)
    assert counts.differing == [0x102] and counts.compared == 6 and counts.equal == 5
