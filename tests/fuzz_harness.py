"""Fuzz targets shared by tests/test_fuzz.py (hypothesis, short and seeded) and bench/fuzz/volume.py (volume).

A target is one parser: valid seed inputs, the calls made on a (mutated) input, and the exceptions
its contract lets escape. Mutations are data (Mutation), so hypothesis can draw and shrink them and
a plain random.Random loop can make them by the hundred thousand; both go through apply().

The property checked on every input: only the allowed exceptions escape (the package's own
ExtractError tree; NotMine or CorruptElf where that layer's contract allows it), within a time limit.
bench/fuzz/volume.py also runs each target under an address-space limit, so that an allocation sized by an
untrusted field shows up as a MemoryError.
"""

from __future__ import annotations

import atexit
import gzip
import lzma
import random
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import FrameType

import builders_bzimage as bzb
import hostile_archives as hostile
from synthetic import KHEADERS_ASM, headers_archive

from extract_ikheaders import compression, pipeline
from extract_ikheaders.archive import locate, unpack, xzstream
from extract_ikheaders.dumps import physical, search
from extract_ikheaders.elf.reader import SHT_SYMTAB, CorruptElf, ElfImage
from extract_ikheaders.errors import ExtractError, NotMine
from extract_ikheaders.images import bzimage

ARCHIVE = headers_archive()
CONFIG_TEXT = b"#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_IKHEADERS=y\nCONFIG_IKCONFIG=y\n"
CONFIG_GZ = gzip.compress(CONFIG_TEXT, mtime=0)
OUTPUT_LIMIT = 256 << 10  # decoded bytes a target reads from a stream before it stops


# Mutations ---------------------------------------------------------------------------------------

KINDS = ("flip", "set", "field", "truncate", "insert", "delete", "zero", "dup")
WIDTHS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Mutation:
    """One edit. `pos` is taken modulo the data length, or indexes the seed's hot offsets when `hot`."""

    kind: str
    pos: int
    hot: bool
    arg: int
    width: int = 4
    big: bool = False

    def as_list(self) -> list[object]:
        return [self.kind, self.pos, self.hot, self.arg, self.width, self.big]


