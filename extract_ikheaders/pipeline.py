"""The public functions: find the archive in an input, read it, list it, unpack it.

The pipeline peels one container at a time (compressed file, bzImage, ELF) until it holds bytes
in which archive/locate.py can find the archive; each peeled container is recorded as a Layer.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import arch, imagetext, lazy
from .archive import locate, xzstream
from .buffer import Buffer
from .elf.reader import ELF_MAGIC, CorruptElf, ElfImage
from .errors import Damaged, ExtractError, InputError, NotFound, NotMine, UsageError
from .images import registry

if TYPE_CHECKING:  # loaded on first use (lazy.py): an image never needs the crash-dump stage, and
    # finding an archive never needs the tar reader (tarfile, hashlib: 7 ms of a start)
    from .archive import tarwalk, unpack
    from .dumps import kcore, search, split
    from .dumps.physical import PhysicalMemory
else:
    split = lazy.module("extract_ikheaders.dumps.split")
    kcore = lazy.module("extract_ikheaders.dumps.kcore")
    search = lazy.module("extract_ikheaders.dumps.search")
    tarwalk = lazy.module("extract_ikheaders.archive.tarwalk")
    unpack = lazy.module("extract_ikheaders.archive.unpack")
from .images.peeler import Peeled
from .model import Check, Extracted, Found, KernelConfig, Layer, Member, Method, Platform

_UTS_RELEASE = re.compile(rb'#define UTS_RELEASE "([^"]+)"')


def find(path: str | os.PathLike[str], *, symbols: str | os.PathLike[str] | None = None,
         progress: Callable[[int, int], None] | None = None, verify: bool = True) -> Found:
    """Locate the headers archive in `path` and return it, checked.

    `verify` (the default) decodes the whole archive once, so that every block's check (CRC64) is
    verified; without it only the structure is checked (xzstream.check_structure), in a fraction
    of the time. Found.verified says which. Unpacking and listing decode the whole archive anyway:
    they verify the content with no second decode.
    `symbols` (a System.map or /proc/kallsyms) makes an ELF core with virtual segments, like
    /proc/kcore, be read at kernel_headers_data only; /proc/kcore uses /proc/kallsyms by default.
    `progress(done, total)` is called as a crash image's memory is searched.
    Raises NotFound (no archive), Damaged (an archive that is truncated or corrupt) or
    InputError (unreadable input).
    """
    name = os.fspath(path)
    try:
        return _find(name, symbols, progress, verify)
    except ExtractError as exc:
        exc.located(path=name)
        raise


def _find(name: str, symbols: str | os.PathLike[str] | None, progress: Callable[[int, int], None] | None,
          verify: bool) -> Found:
    if symbols is not None or kcore.is_kcore(name):
        found = kcore.find_in_core(name, os.fspath(symbols) if symbols is not None else kcore.KALLSYMS)
    else:
        with open_input(name) as buf:
            found = _search(buf, name, (), progress, verify)
    return _checked(found, verify)


def _checked(found: Found, verify: bool) -> Found:
    """`found`, checked as far as asked (the search may have decoded it already)."""
    wanted = Check.CONTENT if verify else Check.STRUCTURE
    if found.verified == Check.CONTENT or found.verified == wanted:
        return found
    try:
        if verify:
            xzstream.verify(found.archive, found.offset)
        else:
            xzstream.check_structure(found.archive, found.offset)
    except Damaged as exc:
        exc.data = found.archive
        raise
    return replace(found, verified=wanted)


def find_config(path: str | os.PathLike[str]) -> KernelConfig:
    """The kernel's own .config (CONFIG_IKCONFIG) from the same kinds of input as find()."""
    name = os.fspath(path)
    with open_input(name) as buf:
        mem = _open_dump(buf)
        if mem is not None:
            try:
                return _config_in_dump(mem, name)
            except NotFound as exc:
                raise search.with_partial(exc, mem) from None
        source = peel(buf, name, ())
        if source.chunks is not None:
            return _config_in_stream(source, name)
        assert source.data is not None
        span = None
        if source.elf is not None:
            try:
                span = locate.config_by_symbols(source.elf)
            except CorruptElf:
                span = None
        span = span or locate.config_by_markers(source.data)
        if span is None:
            raise NotFound("cannot find the kernel's .config (was it built with CONFIG_IKCONFIG?)", path=name)
        text = locate.gunzip_config(bytes(source.data[span.start : span.end]), span.start)
        return KernelConfig(name, span.method, span.start, text, source.layers)


