"""Crash images built by the tests: tiny synthetic dumps, and conversions of the corpus's real dumps
into formats no tool here writes (LiME, raw, kdump with zstd or snappy pages, cut or truncated
copies). Big outputs are streamed: a real dump is never read whole into memory."""

from __future__ import annotations

import io
import itertools
import mmap
import os
import random
import shutil
import struct
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builders import headers_archive

from extract_ikheaders.elf.reader import PT_LOAD, ElfImage

PAGE = 4096
_CHUNK = 8 << 20
ET_CORE, PT_NOTE = 4, 4
CODEC_FLAGS = {"zlib": 0x1, "lzo": 0x2, "snappy": 0x4, "zstd": 0x20}


def big_archive(size: int = 3 * PAGE, seed: int = 1, release: str = "6.1.0-synthetic") -> bytes:
    """A headers archive spanning several pages: a header full of incompressible bytes."""
    noise = random.Random(seed).randbytes(size)
    archive: bytes = headers_archive({
        "./include/generated/utsrelease.h": f'#define UTS_RELEASE "{release}"\n'.encode(),
        "./include/linux/noise.h": noise,
    })
    return archive


def filler(size: int, seed: int = 7) -> bytes:
    """Memory that is not an archive (and holds no xz magic)."""
    data = bytearray(random.Random(seed).randbytes(size))
    return bytes(data).replace(b"\xfd7zXZ", b"\xfd7zXY")


def memory_image(size: int, placed: dict[int, bytes], seed: int = 7) -> bytes:
    """`size` bytes of filler with each blob placed at its offset."""
    data = bytearray(filler(size, seed))
    for at, blob in placed.items():
        data[at : at + len(blob)] = blob
    return bytes(data)


# ELF cores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    paddr: int
    data: bytes
    memsz: int | None = None  # > len(data): a tail the dump left out
    vaddr: int = 0


def elf_core(segments: list[Seg], notes: Iterable[tuple[str, int, bytes]] = (),
             file_order: list[int] | None = None, xnum: bool = False) -> bytes:
    """A little-endian ELF64 ET_CORE: PT_NOTE first, then one PT_LOAD per segment. `file_order`
    lays the segments' data out in another order than their program headers; `xnum` stores the
    segment count the way QEMU does past 65534 segments (e_phnum 0xffff, section 0's sh_info)."""
    note_blob = b"".join(_note(name, kind, desc) for name, kind, desc in notes)
    phnum = len(segments) + 1
    data_at = 64 + 56 * phnum
    offsets: dict[int, int] = {}
    at = data_at + len(note_blob)
    for i in file_order if file_order is not None else range(len(segments)):
        offsets[i] = at
        at += len(segments[i].data)
    out = io.BytesIO()
    out.write(_ehdr(phnum, shoff=at if xnum else 0))
    out.write(struct.pack("<IIQQQQQQ", 4, 0, data_at, 0, 0, len(note_blob), len(note_blob), 4))
    for i, seg in enumerate(segments):
        memsz = seg.memsz if seg.memsz is not None else len(seg.data)
        out.write(struct.pack("<IIQQQQQQ", PT_LOAD, 7, offsets[i], seg.vaddr, seg.paddr, len(seg.data), memsz, 0))
    out.write(note_blob)
    for i in file_order if file_order is not None else range(len(segments)):
        out.write(segments[i].data)
    if xnum:
        out.write(struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0))
    return out.getvalue()


