"""Class 4 generators: inputs whose cost grows with what they declare (ranges, markers, members).
Shared by tests/hostile/test_scaling.py (under hard limits) and bench/hostile.py (n and 10·n)."""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import tarfile
from array import array

from dump_builders import Seg, elf_core, lime
from synthetic import headers_archive

PAGE = 4096
ARCHIVE = headers_archive()


RANGE = 64  # bytes per range: many ranges, a small file


def lime_ranges(n: int) -> bytes:
    """n LiME ranges of 64 bytes each, with gaps between them, the archive in the last one."""
    ranges = [(i * PAGE, b"\x01" * RANGE) for i in range(n - 1)]
    return lime([*ranges, ((n - 1) * PAGE, ARCHIVE)])


def elf_loads(n: int) -> bytes:
    """An ELF core with n PT_LOADs of 64 bytes each, with gaps between them, the archive in the last one."""
    segs = [Seg(i * PAGE, b"\x01" * RANGE) for i in range(n - 1)]
    return elf_core([*segs, Seg((n - 1) * PAGE, ARCHIVE)], xnum=n + 1 > 0xFFFE)


def config_markers(n: int) -> bytes:
    """n IKCFG_ST markers with nothing valid after them, then a real embedded .config."""
    config = gzip.compress(b"CONFIG_IKCONFIG=y\n", mtime=0)
    return b"IKCFG_ST" * n + b"\0" * 64 + b"IKCFG_ST" + config + b"IKCFG_ED" + ARCHIVE


def duplicate_members(n: int) -> bytes:
    """An archive of n entries with the same name (the first is kept, the rest skipped)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("./include/linux/dup.h")
        for _ in range(n):
            tar.addfile(info, io.BytesIO(b""))
        utsrelease = b'#define UTS_RELEASE "6.1.0-dup"\n'
        info = tarfile.TarInfo("./include/generated/utsrelease.h")
        info.size = len(utsrelease)
        tar.addfile(info, io.BytesIO(utsrelease))
    return lzma.compress(raw.getvalue(), check=lzma.CHECK_CRC64)


def _metadata_header(kind: bytes, data: bytes, name: str = "././@PaxHeader") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    length = len(str(length + len(str(length)))) + len(body)
    return str(length).encode() + body


def _tar_end(members: bytes) -> bytes:
    """The members after the two directories every headers archive starts with (the tool knows the
    archive by them), then the end-of-archive blocks, in xz."""
    head = b""
    for name in ("./", "./include/"):
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        head += info.tobuf(tarfile.USTAR_FORMAT)
    return lzma.compress(head + members + bytes(1024), check=lzma.CHECK_CRC64)


def _release_member() -> bytes:
    release = b'#define UTS_RELEASE "6.1.0-pax"\n'
    info = tarfile.TarInfo("./include/generated/utsrelease.h")
    info.size = len(release)
    return info.tobuf(tarfile.USTAR_FORMAT) + release + bytes(-len(release) % 512)


def pax_chain(n: int) -> bytes:
    """n pax extended headers in a row before one member: tarfile called itself once per header
    (RecursionError past ~1,000) and kept them all."""
    header = _metadata_header(tarfile.XHDTYPE, _pax_record("comment", "x" * 40))
    return _tar_end(header * n + _release_member())


def declared_pax(size: int) -> bytes:
    """A pax header declaring `size` bytes of records (followed by far fewer): tarfile read the
    declared size into memory at once."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, size
    return _tar_end(info.tobuf(tarfile.GNU_FORMAT) + _pax_record("comment", "y" * 4000).ljust(4096, b"\0"))


def global_pax(n: int) -> bytes:
    """n global pax headers of 1 KiB each, every one with a new keyword: all of them apply to every
    later member, so without a budget they grow without bound."""
    def entry(i: int) -> bytes:
        member = tarfile.TarInfo(f"./include/g{i}.h")
        return _metadata_header(tarfile.XGLTYPE, _pax_record(f"k{i}", "z" * 1000)) + member.tobuf(tarfile.USTAR_FORMAT)

    return _tar_end(b"".join(entry(i) for i in range(n)) + _release_member())


# LZO1X that a short block expands ~186-fold: a one-byte literal, then a run of identical 11-byte
# match instructions (2,048 bytes each, taken from lzokay's own output for zeros), then the end mark.
LZO_HEAD, LZO_UNIT, LZO_END = bytes.fromhex("1200"), bytes.fromhex("2000000000000000e60000"), b"\x11\x00\x00"
LZO_UNIT_OUTPUT = 2048