@dataclass(frozen=True)
class Kernel:
    """An input peeled down to the kernel itself: a crash dump's physical memory, or the whole
    kernel image (decoded when it was compressed) with the ELF file it is, if it is one."""

    path: str
    layers: tuple[Layer, ...] = ()
    memory: PhysicalMemory | None = None
    image: Buffer | None = None
    elf: ElfImage | None = None
    source: Buffer | None = None  # a dump's own bytes (its notes: QEMU's CPU registers)


@contextmanager
def open_kernel(path: str | os.PathLike[str]) -> Iterator[Kernel]:
    """What analysis/ reads the kernel's tables from (kallsyms): a dump as memory, anything else
    peeled to its kernel image (a compressed one decoded whole, within compression.MAX_IMAGE)."""
    name = os.fspath(path)
    with open_input(name) as buf:
        mem = _open_dump(buf)
        if mem is not None:
            try:
                yield Kernel(name, mem.info.outer, memory=mem, source=buf)
            except (NotFound, Damaged) as exc:
                raise search.with_partial(exc, mem) from None
            return
        source = peel(buf, name)
        if source.chunks is not None:
            data = _whole_stream(source.chunks)
            layer = Layer("raw image", 0, len(data), f"{len(data)} bytes decompressed")
            yield Kernel(name, (*source.layers, layer), image=data)
            return
        yield Kernel(name, source.layers, image=source.data, elf=source.elf)


def _open_dump(buf: Buffer) -> PhysicalMemory | None:
    if not _may_be_dump(buf):
        return None
    try:
        return search.open_dump(buf)
    except NotMine:
        return None


def dump_release(buf: Buffer) -> str | None:
    """A crash dump's release from its metadata (VMCOREINFO, a kdump header's utsname), or None."""
    try:
        mem = _open_dump(buf)
    except ExtractError:
        return None
    return (mem.info.vmcoreinfo.get("OSRELEASE") or mem.info.release) if mem is not None else None


def _whole_stream(chunks: Iterator[bytes]) -> bytearray:
    """A decoded payload in one buffer (chunks are capped at compression.MAX_IMAGE by _peel_one)."""
    data = bytearray()
    try:
        for chunk in chunks:
            data += chunk
    finally:
        _close(chunks)
    return data


def _config_in_dump(mem: PhysicalMemory, path: str) -> KernelConfig:
    """IKCFG_ST ... IKCFG_ED in a crash image's physical memory (contiguous in .rodata)."""
    for lo, hi in mem.ranges():
        pos = mem.find(locate.CONFIG_START_MARKER, lo, hi)
        while pos != -1:
            data = mem.read_some(pos, locate.CONFIG_MAX_GZIP)
            span = locate.config_by_markers(data)
            if span is not None:
                text = locate.gunzip_config(data[span.start : span.end], pos + span.start)
                layer = Layer("physical memory", pos + span.start, span.end - span.start, "IKCFG_ST..IKCFG_ED")
                return KernelConfig(path, span.method, pos + span.start, text, (layer,))
            pos = mem.find(locate.CONFIG_START_MARKER, pos + 1, hi)
    raise NotFound("cannot find the kernel's .config in the dump's memory "
                   "(was the kernel built with CONFIG_IKCONFIG?)", path=path)