def machine_core(machine: int, bits: int, endian: str, memory: bytes, paddr: int,
                 notes: list[tuple[str, bytes]]) -> bytes:
    """An ET_CORE of any class and byte order (e_machine `machine`): PT_NOTE, then one PT_LOAD of
    `memory` at physical `paddr`."""
    def note(name: str, desc: bytes) -> bytes:
        raw = name.encode() + b"\0"
        return struct.pack(f"{endian}III", len(raw), len(desc), 0) + _pad4(raw) + _pad4(desc)

    blob = b"".join(note(name, desc) for name, desc in notes)
    ehsize, phentsize = (64, 56) if bits == 64 else (52, 32)
    data_at = ehsize + 2 * phentsize
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if endian == "<" else 2, 1]) + bytes(9)
    word = "Q" if bits == 64 else "I"
    header = ident + struct.pack(f"{endian}HHI{word}{word}{word}IHHHHHH", ET_CORE, machine, 1, 0, ehsize, 0, 0,
                                 ehsize, phentsize, 2, 0, 0, 0)
    if bits == 64:
        phdrs = (struct.pack(f"{endian}IIQQQQQQ", PT_NOTE, 0, data_at, 0, 0, len(blob), len(blob), 4)
                 + struct.pack(f"{endian}IIQQQQQQ", PT_LOAD, 7, data_at + len(blob), 0, paddr, len(memory),
                               len(memory), 0))
    else:
        phdrs = (struct.pack(f"{endian}IIIIIIII", PT_NOTE, data_at, 0, 0, len(blob), len(blob), 0, 4)
                 + struct.pack(f"{endian}IIIIIIII", PT_LOAD, data_at + len(blob), 0, paddr, len(memory), len(memory),
                               7, 0))
    return header + phdrs + blob + memory


def _ehdr(phnum: int, shoff: int = 0) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    if shoff:  # PN_XNUM: the real count is in section header 0
        return ident + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, shoff, 0, 64, 56, 0xFFFF, 64, 1, 0)
    return ident + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)


def _note(name: str, kind: int, desc: bytes) -> bytes:
    raw = name.encode() + b"\0"
    return struct.pack("<III", len(raw), len(desc), kind) + _pad4(raw) + _pad4(desc)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def vmcoreinfo(release: str = "6.1.0-synthetic", kernel_paddr: int | None = None) -> bytes:
    """VMCOREINFO text as the kernel writes it (x86_64: _stext at 0xffffffff81000000)."""
    lines = [f"OSRELEASE={release}", "PAGESIZE=4096"]
    if kernel_paddr is not None:
        lines += ["SYMBOL(_stext)=ffffffff81000000",
                  f"NUMBER(phys_base)={kernel_paddr - 0x1000000}"]
    return ("\n".join(lines) + "\n").encode()


# kdump-compressed --------------------------------------------------------------------------------


def compress_page(codec: str, page: bytes) -> tuple[bytes, int]:
    """(stored bytes, desc flags) the way makedumpfile stores a page: raw when it does not shrink."""
    if codec == "zlib":
        data = zlib.compress(page)
    elif codec == "lzo":
        import lzokay

        data = bytes(lzokay.compress(page))
    elif codec == "snappy":
        import cramjam

        data = bytes(cramjam.snappy.compress_raw(page))
    elif codec == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(page)
    else:
        data = page
    if codec == "none" or len(data) >= len(page):
        return page, 0
    return data, CODEC_FLAGS[codec]