def extremes(width: int, length: int) -> list[int]:
    """Field values that break parsers: limits, sign boundaries, sizes around the data's own."""
    mask = (1 << (8 * width)) - 1
    values = [0, 1, 2, 0x40, 0x7F, 0x80, 0xFF, 0x1000, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000,
              0xFFFF_FFFE, 0xFFFF_FFFF, 1 << 32, 1 << 40, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
              length, length - 1, length + 1, length * 2, length // 2]
    return [v & mask for v in values]


def apply(data: bytes, hot: Sequence[int], mutations: Sequence[Mutation]) -> bytes:
    out = bytearray(data)
    for m in mutations:
        pos = hot[m.pos % len(hot)] if m.hot and hot else m.pos % (len(out) + 1)
        _apply_one(out, pos, m)
    return bytes(out)


def _apply_one(out: bytearray, pos: int, m: Mutation) -> None:
    n = len(out)
    span = 1 + m.arg % 512
    if m.kind == "truncate":
        del out[pos:]
    elif m.kind == "insert":
        noise = random.Random(m.arg).randbytes(1 + m.arg % 64)
        out[pos:pos] = noise if m.arg % 3 else bytes([m.arg >> 8 & 0xFF]) * span
    elif m.kind == "delete":
        del out[pos : pos + span]
    elif m.kind == "zero":
        out[pos : pos + span] = bytes(len(out[pos : pos + span]))
    elif m.kind == "dup" and n:
        out[(m.arg * 7919) % (n + 1) : (m.arg * 7919) % (n + 1)] = out[pos : pos + span]
    elif n == 0:
        return
    elif m.kind == "flip":
        out[pos % n] ^= 1 << (m.arg % 8)
    elif m.kind == "set":
        out[pos % n] = m.arg & 0xFF
    elif m.kind == "field":
        values = extremes(m.width, n)
        raw = values[m.arg % len(values)].to_bytes(m.width, "big" if m.big else "little")
        at = min(pos, max(0, n - m.width))
        out[at : at + m.width] = raw[: n - at]


def random_mutations(rnd: random.Random) -> list[Mutation]:
    count = rnd.choice((1, 1, 1, 2, 2, 3, 4, 6))
    return [Mutation(rnd.choice(KINDS), rnd.getrandbits(32), rnd.random() < 0.5, rnd.getrandbits(32),
                     rnd.choice(WIDTHS), rnd.random() < 0.25) for _ in range(count)]


# Targets -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    hot: tuple[int, ...] = ()
    mode: str = ""  # how the target reads this seed's data (a codec name, "tar", ...)


@dataclass(frozen=True)
class Target:
    name: str
    seeds: Callable[[], list[Seed]]
    run: Callable[[bytes, int, str], None]  # (data, knob, mode): the knob picks options
    allowed: tuple[type[BaseException], ...]
    doc: str


class Hang(BaseException):
    """An input took longer than the per-input time limit (BaseException: nothing may swallow it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the running code after `seconds` (SIGALRM; main thread only)."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Outcome:
    error: BaseException | None  # None: ran clean
    crash: bool  # an exception outside the target's contract (or a hang)


def run_one(target: Target, data: bytes, knob: int, mode: str, timeout: float = 10.0) -> Outcome:
    try:
        with time_limit(timeout):
            target.run(data, knob, mode)
    except target.allowed as exc:
        return Outcome(exc, False)
    except (Exception, Hang) as exc:
        return Outcome(exc, True)
    return Outcome(None, False)


# Scratch space for targets that need a file ---------------------------------------------------------


@cache
def scratch() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix="ikh-fuzz-", dir=base))
    atexit.register(shutil.rmtree, path, True)
    return path


def as_file(data: bytes) -> Path:
    path = scratch() / "input"
    path.write_bytes(data)
    return path


# Seed builders -----------------------------------------------------------------------------------

CONFIG_ASM = r"""
asm (
"	.pushsection .rodata, \"a\"		\n"
"	.ascii \"IKCFG_ST\"			\n"
"	.global kernel_config_data		\n"
"kernel_config_data:				\n"
"	.incbin \"{blob}\"			\n"
"	.global kernel_config_data_end		\n"
"kernel_config_data_end:			\n"
"	.ascii \"IKCFG_ED\"			\n"
"	.popsection				\n"
);
"""
MODINFO = 'static const char modinfo[] __attribute__((section(".modinfo"), used)) = ' \
          '"license=GPL\\0vermagic=6.1.0-synthetic SMP preempt mod_unload ";\n'
SIGNATURE = b"\x30\x82\x01\x00" + bytes(0x100) + b"\0\0\0\0\0\0\0\0\0\0\x01\x04" + b"~Module signature appended~\n"


def _compile(work: Path, name: str, source: str) -> Path:
    src = work / f"{name}.c"
    src.write_text(source)
    obj = work / f"{name}.o"
    subprocess.run(["gcc", "-c", "-O2", "-o", str(obj), str(src)], check=True)
    return obj


@cache
def elf_files() -> dict[str, bytes]:
    """Small ELF objects laid out like the kernel's, in several classes, byte orders and types."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "headers.tar.xz").write_bytes(ARCHIVE)
        (work / "config.gz").write_bytes(CONFIG_GZ)

        def asm(markers: bool) -> str:
            return str(KHEADERS_ASM.replace("{blob}", str(work / "headers.tar.xz"))
                    .replace("{before}", '"	.ascii \\"IKHD_ST\\"	\\n"' if markers else "")
                    .replace("{after}", '"	.ascii \\"IKHD_ED\\"	\\n"' if markers else ""))

        config = CONFIG_ASM.replace("{blob}", str(work / "config.gz"))
        kheaders = _compile(work, "kheaders", asm(False))
        module = _compile(work, "module", asm(False) + MODINFO)
        seeded = _compile(work, "seeded", asm(True) + config)
        configs = _compile(work, "configs", config)
        files: dict[str, bytes] = {"rel": kheaders.read_bytes(), "module": module.read_bytes()}
        for name, objs, extra in (("exec", [kheaders, configs], ["--build-id"]), ("exec-markers", [seeded], [])):
            out = work / name
            subprocess.run(["ld", "-e", "0", *extra, "-o", str(out), *map(str, objs)], check=True)
            files[name] = out.read_bytes()
        subprocess.run(["strip", "-s", "-o", str(work / "stripped"), str(work / "exec")], check=True)
        files["stripped"] = (work / "stripped").read_bytes()
        subprocess.run(["objcopy", "-O", "elf32-i386", str(module), str(work / "module32")], check=True)
        files["module32"] = (work / "module32").read_bytes()
    files["module-be"] = big_endian(files["module"])
    files["module32-be"] = big_endian(files["module32"])
    files["module-signed"] = files["module"] + SIGNATURE
    return files


def big_endian(data: bytes) -> bytes:
    """The same ELF with every header, section header, program header and symbol byte-swapped."""
    elf = ElfImage(data)
    assert elf.endian == "<"
    out = bytearray(data)
    out[5] = 2
    word = "Q" if elf.bits == 64 else "I"

    def swap(fmt: str, at: int) -> None:
        out[at : at + struct.calcsize("<" + fmt)] = struct.pack(">" + fmt, *struct.unpack_from("<" + fmt, data, at))

    swap(f"HHI{word}{word}{word}IHHHHHH", 16)
    for i in range(elf.shnum):
        swap(f"II{word}{word}{word}{word}II{word}{word}", elf.shoff + i * elf.shentsize)
    for seg in range(elf.phnum):
        swap("IIQQQQQQ" if elf.bits == 64 else "IIIIIIII", elf.phoff + seg * elf.phentsize)
    for section in elf.sections():
        if section.type == SHT_SYMTAB:
            for at in range(section.offset, section.offset + section.size, section.entsize):
                swap("IBBHQQ" if elf.bits == 64 else "IIIBBH", at)
    return bytes(out)


def elf_hot(data: bytes) -> tuple[int, ...]:
    """Offsets of every header field, section header, program header and the interesting symbols."""
    elf = ElfImage(data)
    hot = list(range(16, 0x40 if elf.bits == 64 else 0x34, 2))
    size = 64 if elf.bits == 64 else 40
    for i in range(elf.shnum):
        base = elf.shoff + i * elf.shentsize
        hot += [base + off for off in range(0, size, 4)]
    for i in range(elf.phnum):
        base = elf.phoff + i * elf.phentsize
        hot += [base + off for off in range(0, 56 if elf.bits == 64 else 32, 4)]
    for sym in elf.find_symbols(locate.START_SYMBOL, locate.END_SYMBOL, locate.CONFIG_START_SYMBOL).values():
        for section in elf.sections():
            if section.type != SHT_SYMTAB:
                continue
            entry = section.entsize
            for at in range(section.offset, section.offset + section.size, entry):
                fields = data[at : at + entry]
                value_at = 8 if elf.bits == 64 else 4
                word = 8 if elf.bits == 64 else 4
                value = fields[value_at : value_at + word]
                if int.from_bytes(value, "little" if elf.endian == "<" else "big") == sym.value:
                    hot += [at + off for off in range(0, entry, 2)]
    archive_at = data.find(ARCHIVE)
    if archive_at != -1:
        hot += xz_hot(ARCHIVE, archive_at)
    return tuple(sorted(set(h for h in hot if 0 <= h < len(data))))


def xz_hot(stream: bytes, base: int = 0) -> list[int]:
    """The stream header, the first block header, and the index and footer at its end."""
    info = xzstream.stream_end(stream, 0)
    index_size = (struct.unpack_from("<I", stream, info.end - 8)[0] + 1) * 4
    tail = info.end - 12 - index_size
    return [base + i for i in [*range(0, 24), *range(tail - 8, info.end)]]


def xz_dict(stream: bytes, props: int) -> bytes:
    """`stream` with its first block's LZMA2 dictionary-size byte set to `props` (40: 4 GiB - 1),
    the block header's CRC32 fixed: a valid stream that makes liblzma allocate that much."""
    out = bytearray(stream)
    flags, pos = out[13], 14
    for present in (0x40, 0x80):  # compressed and uncompressed sizes, when stored
        if flags & present:
            while out[pos] & 0x80:
                pos += 1
            pos += 1
    assert flags & 3 == 0 and out[pos : pos + 2] == b"\x21\x01", "one LZMA2 filter expected"
    out[pos + 2] = props
    return fix_block_header_crc(bytes(out))


def fix_block_header_crc(data: bytes) -> bytes:
    """Recompute the CRC32 of the first xz block header in `data`, so mutations inside it get through."""
    start = data.find(xzstream.MAGIC)
    if start == -1 or start + 13 > len(data) or data[start + 12] == 0:
        return data
    size = (data[start + 12] + 1) * 4
    crc_at = start + 12 + size - 4
    if crc_at + 4 > len(data):
        return data
    return data[:crc_at] + struct.pack("<I", zlib.crc32(data[start + 12 : crc_at])) + data[crc_at + 4 :]


def tar_hot(tar: bytes) -> list[int]:
    """The fields of every tar header block: name end, mode, size, checksum, type, link, magic, prefix."""
    hot: list[int] = []
    for at in range(0, len(tar) - 511, 512):
        if tar[at + 257 : at + 262] == b"ustar":
            hot += [at + off for off in (0, 99, 100, 124, 130, 135, 136, 148, 156, 157, 257, 263, 345, 482)]
    return hot


@cache
def headers_tar() -> bytes:
    return lzma.decompress(ARCHIVE)


def multiblock_archive() -> bytes:
    """The headers archive as several xz blocks (an index with more than one record)."""
    return subprocess.run(["xz", "--format=xz", "--check=crc32", "--block-size=1024", "-T1"],
                          input=headers_tar(), capture_output=True, check=True).stdout


@cache
def small_kernel() -> bytes:
    """48 KiB of kernel-like bytes holding a banner, the config markers and the headers archive."""
    body = bytearray(bzb.kernel_like(48 << 10, seed=7))
    inserts = [(0x800, b"Linux version 6.1.0-fuzz (fuzz@tests) (gcc) #1 SMP\n\0"),
               (0x3000, b"IKCFG_ST" + CONFIG_GZ + b"IKCFG_ED"),
               (0x6000, b"\0\0\0\0" + ARCHIVE + b"\0\0\0\0")]
    for at, blob in inserts:
        body[at : at + len(blob)] = blob
    return bytes(body)


def available_codecs() -> list[str]:
    return [c for c in bzb.CODECS if bzb.tool_missing(c) is None]


# The targets -------------------------------------------------------------------------------------


def _elf_seeds() -> list[Seed]:
    return [Seed(name, data, elf_hot(data)) for name, data in elf_files().items()]


def _elf_run(data: bytes, knob: int, mode: str) -> None:
    """Every ElfImage entry point on its own, so that one CorruptElf does not hide the next call."""
    elf = ElfImage(data)
    errors: list[CorruptElf] = []

    def step(call: Callable[[], object]) -> None:
        try:
            call()
        except CorruptElf as exc:
            errors.append(exc)

    def ranges() -> None:
        spans = elf.loaded_ranges()
        assert spans and all(0 <= a < b <= len(data) for a, b in spans), spans

    def symbols() -> None:
        names = (locate.START_SYMBOL, locate.END_SYMBOL, locate.CONFIG_START_SYMBOL, "linux_banner")
        for sym in elf.find_symbols(*names).values():
            try:
                at = elf.symbol_file_offset(sym)
            except CorruptElf as exc:
                errors.append(exc)
            else:
                assert 0 <= at <= len(data), (sym, at)

    def section_data() -> None:
        for section in elf.sections()[:64]:
            step(lambda section=section: elf.section_bytes(section))  # type: ignore[misc]

    for call in (elf.describe, ranges, elf.has_symbols, symbols, section_data, elf.notes if knob & 1 else elf.segments):
        step(call)
    if errors:
        raise errors[0]


def _module_seeds() -> list[Seed]:
    files = elf_files()
    return [Seed(name, files[name], elf_hot(files[name]))
            for name in ("rel", "module", "module32", "module-be", "module32-be", "module-signed")]


def _module_run(data: bytes, knob: int, mode: str) -> None:
    found = pipeline.find(as_file(data))
    assert found.archive


def _markers_seeds() -> list[Seed]:
    framed = b"IKHD_ST" + ARCHIVE + b"IKHD_ED"
    plain = b"\x90" * 64 + framed + b"\xcc" * 64
    stray = b"IKHD_ST and IKHD_ED in a string\0" + plain
    twice = plain + b"IKHD_ST" + multiblock_archive() + b"IKHD_ED"
    seeds = []
    for name, data in (("plain", plain), ("stray", stray), ("twice", twice)):
        at = data.index(ARCHIVE)
        seeds.append(Seed(name, data, (*xz_hot(ARCHIVE, at), at - 7, at + len(ARCHIVE))))
    return seeds


def _markers_run(data: bytes, knob: int, mode: str) -> None:
    start, stop = 0, len(data)
    if knob & 1:
        start = (knob >> 8) % (len(data) + 1)
        stop = start + (knob >> 20) % (len(data) + 1 - start)
    span = locate.by_markers(data, start, stop)
    if span is not None:
        assert start <= span.start - 7 and span.end + 7 <= stop, (span, start, stop)
        assert data[span.start - 7 : span.start] == b"IKHD_ST" and data[span.end : span.end + 7] == b"IKHD_ED"


def _carve_seeds() -> list[Seed]:
    foreign = lzma.compress(b"config data " * 300)
    seeds = [Seed("archive", ARCHIVE, tuple(xz_hot(ARCHIVE)))]
    for name, stream in (("multiblock", multiblock_archive()),
                         ("sha256", lzma.compress(headers_tar(), check=lzma.CHECK_SHA256)),
                         ("none", lzma.compress(headers_tar(), check=lzma.CHECK_NONE))):
        seeds.append(Seed(name, stream, tuple(xz_hot(stream))))
    seeds.append(Seed("bigdict", xz_dict(ARCHIVE, 40), tuple(xz_hot(ARCHIVE))))
    embedded = b"junk" + foreign + bytes(13) + ARCHIVE + b"tail" * 8
    at = embedded.index(ARCHIVE)
    seeds.append(Seed("embedded", embedded, tuple(xz_hot(ARCHIVE, at) + xz_hot(foreign, 4))))
    tar = headers_tar()
    seeds.append(Seed("tar", tar, tuple(tar_hot(tar)), mode="tar"))
    return seeds


def _as_stream_input(data: bytes, knob: int, mode: str) -> bytes:
    """For "tar" seeds the mutated tar is compressed (checksums fixed when knob bit 1 says so); for the
    others knob bit 2 fixes the first block header's CRC32."""
    if mode != "tar":
        return fix_block_header_crc(data) if knob & 4 else data
    tar = fix_tar_checksums(data) if knob & 2 else data
    return b"\x90" * 32 + lzma.compress(tar, preset=0) + b"\xcc" * 32


def _carve_run(data: bytes, knob: int, mode: str) -> None:
    data = _as_stream_input(data, knob, mode)
    first = next(xzstream.stream_headers(data), None)
    errors: list[ExtractError] = []
    if first is not None:
        xzstream.looks_like_headers(data, first)
        try:
            info = xzstream.stream_end(data, first)
            assert first < info.end <= len(data), info
            xzstream.verify(data[first : info.end], first)
        except ExtractError as exc:
            errors.append(exc)
    try:
        span = locate.carve(data)
        if span is not None:
            assert 0 <= span.start < span.end <= len(data)
    except ExtractError as exc:
        errors.append(exc)
    carver = locate.StreamCarver()
    rnd = random.Random(knob)
    pos = 0
    try:
        while pos < len(data):
            size = rnd.choice((1, 7, 100, 4096, 65536, 1 << 20))
            if carver.feed(data[pos : pos + size]):
                break
            pos += size
        span = carver.found or carver.finish()
        if span is not None:
            assert data[span.start : span.end] == carver.archive, span
    except ExtractError as exc:
        errors.append(exc)
    if errors:
        raise errors[0]


def _codec_seeds() -> list[Seed]:
    plain = small_kernel()[: 24 << 10] + bytes(4096) + bzb.kernel_like(8 << 10, seed=3)
    seeds = []
    for codec in available_codecs():
        stream = bzb.compress(codec, plain)
        hot = [*range(0, min(40, len(stream))), *range(max(0, len(stream) - 16), len(stream))]
        seeds.append(Seed(codec, stream, tuple(hot), mode=codec))
    seeds.append(Seed("xz-bigdict", xz_dict(lzma.compress(plain), 40), tuple(range(0, 40)), mode="xz"))
    return seeds


def _codec_run(data: bytes, knob: int, mode: str) -> None:
    chunk = (16, 512, 4096, 1 << 16, compression.DEFAULT_CHUNK)[knob % 5]
    end = None if knob & 8 else len(data) - (knob >> 4) % 8 if len(data) >= 8 else len(data)
    stream = compression.decode_stream(mode, data, 0, chunk=chunk, end=end)
    _drain(stream, chunk * compression.OUTPUT_PER_CHUNK + compression.ZSTD_BLOCK_MAX)


def _drain(stream: compression.Stream, max_piece: int) -> int:
    total = 0
    try:
        for piece in stream:
            assert len(piece) <= max_piece, (len(piece), max_piece)
            total += len(piece)
            if total > OUTPUT_LIMIT:
                break
    finally:
        stream.close()
    return total


_PIECE_MAX = compression.DEFAULT_CHUNK * compression.OUTPUT_PER_CHUNK + compression.ZSTD_BLOCK_MAX


def _bzimage_seeds() -> list[Seed]:
    seeds = []
    header_fields = [bzimage.SETUP_SECTS, bzimage.BOOT_FLAG, bzimage.HEADER, bzimage.VERSION,
                     bzimage.PAYLOAD_OFFSET, bzimage.PAYLOAD_LENGTH]
    for codec in available_codecs():
        fake = bzb.bzimage(bzb.compress(codec, small_kernel()))
        start, end = fake.payload_start, fake.payload_end
        hot = [*header_fields, *range(start, start + 32), *range(end - 8, end)]
        seeds.append(Seed(codec, fake.image, tuple(hot)))
    return seeds


def _bzimage_run(data: bytes, knob: int, mode: str) -> None:
    which = knob % 3
    if which == 0:
        payload = bzimage.peel(data, "fuzz")
        assert 0 <= payload.offset < len(data) and (payload.end is None or payload.end <= len(data))
        _drain(payload.chunks(data), _PIECE_MAX)
    elif which == 1:
        _, chunks = bzimage.payload_chunks(data, "fuzz")
        _drain(chunks, compression.DEFAULT_CHUNK * compression.OUTPUT_PER_CHUNK + compression.ZSTD_BLOCK_MAX)
    else:
        for count, payload in enumerate(bzimage.scan_payloads(data)):
            if count == 3:
                break
            _drain(payload.chunks(data), _PIECE_MAX)


def _unpack_seeds() -> list[Seed]:
    h = hostile
    tars = {
        "headers": headers_tar(),
        "kinds": h.tar([h.directory("./"), h.directory("./include"), h.file("./include/a.h", b"int a;\n" * 20),
                        h.symlink("./include/b.h", "a.h"), h.hardlink("./include/c.h", "./include/a.h"),
                        h.member("./null", tarfile.CHRTYPE), h.member("./fifo", tarfile.FIFOTYPE)]),
        "pax": h.tar([h.directory("./"), h.member("./p", data=b"x" * 600, pax={"path": "./include/" + "p" * 120,
                                                                                "mtime": "1.5"})],
                     tarfile.PAX_FORMAT),
        "gnu-long": h.tar([h.directory("./"), h.file("./include/" + "l" * 150, b"long\n"),
                           h.symlink("./s", "include/" + "l" * 150)], tarfile.GNU_FORMAT),
    }
    seeds = []
    for name, tar in tars.items():
        seeds.append(Seed(f"{name}.tar", tar, tuple(tar_hot(tar)), mode="tar"))
        stream = hostile.xz(tar)
        seeds.append(Seed(f"{name}.tar.xz", stream, tuple(xz_hot(stream))))
    seeds.append(Seed("bigdict.tar.xz", xz_dict(ARCHIVE, 40), tuple(xz_hot(ARCHIVE))))
    return seeds


def fix_tar_checksums(tar: bytes) -> bytes:
    """Recompute the checksum of every block that looks like a ustar header, so mutations get past it."""
    out = bytearray(tar)
    for at in range(0, len(out) - 511, 512):
        block = out[at : at + 512]
        if block[257:262] == b"ustar":
            out[at + 148 : at + 156] = b" " * 8
            out[at + 148 : at + 156] = b"%06o\0 " % (sum(out[at : at + 512]) & 0o777777)
    return bytes(out)


def _unpack_run(data: bytes, knob: int, mode: str) -> None:
    if mode == "tar":
        data = lzma.compress(fix_tar_checksums(data) if knob & 2 else data, preset=0)
    elif knob & 4:
        data = fix_block_header_crc(data)
    members = unpack.list_members(data, max_members=1000, max_bytes=16 << 20)
    assert len(members) <= 1000


def _api_seeds() -> list[Seed]:
    files = elf_files()
    seeds = [Seed(name, files[name], elf_hot(files[name])) for name in ("exec", "exec-markers", "stripped", "module")]
    module = files["module"]
    for name, packed in (("module.ko.xz", lzma.compress(module, check=lzma.CHECK_CRC32)),
                         ("module.ko.gz", gzip.compress(module, mtime=0)),
                         ("module.ko.zst", bzb.compress("zstd", module, size_trailer=False))):
        seeds.append(Seed(name, packed, tuple(range(0, 32))))
    seeds.append(Seed("kheaders.tar.xz", ARCHIVE, tuple(xz_hot(ARCHIVE))))
    seeds.append(Seed("kheaders-bigdict.tar.xz", xz_dict(ARCHIVE, 40), tuple(xz_hot(ARCHIVE))))
    raw = b"\0" * 256 + small_kernel()
    seeds.append(Seed("raw", raw, tuple(xz_hot(ARCHIVE, raw.index(ARCHIVE)))))
    for codec in ("gzip", "xz", "lz4"):
        if codec in available_codecs():
            fake = bzb.bzimage(bzb.compress(codec, small_kernel()))
            hot = (bzimage.SETUP_SECTS, bzimage.VERSION, bzimage.PAYLOAD_OFFSET, bzimage.PAYLOAD_LENGTH,
                   *range(fake.payload_start, fake.payload_start + 24))
            seeds.append(Seed(f"bzImage.{codec}", fake.image, hot))
    return seeds


def _api_run(data: bytes, knob: int, mode: str) -> None:
    path = as_file(data)
    errors: list[ExtractError] = []
    try:
        found = pipeline.find(path)
        assert found.archive
        if knob & 1:
            unpack.list_members(found.archive)
    except ExtractError as exc:
        errors.append(exc)
    try:
        config = pipeline.find_config(path)
        assert config.text is not None
    except ExtractError as exc:
        errors.append(exc)
    if errors:
        raise errors[0]


def _kallsyms_seeds() -> list[Seed]:
    from kallsyms_builder import encode, kernel_symbols

    seeds = []
    for word, endian, layout in ((8, "<", "6.1"), (8, "<", "6.12"), (4, ">", "6.1"), (8, ">", "6.1-noseqs")):
        base = 0xFFFFFFFF81000000 if word == 8 else 0xC0100000
        enc = encode(kernel_symbols(300, base, word=word), word=word, endian=endian, layout=layout)
        data = bytes(4096) + enc.blob + bytes(64)
        hot = tuple(4096 + at for name, at in enc.labels.items() if name != "end")
        seeds.append(Seed(f"{word * 8}{endian}{layout}", data, hot))
    return seeds


def _kallsyms_run(data: bytes, knob: int, mode: str) -> None:
    from extract_ikheaders.analysis import kallsyms

    table = kallsyms.locate_in_image(data, "fuzzed", ())
    assert table.symbols and table.offset is not None and 0 <= table.offset < len(data), table.offset


def _dump_seeds() -> list[Seed]:
    import dump_builders as db

    info = db.vmcoreinfo(kernel_paddr=0x1000000)
    image = db.memory_image(6 * db.PAGE, {db.PAGE + 100: ARCHIVE[:2000]})
    pages = db.pages_of(image)
    seeds = [Seed("elfcore", db.elf_core([db.Seg(0, image[: 3 * db.PAGE]), db.Seg(0x100000, image[3 * db.PAGE :])],
                                         notes=[("VMCOREINFO", 0, info)]), tuple(range(0, 64 + 56 * 3, 4)))]
    for codec in ("zlib", "zstd", "snappy", "lzo", "none"):
        kdump = db.kdump_file(pages, codec=codec, info=info)
        seeds.append(Seed(f"kdump-{codec}", kdump, (*range(0, 8), *range(0x190, 0x1E0, 4),
                                                     *range(db.PAGE, db.PAGE + 112, 8))))
    seeds.append(Seed("flattened", db.flatten(db.kdump_file(pages, info=info), record=3000, rewrites=False),
                      tuple(range(0, 32))))
    lime = db.lime([(0, image[: 2 * db.PAGE]), (0x200000, image[2 * db.PAGE :])])
    seeds.append(Seed("lime", lime, (*range(0, 32, 4), *range(32 + 2 * db.PAGE, 64 + 2 * db.PAGE, 4))))
    return seeds


def _dump_run(data: bytes, knob: int, mode: str) -> None:
    mem = search.open_dump(data)
    for count, (start, end) in enumerate(mem.ranges()):
        assert start < end
        if count == 16:
            break
        assert len(mem.read_some(start, min(end - start, 2 * OUTPUT_LIMIT))) <= 2 * OUTPUT_LIMIT
    if knob & 1:
        search.find_in_dump(data, "fuzzed")


def _vmcoreinfo_seeds() -> list[Seed]:
    import dump_builders as db

    text = db.vmcoreinfo(kernel_paddr=0x1000000) + b"SYMBOL(kallsyms_names)=ffffffff82000000\nCRASHTIME=1\n"
    return [Seed("x86_64", text, tuple(i for i, c in enumerate(text) if c in b"=()\n"))]


def _vmcoreinfo_run(data: bytes, knob: int, mode: str) -> None:
    fields = physical.parse_vmcoreinfo(data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    start = physical.kernel_start(fields)
    assert start is None or start >= 0


def _image_seeds() -> list[Seed]:
    import builders_bootimg as bb

    body = small_kernel()
    gz = gzip.compress(body, mtime=0)
    return [Seed("boot-v0", bb.boot_image(bb.arm64_image(body), 0), tuple(range(0, 64, 4)), mode="android"),
            Seed("boot-v4", bb.boot_image(gz, 4), tuple(range(0, 64, 4)), mode="android"),
            Seed("zboot-gzip", bb.zboot(gz, "gzip"), tuple(range(0, 0x40, 4)), mode="zboot"),
            Seed("arm64", bb.arm64_image(body), tuple(range(0, 0x40, 4)), mode="image")]


def _image_run(data: bytes, knob: int, mode: str) -> None:
    from extract_ikheaders.images import arm64_image, armzimage, bootimg, s390

    """The seed's own format, or (knob bit 0) any of the others on the same bytes."""
    budget = compression.DEFAULT_CHUNK * compression.OUTPUT_PER_CHUNK + compression.ZSTD_BLOCK_MAX
    kinds = ("android", "zboot", "zimage", "s390", "image")
    kind = kinds[(knob >> 1) % len(kinds)] if knob & 1 else mode
    if kind == "android":
        bootimg.peel(data, "fuzz")
    elif kind == "image":
        arm64_image.arm64_image_layer(data, "fuzz")
        arm64_image.riscv_image_layer(data)
    else:
        reader = {"zboot": arm64_image.payload_chunks, "zimage": armzimage.payload_chunks, "s390": s390.payload_chunks}
        _, chunks = reader[kind](data, "fuzz")
        _drain(chunks, budget)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("elf", _elf_seeds, _elf_run, (CorruptElf,), "ElfImage: sections, symbols, ranges, notes"),
    Target("module", _module_seeds, _module_run, (ExtractError,), "pipeline.find on kheaders-like ET_REL objects"),
    Target("markers", _markers_seeds, _markers_run, (ExtractError,), "locate.by_markers"),
    Target("carve", _carve_seeds, _carve_run, (ExtractError,),
           "xzstream.stream_end/looks_like_headers/verify, locate.carve, locate.StreamCarver"),
    Target("codecs", _codec_seeds, _codec_run, (ExtractError,), "compression.decode_stream for every codec"),
    Target("bzimage", _bzimage_seeds, _bzimage_run, (ExtractError, NotMine),
           "bzimage.peel/payload_chunks/scan_payloads"),
    Target("unpack", _unpack_seeds, _unpack_run, (ExtractError,), "unpack.list_members"),
    Target("api", _api_seeds, _api_run, (ExtractError,), "pipeline.find and pipeline.find_config end to end"),
    Target("kallsyms", _kallsyms_seeds, _kallsyms_run, (ExtractError,), "kallsyms located by shape (--symbols)"),
    Target("dumps", _dump_seeds, _dump_run, (ExtractError, NotMine),
           "search.open_dump (ELF core, kdump, flattened, LiME): ranges, reads, find_in_dump"),
    Target("vmcoreinfo", _vmcoreinfo_seeds, _vmcoreinfo_run, (ExtractError,),
           "physical.parse_vmcoreinfo and kernel_start"),
    Target("images", _image_seeds, _image_run, (ExtractError, NotMine),
           "Android boot.img, zboot, ARM zImage, s390, arm64/riscv Image headers"),
)}


@cache
def seeds_of(name: str) -> tuple[Seed, ...]:
    return tuple(TARGETS[name].seeds())


# Inputs as one byte string (atheris mutates the options with the data; tests/fuzz_saved/ replays them) --


def modes_of(name: str) -> list[str]:
    return sorted({seed.mode for seed in seeds_of(name)})


def encode_input(name: str, mode: str, knob: int, data: bytes) -> bytes:
    """One byte choosing the seed's mode, four bytes of knob, then the data."""
    return bytes([modes_of(name).index(mode)]) + knob.to_bytes(4, "little") + data


def decode_input(name: str, raw: bytes) -> tuple[str, int, bytes]:
    modes = modes_of(name)
    mode = modes[raw[0] % len(modes)] if raw else modes[0]
    return mode, int.from_bytes(raw[1:5].ljust(4, b"\0"), "little"), raw[5:]