def _config_in_stream(source: Peeled, path: str) -> KernelConfig:
    assert source.chunks is not None
    scanner = locate.ConfigScanner()
    try:
        for chunk in source.chunks:
            if scanner.feed(chunk):
                break
    finally:
        _close(source.chunks)
    if scanner.found is None:
        raise NotFound("cannot find the kernel's .config in the decompressed kernel "
                       "(was it built with CONFIG_IKCONFIG?)", path=path)
    text = locate.gunzip_config(scanner.gzip, scanner.found.start)
    image = Layer("raw image", 0, scanner.found.end, "decompressed payload, read up to the config's end")
    return KernelConfig(path, scanner.found.method, scanner.found.start, text, (*source.layers, image))


def read_archive(path: str | os.PathLike[str], *, verify: bool = True) -> bytes:
    """The exact embedded .tar.xz bytes."""
    return find(path, verify=verify).archive


def list_members(path: str | os.PathLike[str]) -> tuple[Member, ...]:
    """The archive's members (decoding the whole archive, which verifies it)."""
    found = find(path, verify=False)
    return unpack.list_members(found.archive, base_offset=found.offset)


def extract(path: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *,
            force: bool = False, max_bytes: int | None = None,
            max_members: int | None = None) -> tuple[Found, Extracted]:
    """Unpack the archive into `dest` (default: ./kheaders-<release>) safely. `max_bytes` and
    `max_members` (None: the defaults, 1 GiB and 200,000) must be positive: UsageError otherwise."""

    for name, value in (("max_bytes", max_bytes), ("max_members", max_members)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be a positive number, not {value}")
    found = find(path, verify=False)  # unpacking decodes it all: one decode verifies it
    target = Path(dest) if dest is not None else Path(default_directory(found)[0])
    extracted = unpack.extract(found.archive, target, force=force, base_offset=found.offset,
                               max_bytes=unpack.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
                               max_members=unpack.DEFAULT_MAX_MEMBERS if max_members is None else max_members)
    return replace(found, verified=Check.CONTENT), extracted


def platform_of(found: Found) -> Platform | None:
    """The architecture, byte order and word size: what the image's headers said, else what the
    archive says (arch/<arch>/include and autoconf.h; this decodes the archive up to autoconf.h)."""
    return found.platform if found.platform is not None else archive_platform(found.archive)


def archive_platform(archive: bytes, autoconf: bytes | None = None) -> Platform | None:
    """What a headers archive says: arch/<arch>/ names the architecture, autoconf.h (the archive's own
    unless given) the word size and byte order. Decodes the archive's first 256 KiB (and up to autoconf.h)."""

    names = list(tarwalk.names_at_start(xzstream.decode_prefix(archive, 256 * 1024)))
    if autoconf is None:
        autoconf = archive_member(archive, AUTOCONF_H)
    return arch.from_archive(names, autoconf)


def default_directory(found: Found) -> tuple[str, str | None]:
    """./kheaders-<release>, and a note when the image's release cannot be a file name (then the
    name comes from the archive's sha256)."""
    release = found.release or release_from_archive(found.archive)
    name = imagetext.name_part(release)
    if name is not None:
        return f"kheaders-{name}", None
    fallback = imagetext.fallback_name(found.sha256)
    if release is None:
        return fallback, f"no release in the image: unpacked into {fallback}"
    return fallback, (f"the image's release \"{imagetext.shown(release)}\" cannot be a file name "
                      f"(at most {imagetext.MAX_NAME_PART} printable characters, no '/', not '.' or '..'): "
                      f"unpacked into {fallback}")


UTSRELEASE_H = "include/generated/utsrelease.h"
AUTOCONF_H = "include/generated/autoconf.h"


def release_from_archive(archive: bytes, utsrelease: bytes | None = None) -> str | None:
    """UTS_RELEASE from include/generated/utsrelease.h (the archive's, decoded up to it, unless given)."""
    text = archive_member(archive, UTSRELEASE_H) if utsrelease is None else utsrelease
    match = _UTS_RELEASE.search(text or b"")
    return imagetext.decode(match.group(1)) if match else None


def archive_member(archive: bytes, name: str, limit: int = 16 << 20) -> bytes | None:
    """One regular file's bytes from the archive (decodes up to it), or None (absent, larger than
    `limit`, or the archive is unreadable before it)."""

    return archive_members(archive, (name,), limit).get(name)


def archive_members(archive: bytes, names: tuple[str, ...], limit: int = 16 << 20) -> dict[str, bytes]:
    """The regular files `names` that the archive holds (at most `limit` bytes each), in one walk;
    what an unreadable archive has not given before the damage is missing."""
    try:
        return unpack.read_members(archive, names, limit)
    except ExtractError:
        return {}


# Input ---------------------------------------------------------------------------------------


@contextmanager
def open_input(path: str) -> Iterator[Buffer]:
    """The file mapped read-only (never read whole into memory); b"" for an empty file. A split
    set's name (group_inputs) gives its first part, which the dump readers take for the whole set."""
    parts = _SETS.get(path)
    if parts is None:
        with _mapped(path) as buf:
            yield buf
        return
    with ExitStack() as stack:
        bufs = [stack.enter_context(_mapped(part)) for part in parts]
        with split.attached(bufs[0], bufs, parts):  # parts are in pfn order: the first holds the lowest
            yield bufs[0]


@contextmanager
def _mapped(path: str) -> Iterator[Buffer]:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                yield b""
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                yield mapped
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory", path=path) from None
    except PermissionError:
        raise InputError("permission denied", path=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read: {exc}", path=path) from None


# makedumpfile --split sets -------------------------------------------------------------------

_SETS: dict[str, tuple[str, ...]] = {}  # a set's input name -> its parts, in pfn order
SET_JOIN = " + "


def group_inputs(paths: Sequence[str]) -> tuple[str, ...]:
    """`paths`, with the parts of a makedumpfile --split dump given together made one input, named
    "part1 + part2 + ..." (in pfn order), where its first part was given. Every entry point (find,
    find_config, open_kernel, info) reads that name as one dump. Only the files given are read: a
    part's header never sends us looking for its siblings. UsageError for parts of different dumps
    of which one is incomplete (parts mixed up), for overlapping ranges and for a file given twice."""
    parts = [part for part in map(_split_part, paths) if part is not None]
    if len(parts) < 2:
        return tuple(paths)
    _refuse_repeats(parts)
    groups: dict[tuple[object, ...], list[split.Part]] = {}
    for part in parts:
        groups.setdefault(part.header.identity, []).append(part)
    if len(groups) > 1 and any(split.check_ranges(group) for group in groups.values()):
        split.check_ranges(parts)  # raises: parts of different dumps, and not two whole sets
    set_of: dict[str, str] = {}
    for group in groups.values():
        split.check_ranges(group)  # overlaps refused before anything is read
        if len(group) > 1:
            ordered = tuple(p.path for p in sorted(group, key=lambda p: (p.header.start_pfn, p.empty)))
            name = SET_JOIN.join(ordered)
            _SETS[name] = ordered
            set_of.update(dict.fromkeys(ordered, name))
    return _with_sets(paths, set_of)


def _with_sets(paths: Sequence[str], set_of: dict[str, str]) -> tuple[str, ...]:
    """`paths`, each set's name where its first part was, its other parts dropped."""
    inputs: list[str] = []
    for path in paths:
        name = set_of.get(path)
        if name is None:
            inputs.append(path)
        elif name not in inputs:
            inputs.append(name)
    return tuple(inputs)


def set_parts(name: str) -> tuple[str, ...] | None:
    """The parts of the split set `name` (group_inputs), or None when it names one file."""
    return _SETS.get(name)


def _split_part(path: str) -> split.Part | None:
    if path == "-":
        return None  # stdin (the CLI spools it later) is never a part
    try:
        with _mapped(path) as buf:
            header = split.part_header(buf)
    except InputError:
        return None  # the input's own reading reports it
    return split.Part(path, header) if header is not None else None


def _refuse_repeats(parts: list[split.Part]) -> None:
    seen: dict[str, str] = {}
    for part in parts:
        real = os.path.realpath(part.path)
        if real in seen:
            same = "is given twice" if seen[real] == part.path else f"is the same file as {seen[real]}"
            raise UsageError(f"{same}: give each part of a makedumpfile --split dump once", path=part.path)
        seen[real] = part.path


def split_report(name: str) -> dict[str, Any] | None:
    """--info's `split`: a makedumpfile --split set's (or lone part's) parts, their pfn ranges and the
    pfn ranges no given part holds; None when the input is not split."""
    parts = []
    for path in _SETS.get(name, (name,)):
        part = _split_part(path)
        if part is None:
            return None
        parts.append(part)
    missing = split.check_ranges(parts)
    return {"parts": [{"path": p.path, "start_pfn": p.header.start_pfn, "end_pfn": p.header.end_pfn}
                      for p in parts],
            "max_mapnr": parts[0].header.max_mapnr,
            "missing": [{"start_pfn": start, "end_pfn": end} for start, end in missing]}


# The pipeline --------------------------------------------------------------------------------


_DUMP_MAGICS = (b"KDUMP   ", b"makedumpfile", b"EMiL")  # kdump, flattened, LiME (0x4C694D45 LE)


def _may_be_dump(buf: Buffer) -> bool:
    """Cheap test before importing the dump readers: a dump signature, or an ELF core."""
    head = bytes(buf[:18])
    return head.startswith(_DUMP_MAGICS) or (head[:4] == ELF_MAGIC and head[16:18] in (b"\x04\x00", b"\x00\x04"))


def peel(buf: Buffer, path: str, layers: tuple[Layer, ...] = ()) -> Peeled:
    """Peel image formats (images/registry.py, in order) until bytes or a decoded stream are left
    to search; the innermost header that names the architecture wins."""
    if len(buf) == 0:
        raise NotFound("empty file", path=path)
    peeled = _peel_one(buf, path)
    inner = (*layers, *peeled.layers)
    if peeled.again:
        assert peeled.data is not None
        peeled = peel(peeled.data, path, inner)
    else:
        peeled = replace(peeled, layers=inner)
    if peeled.platform is None and not peeled.whole_archive:
        found = arch.from_elf_header(buf) or arch.from_image(buf)
        if found is not None:
            peeled = replace(peeled, platform=found)
    return peeled


def _peel_one(buf: Buffer, path: str) -> Peeled:
    """The first registered format whose probe matches and that does not disown the input on a
    closer look; raw bytes when none does."""
    for fmt in registry.formats():
        if not fmt.probe(buf):
            continue
        try:
            return fmt.peel(buf, path)
        except NotMine:
            continue
        except ExtractError as exc:
            exc.located(path=path, layer=fmt.name)
            raise
    return Peeled((), data=buf)


def _search(data: Buffer, path: str, layers: tuple[Layer, ...],
            progress: Callable[[int, int], None] | None = None, verify: bool = True) -> Found:
    if _may_be_dump(data):
        try:  # crash images (ELF core, kdump-compressed, flattened, LiME): searched as physical memory
            found = search.find_in_dump(data, path, layers, progress)
        except NotMine:
            pass
        else:
            return found if found.platform else replace(found, platform=arch.from_dump_header(data))
    source = peel(data, path, layers)
    try:
        return _search_peeled(source, path, verify)
    except ExtractError as exc:
        exc.located(path=path, layer=source.layers[-1].format if source.layers else None)
        raise


def _search_peeled(source: Peeled, path: str, verify: bool = True) -> Found:
    if source.chunks is not None:
        return _search_stream(source, path, verify)
    buf = source.data
    assert buf is not None
    if source.whole_archive:
        try:
            end = xzstream.stream_end(buf, 0).end
        except Damaged as exc:
            exc.data = bytes(buf)
            raise
        return _found(source, path, locate.Span(Method.WHOLE, 0, end))
    if source.elf is not None:
        try:
            return _search_elf(source, path)
        except CorruptElf as exc:
            source = replace(source, elf=None, notes=(f"ELF symbols unusable ({exc}); searched raw bytes",))
    return _search_raw(source, path, [(0, len(buf))])


def _search_elf(source: Peeled, path: str) -> Found:
    elf = source.elf
    assert elf is not None
    span = locate.by_symbols(elf)
    if span is not None:
        return _found(source, path, span)
    if elf.has_symbols():
        # A symbol table without kernel_headers_data: the headers are not built in. Only the
        # seed layout (markers, which its asm put in .rodata) is still worth a look there.
        rodata = [(s.offset, s.offset + s.size) for s in elf.sections() if s.name.startswith(".rodata")]
        for start, end in rodata or elf.loaded_ranges():
            span = locate.by_markers(elf.buf, start, end)
            if span is not None:
                return _found(source, path, span)
        raise NotFound(f"cannot find kernel headers: the symbol table has no {locate.START_SYMBOL}, "
                       f"so CONFIG_IKHEADERS is not built in (with =m the headers are in kheaders.ko)", path=path)
    return _search_raw(source, path, elf.loaded_ranges())


def _search_raw(source: Peeled, path: str, ranges: list[tuple[int, int]]) -> Found:
    assert source.data is not None
    for start, end in ranges:
        try:
            span = locate.by_markers(source.data, start, end) or locate.carve(source.data, start, end)
        except Damaged:
            if source.elf is not None or source.layers:
                raise
            # Headerless memory may hold a broken-off copy (a module's first page) before a
            # whole one: look past it.

            return search.find_in_raw(source.data, path, source.layers)
        if span is not None:
            return _found(source, path, span)
    raise NotFound("cannot find kernel headers (was the kernel built with CONFIG_IKHEADERS?)", path=path)


def _search_stream(source: Peeled, path: str, verify: bool) -> Found:
    assert source.chunks is not None
    carver = locate.StreamCarver(decode=verify)
    banner = _BannerScanner()
    try:
        for chunk in source.chunks:
            banner.feed(chunk)
            if carver.feed(chunk):
                break
        span = carver.found or carver.finish()
    finally:
        _close(source.chunks)
    if span is None:
        raise NotFound("cannot find kernel headers in the decompressed kernel "
                       "(was it built with CONFIG_IKHEADERS?)", path=path)
    image = Layer("raw image", 0, span.end, "decompressed payload, read up to the archive's end")
    return Found(path=path, method=span.method, offset=span.start, archive=carver.archive,
                 layers=(*source.layers, image), release=banner.release, notes=source.notes,
                 banner=banner.banner[1] if banner.banner else None,
                 verified=Check.CONTENT if carver.decoded else None, platform=source.platform)


def _close(chunks: Iterator[bytes]) -> None:
    """Stop a decoder early: the rest of the image is not needed."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _found(source: Peeled, path: str, span: locate.Span) -> Found:
    assert source.data is not None
    archive = bytes(source.data[span.start : span.end])
    banner = find_banner(source.data) if span.method != Method.WHOLE else None
    release = source.release or (banner[0] if banner else None)
    return Found(path=path, method=span.method, offset=span.start, archive=archive, layers=source.layers,
                 release=release, notes=source.notes, banner=banner[1] if banner else None,
                 platform=source.platform)


# Release -------------------------------------------------------------------------------------


def find_banner(buf: Buffer) -> tuple[str, str] | None:
    """(release, whole banner line) from the first `Linux version X (...` in buf."""
    found = imagetext.banner_at(lambda at: bytes(buf[at : at + imagetext.BANNER_MAX]),
                                lambda at: buf.find(imagetext.BANNER_START, at))
    return found[:2] if found else None


class _BannerScanner:
    """Find the banner in streamed chunks (it may straddle two)."""

    def __init__(self) -> None:
        self.banner: tuple[str, str] | None = None
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if self.banner is not None:
            return
        data = self._tail + chunk
        self.banner = find_banner(data)
        self._tail = data[-600:]

    @property
    def release(self) -> str | None:
        return self.banner[0] if self.banner else None