def kdump_file(pages: dict[int, bytes], *, codec: str = "zlib", ram: Iterable[int] | None = None,
               max_mapnr: int | None = None, info: bytes = b"", release: str = "6.1.0-synthetic",
               dump_level: int = 31, stored: dict[int, tuple[bytes, int]] | None = None,
               desc_override: dict[int, tuple[int, int]] | None = None, split: tuple[int, int] | None = None,
               timestamp: int = 0, machine: str = "x86_64") -> bytes:
    """A 64-bit little-endian kdump-compressed file (header_version 6) holding `pages` (pfn -> 4 KiB),
    its utsname.machine `machine`.

    `ram`: pfns in the 1st bitmap (default: the dumped ones); `stored`: per-pfn (bytes, flags) to
    store instead of compressing; `desc_override`: per-pfn (offset, size) to write in its descriptor.
    `split` (start_pfn, end_pfn): a makedumpfile --split part, as makedumpfile writes one: both whole
    bitmaps, descriptors and data for the pages in [start, end) only, the range in the sub-header.
    `timestamp`: the header's tv_sec (makedumpfile's run time; the parts of one run share it).
    """
    top = max_mapnr if max_mapnr is not None else max(pages, default=0) + 1
    bitmap_len = -(-((top + 7) // 8) // PAGE) * PAGE
    sub_blocks = 1
    info_at = PAGE + 104
    bitmap1, bitmap2 = bytearray(bitmap_len), bytearray(bitmap_len)
    for pfn in set(ram if ram is not None else pages) | set(pages):
        bitmap1[pfn // 8] |= 1 << (pfn % 8)
    for pfn in pages:
        bitmap2[pfn // 8] |= 1 << (pfn % 8)
    descs_at = (1 + sub_blocks) * PAGE + 2 * bitmap_len
    start_pfn, end_pfn = split if split is not None else (0, top)
    held = sorted(p for p in pages if start_pfn <= p < end_pfn)
    data_at = descs_at + 24 * len(held)
    descs, blobs = bytearray(), bytearray()
    for pfn in held:
        data, flags = (stored or {}).get(pfn) or compress_page(codec, pages[pfn])
        offset, size = (desc_override or {}).get(pfn, (data_at + len(blobs), len(data)))
        descs += struct.pack("<qIIQ", offset, size, flags, 0)
        blobs += data
    uts = b"".join(f.encode().ljust(65, b"\0") for f in ("Linux", "synthetic", release, "#1", machine, ""))
    header = struct.pack("<8si390s6xqqIiiIIIIIIi", b"KDUMP   ", 6, uts, timestamp, 0, CODEC_FLAGS.get(codec, 0),
                         PAGE, sub_blocks, 2 * bitmap_len // PAGE, top, len(pages), 0, len(pages), 0, 1)
    sub = struct.pack("<QiiQQqQqQqQQQQ", 0, dump_level, int(split is not None), start_pfn, end_pfn,
                      info_at if info else 0, len(info), 0, 0, 0, 0, start_pfn, end_pfn, top)
    head = bytearray((1 + sub_blocks) * PAGE)
    head[: len(header)] = header
    head[PAGE : PAGE + len(sub)] = sub
    head[info_at : info_at + len(info)] = info
    return bytes(head + bitmap1 + bitmap2 + descs + blobs)


def split_kdump(pages: dict[int, bytes], bounds: Iterable[int], **kwargs: Any) -> list[bytes]:
    """The parts makedumpfile --split would write: one per pfn range between consecutive `bounds`
    (0, b1, ..., max_mapnr), each a kdump_file with the same headers but its own range."""
    edges = list(bounds)
    top = edges[-1]
    return [kdump_file(pages, max_mapnr=top, split=(lo, hi), **kwargs) for lo, hi in itertools.pairwise(edges)]


def pages_of(image: bytes, base_pfn: int = 0) -> dict[int, bytes]:
    """A memory image cut into 4 KiB pages keyed by pfn."""
    return {base_pfn + i // PAGE: image[i : i + PAGE].ljust(PAGE, b"\0") for i in range(0, len(image), PAGE)}


def flatten(kdump: bytes, record: int = 5000, rewrites: bool = True, seed: int = 3) -> bytes:
    """The kdump file as makedumpfile -F would stream it; with `rewrites`, records come in shuffled
    order and garbage is written first over ranges that a later record rewrites."""
    rng = random.Random(seed)
    records = [(at, kdump[at : at + record]) for at in range(0, len(kdump), record)]
    if rewrites:
        rng.shuffle(records)
        garbage = [(at + 100, rng.randbytes(len(data) // 2)) for at, data in records[:: 3]]
        records = garbage + records  # the later, correct records win
    out = bytearray(b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1))
    out += bytes(4096 - len(out))
    for at, data in records:
        out += struct.pack(">qq", at, len(data)) + data
    return bytes(out + struct.pack(">qq", -1, -1))


# LiME ----------------------------------------------------------------------------------------------


def lime_header(start: int, size: int) -> bytes:
    return struct.pack("<IIQQ8x", 0x4C694D45, 1, start, start + size - 1)


def lime(ranges: list[tuple[int, bytes]]) -> bytes:
    return b"".join(lime_header(start, len(data)) + data for start, data in ranges)


# Conversions of real dumps (streamed) -----------------------------------------------------------


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        yield m


def _copy_range(src: mmap.mmap, start: int, size: int, out: io.BufferedWriter) -> None:
    for at in range(start, start + size, _CHUNK):
        out.write(src[at : min(start + size, at + _CHUNK)])


def loads_of(path: Path) -> list[tuple[int, int, int]]:
    """(paddr, offset, filesz) of an ELF core's PT_LOADs."""
    with _mapped(path) as m:
        return [(s.paddr, s.offset, s.filesz) for s in ElfImage(m).segments() if s.type == PT_LOAD and s.filesz]


def lime_from_elf(src: Path, dst: Path) -> None:
    """Each PT_LOAD's bytes as one LiME range (a segment inside an earlier one, like /proc/vmcore's
    second mapping of the kernel, is skipped: LiME ranges do not overlap)."""
    covered = 0
    with _mapped(src) as m, dst.open("wb") as out:
        for paddr, offset, size in sorted(loads_of(src), key=lambda s: (s[0], -s[2])):
            if paddr + size <= covered:
                continue
            covered = paddr + size
            out.write(lime_header(paddr, size))
            _copy_range(m, offset, size, out)


def raw_from_elf(src: Path, dst: Path, limit: int = 1 << 30) -> None:
    """Physical memory as a flat (sparse) file: each PT_LOAD below `limit` at its address."""
    with _mapped(src) as m, dst.open("wb") as out:
        for paddr, offset, size in sorted(loads_of(src)):
            if paddr + size <= limit:
                out.seek(paddr)
                _copy_range(m, offset, size, out)


def truncated_copy(src: Path, dst: Path, size: int) -> None:
    """The first `size` bytes of src."""
    with src.open("rb") as f, dst.open("wb") as out:
        while size > 0:
            chunk = f.read(min(_CHUNK, size))
            if not chunk:
                break
            out.write(chunk)
            size -= len(chunk)


def elf_cut(src: Path, dst: Path, lo: int, hi: int) -> None:
    """A copy whose PT_LOADs stop short of the physical range [lo, hi): every segment overlapping
    it ends at `lo` (page-aligned down), as if that memory had never been dumped."""
    shutil.copyfile(src, dst)
    cut = lo & ~(PAGE - 1)
    with dst.open("r+b") as f:
        head = f.read(64)
        phoff, = struct.unpack_from("<Q", head, 32)
        phnum, = struct.unpack_from("<H", head, 56)
        for i in range(phnum):
            f.seek(phoff + i * 56)
            p_type, flags, offset, vaddr, paddr, filesz, memsz, align = struct.unpack("<IIQQQQQQ", f.read(56))
            if p_type == PT_LOAD and paddr < hi and paddr + memsz > lo:
                keep = max(0, cut - paddr)
                f.seek(phoff + i * 56)
                f.write(struct.pack("<IIQQQQQQ", p_type, flags, offset, vaddr, paddr, min(filesz, keep),
                                    keep, align))


def recompress_kdump(src: Path, dst: Path, codec: str) -> int:
    """A makedumpfile kdump file (64-bit LE, not flattened) with every page re-encoded by `codec`
    and the header's status flags set to match. Returns the number of pages written."""
    with _mapped(src) as m:
        (_, _, _, _, _, _, block, sub_blocks, bitmap_blocks, *_rest) = struct.unpack_from(
            "<8si390s6xqqIiiIIIIIIi", m, 0)
        assert block == PAGE
        half = bitmap_blocks * block // 2
        bitmap2_at = (1 + sub_blocks) * block + half
        count = int.from_bytes(m[bitmap2_at : bitmap2_at + half], "little").bit_count()
        descs_at = (1 + sub_blocks + bitmap_blocks) * block
        data_at = descs_at + 24 * count
        with dst.open("wb") as out:
            head = bytearray(m[:descs_at])
            struct.pack_into("<I", head, 424, CODEC_FLAGS[codec])  # disk_dump_header.status
            out.write(head)
            out.seek(data_at)
            descs, written, moved = bytearray(), data_at, {}
            for i in range(count):
                offset, size, flags, page_flags = struct.unpack_from("<qIIQ", m, descs_at + 24 * i)
                if offset not in moved:  # pages may share data (makedumpfile's zero page)
                    page = _decode(m[offset : offset + size], flags)
                    data, new_flags = compress_page(codec, page)
                    out.write(data)
                    moved[offset] = (written, len(data), new_flags)
                    written += len(data)
                new_offset, new_size, new_flags = moved[offset]
                descs += struct.pack("<qIIQ", new_offset, new_size, new_flags, page_flags)
            out.seek(descs_at)
            out.write(descs)
        return count


def _decode(data: bytes, flags: int) -> bytes:
    if flags & 0x1:
        return zlib.decompress(data)
    if flags & 0x2:
        import lzokay

        return bytes(lzokay.decompress(data, PAGE))
    assert not flags, f"unexpected page flags {flags:#x}"
    return data


def file_size(path: Path) -> int:
    return os.stat(path).st_size