def lzo_expanding(units: int) -> bytes:
    """LZO1X data decoding to 1 + 2,048·units zero bytes from 11·units + 5 bytes."""
    return LZO_HEAD + LZO_UNIT * units + LZO_END


def lzo_bzimage(units: int, declared: int) -> bytes:
    """A bzImage whose lzop payload has one block declaring `declared` bytes that decodes to far more."""
    from builders_bzimage import bzimage, lzop_file

    payload = lzop_file([], flags=0, packed=[(declared, lzo_expanding(units))])
    return bzimage(payload + declared.to_bytes(4, "little")).image


def lime_tiny_ranges(n: int) -> bytes:
    """n LiME ranges of one byte each (33 bytes a range: about two million in 64 MiB), the archive last."""
    from dump_builders import lime_header

    parts = [lime_header(i * PAGE, 1) + b"\x01" for i in range(n - 1)]
    return b"".join([*parts, lime_header((n - 1) * PAGE, len(ARCHIVE)) + ARCHIVE])


def elf_tiny_loads(n: int) -> bytes:
    """An ELF core with n PT_LOADs of one byte each (57 bytes a range), the archive in the last."""
    return elf_core([*(Seg(i * PAGE, b"\x01") for i in range(n - 1)), Seg((n - 1) * PAGE, ARCHIVE)], xnum=True)


def kdump_magic_runs(n: int) -> bytes:
    """A kdump of n pages at every other pfn (n runs in its bitmap), each holding an xz magic that
    leads nowhere: the carver tries a candidate per page (atheris found this quadratic)."""
    from dump_builders import kdump_file

    page = (b"\xfd7zXZ\x00" + b"\x01" * 10).ljust(PAGE, b"\0")
    return kdump_file({2 * i: page for i in range(n)})


def tar_members(n: int) -> bytes:
    """A headers-like archive of n distinct small members (listing and lookup walk them all)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("./", "./include/"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for i in range(n):
            tar.addfile(tarfile.TarInfo(f"./include/f{i}.h"), io.BytesIO(b""))
    return lzma.compress(raw.getvalue(), check=lzma.CHECK_CRC64)


def bzimage_inflating(mib: int) -> bytes:
    """A bzImage whose gzip payload inflates to `mib` MiB of zeros and holds no archive: the search
    stops at codecs.MAX_IMAGE, so time stops growing there."""
    import zlib

    from builders_bzimage import bzimage

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    payload = b"".join(packer.compress(bytes(1 << 20)) for _ in range(mib)) + packer.flush()
    return bzimage(payload).image


def kallsyms_table(count: int, name_bytes: int) -> bytes:
    """A raw image holding a 6.10-layout kallsyms table of `count` symbols, each name two tokens
    ("T" and `name_bytes` - 1 letters) in three bytes of kallsyms_names: a name that is small in
    the image and large once decoded. Built with bytes operations: a million symbols take a second."""
    out = bytearray(PAGE) + struct.pack("<I", count) + bytes(4) + b"\x02\x80\x81" * count
    out += bytes(-len(out) % 8) + array("I", range(0, 3 * count, 3 * 256)).tobytes()
    out += _token_tables(name_bytes)
    out += bytes(-len(out) % 8) + array("i", range(0, 16 * count, 16)).tobytes()
    out += bytes(-len(out) % 8) + struct.pack("<Q", 0xFFFFFFFF81000000)
    return bytes(out + bytes(PAGE))


def kallsyms_marker_run(n: int) -> bytes:
    """A token table after n words that each look like the next kallsyms_markers entry (ascending
    by a plausible block of names) and no names that decode: every end of the run is a candidate.
    Walking back from each one to the run's start made the search n²."""
    out = bytearray(PAGE) + array("I", range(0, 512 * n, 512)).tobytes()
    return bytes(out + _token_tables(2) + bytes(PAGE))


def _token_tables(name_bytes: int) -> bytes:
    """kallsyms_token_table (digits at their own codes, 0x80 "T", 0x81 `name_bytes` - 1 letters)
    and kallsyms_token_index, each 8-aligned, assuming the caller's data ends 8-aligned."""
    tokens = [bytes([c]) if 0x30 <= c <= 0x39 else b"t%d" % c for c in range(256)]
    tokens[0x80], tokens[0x81] = b"T", b"s" * (name_bytes - 1)
    index, at = array("H"), 0
    for token in tokens:
        index.append(at)
        at += len(token) + 1
    table = b"\0".join(tokens) + b"\0"
    return table + bytes(-len(table) % 8) + index.tobytes()
