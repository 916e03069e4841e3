"""Damaged containers through the command line: each gives the README's exit code with one line on
stderr (never a traceback), and a failure writes nothing. Then one regression test per fuzzing
finding (bench/fuzz.py, tests/test_fuzz.py), at the level where the bug was.

Exit codes (README): 0 found, 1 no headers in IMAGE, 2 unreadable, 3 headers found but damaged.
Where a damaged container still holds an intact, verified archive, the archive is found another
way (carving) and the answer is 0 with a note, as the README's table promises for stripped images.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from builders import HEADERS, headers_archive, incbin_object
from builders_bzimage import bzimage, compress, kernel_like, require, with_bytes
from conftest import Run, run_cli
from fuzz_harness import xz_dict

from extract_ikheaders.archive import locate, tarwalk, unpack, xzstream
from extract_ikheaders.elf import reader
from extract_ikheaders.elf.reader import CorruptElf, ElfImage
from extract_ikheaders.errors import Damaged, NotFound
from extract_ikheaders.images import bzimage as bz
from extract_ikheaders.model import Method

ARCHIVE = headers_archive()
RELEASE_DIR = "kheaders-6.1.0-synthetic"
SHDR_OFFSET, SHDR_SIZE = 24, 32  # sh_offset, sh_size in an Elf64_Shdr
ST_VALUE = 8  # st_value in an Elf64_Sym


# Running the tool and checking that a failure leaves no trace ------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with a hash of its content (directories as "dir")."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            state[str(Path(dirpath, name).relative_to(root))] = "dir"
        for name in filenames:
            path = Path(dirpath, name)
            state[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@dataclass(frozen=True)
class Outcome:
    run: Run
    work: Path

    @property
    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.run.stdout)
        return report


def run_on(tmp_path: Path, data: bytes, code: int, *fragments: str) -> Outcome:
    """Write `data` as the image, run the default action (unpack into ./kheaders-<release>) with --json
    from an empty directory, and check the exit code, the one-line message and what was written."""
    image = tmp_path / "image"
    image.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path)
    run = run_cli("--json", image, cwd=work)
    assert run.code == code, f"exit {run.code}, wanted {code}: {run.stderr}"
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    if code == 0:
        out = work / RELEASE_DIR
        written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
        assert written == {name[2:] for name in HEADERS}  # (the CLI may add a dotfile stamp of its own)
        assert all((out / name).read_bytes() == data for name, data in HEADERS.items())
    else:
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"extract-ikheaders: {image}"), run.stderr
        error = json.loads(run.stdout)["error"]  # the one JSON record says what the one line says
        assert (error["exit"], f"extract-ikheaders: {error['message']}") == (code, lines[0])
        assert snapshot(tmp_path) == before, "a failure wrote something"
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr
    return Outcome(run, work)


# A synthetic vmlinux and where things are in it -------------------------------------------------------


@dataclass(frozen=True)
class Vmlinux:
    data: bytes
    archive_at: int  # file offset of kernel_headers_data

    @property
    def elf(self) -> ElfImage:
        return ElfImage(self.data)

    def section_header(self, name: str) -> int:
        elf = self.elf
        section = next(s for s in elf.sections() if s.name == name)
        return elf.shoff + section.index * elf.shentsize

    def symbol_entry(self, name: str) -> int:
        """File offset of the .symtab entry of `name` (64-bit little-endian)."""
        elf = self.elf
        symtab = next(s for s in elf.sections() if s.name == ".symtab")
        strtab = elf.sections()[symtab.link]
        for at in range(symtab.offset, symtab.offset + symtab.size, symtab.entsize):
            st_name = struct.unpack_from("<I", self.data, at)[0]
            start = strtab.offset + st_name
            if self.data[start : self.data.index(b"\0", start)] == name.encode():
                return at
        raise KeyError(name)

    def patched(self, at: int, fmt: str, value: int) -> bytes:
        out = bytearray(self.data)
        struct.pack_into(fmt, out, at, value)
        return bytes(out)


def build(tmp: Path, blob: bytes) -> Vmlinux:
    tmp.mkdir(parents=True, exist_ok=True)
    path: Path = incbin_object(tmp, blob)
    data = path.read_bytes()
    elf = ElfImage(data)
    start = elf.find_symbols(locate.START_SYMBOL)[locate.START_SYMBOL]
    return Vmlinux(data, elf.symbol_file_offset(start))


@pytest.fixture(scope="module")
def kernel_elf(tmp_path_factory: pytest.TempPathFactory) -> Vmlinux:
    image = build(tmp_path_factory.mktemp("vmlinux"), ARCHIVE)
    assert image.data[image.archive_at : image.archive_at + len(ARCHIVE)] == ARCHIVE
    return image


def test_intact_vmlinux_is_found_by_symbols(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    report = run_on(tmp_path, kernel_elf.data, 0).report
    assert report["archive"] == {"offset": kernel_elf.archive_at, "size": len(ARCHIVE), "method": "symbols",
                                 "sha256": hashlib.sha256(ARCHIVE).hexdigest(), "verified": "content"}


# Truncated ELF ------------------------------------------------------------------------------------


def test_elf_cut_inside_its_header_has_no_headers(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    """Debatable: the file is damaged, but what is left holds no archive, so 1 (README: "no kernel
    headers in IMAGE"), not 3 ("headers found but damaged")."""
    run_on(tmp_path, kernel_elf.data[:40], 1, "cannot find kernel headers")


def test_elf_cut_before_the_archive_has_no_headers(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    """As above: nothing of the archive is left; 1."""
    run_on(tmp_path, kernel_elf.data[: kernel_elf.archive_at], 1, "cannot find kernel headers")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_elf_cut_inside_the_archive_is_damaged(tmp_path: Path, kernel_elf: Vmlinux, keep: float) -> None:
    """The section headers (at the end) are gone with the cut, so the raw bytes are searched: the
    stream's first tar headers say it is the headers archive, its missing end makes it damaged: 3,
    naming the archive's offset."""
    cut = kernel_elf.archive_at + int(len(ARCHIVE) * keep)
    run_on(tmp_path, kernel_elf.data[:cut], 3, f"{kernel_elf.archive_at:#x}")


def test_elf_cut_after_the_archive_is_still_found(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    """Only the ELF structures are lost: the archive itself is whole and verified, so 0."""
    cut = kernel_elf.archive_at + len(ARCHIVE) + 16
    report = run_on(tmp_path, kernel_elf.data[:cut], 0).report
    assert report["archive"]["method"] == "carve" and report["archive"]["offset"] == kernel_elf.archive_at
    assert any("ELF structures unusable" in note for note in report["notes"])


# ELF tables that point outside ---------------------------------------------------------------------


def test_section_header_table_past_the_end(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    """e_shoff beyond the file: no sections, so the raw bytes are carved; the archive is intact: 0."""
    data = kernel_elf.patched(0x28, "<Q", len(kernel_elf.data) + 0x1000)
    report = run_on(tmp_path, data, 0).report
    assert report["archive"]["method"] == "carve"
    assert any("section header table" in note for note in report["notes"])


@pytest.mark.parametrize("section", [".rodata", ".symtab", ".strtab"])
@pytest.mark.parametrize("field", [SHDR_OFFSET, SHDR_SIZE])
def test_section_pointing_past_the_end(tmp_path: Path, kernel_elf: Vmlinux, section: str, field: int) -> None:
    """One section's data lies past the end of the file. Regression (elf.py:symbol_file_offset): for
    .rodata the symbol offsets used to point past the file and the intact archive was reported as
    damaged (3); now the symbols are unusable, the raw bytes are carved, and the answer is 0."""
    data = kernel_elf.patched(kernel_elf.section_header(section) + field, "<Q", 2 * len(kernel_elf.data))
    report = run_on(tmp_path, data, 0).report
    assert report["archive"]["method"] == "carve" and report["archive"]["offset"] == kernel_elf.archive_at
    assert any("lies outside the file" in note for note in report["notes"])


def test_symbol_outside_its_section(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    """kernel_headers_data's st_value beyond .rodata: the symbols are unusable, the archive is intact: 0."""
    rodata = next(s for s in kernel_elf.elf.sections() if s.name == ".rodata")
    data = kernel_elf.patched(kernel_elf.symbol_entry(locate.START_SYMBOL) + ST_VALUE, "<Q",
                           rodata.addr + rodata.size + 0x100)
    report = run_on(tmp_path, data, 0).report
    assert report["archive"]["method"] == "carve"
    assert any("lies outside section .rodata" in note for note in report["notes"])


def test_end_symbol_before_start_symbol(tmp_path: Path, kernel_elf: Vmlinux) -> None:
    """kernel_headers_data_end < kernel_headers_data: the same as any unusable symbol table; 0 by carving.
    (An answer of 3 would report a damaged archive that is in fact intact.)"""
    start = kernel_elf.elf.find_symbols(locate.START_SYMBOL)[locate.START_SYMBOL]
    swapped = Vmlinux(kernel_elf.patched(kernel_elf.symbol_entry(locate.END_SYMBOL) + ST_VALUE, "<Q", start.value + 8),
                      kernel_elf.archive_at)
    data = swapped.patched(kernel_elf.symbol_entry(locate.START_SYMBOL) + ST_VALUE, "<Q", start.value + 16)
    report = run_on(tmp_path, data, 0).report
    assert report["archive"]["method"] == "carve"
    assert any(f"{locate.END_SYMBOL} (" in note and "lies before" in note
               for note in report["notes"])


# Damaged archives between the symbols ------------------------------------------------------------


def _stream_parts(stream: bytes) -> tuple[int, int]:
    """(index start, footer start) of a single xz stream."""
    footer = len(stream) - 12
    backward = struct.unpack_from("<I", stream, footer + 4)[0]
    return footer - (backward + 1) * 4, footer


def _bad_footer(stream: bytes) -> bytes:
    footer = len(stream) - 12
    out = bytearray(stream)
    struct.pack_into("<I", out, footer + 4, 0x1000)  # backward size, CRC32 fixed: consistent but wrong
    struct.pack_into("<I", out, footer, zlib.crc32(out[footer + 4 : footer + 10]))
    return bytes(out)


def _flip(stream: bytes, at: int) -> bytes:
    out = bytearray(stream)
    out[at] ^= 0x10
    return bytes(out)


INDEX, FOOTER = _stream_parts(ARCHIVE)
BROKEN: dict[str, bytes] = {
    "cut-10%": ARCHIVE[: len(ARCHIVE) // 10],
    "cut-50%": ARCHIVE[: len(ARCHIVE) // 2],
    "cut-90%": ARCHIVE[: len(ARCHIVE) * 9 // 10],
    "no-footer": ARCHIVE[:FOOTER],
    "wrong-footer": _bad_footer(ARCHIVE),
    "no-index": ARCHIVE[:INDEX] + ARCHIVE[FOOTER:],
    "wrong-index": _flip(ARCHIVE, INDEX + 2),
}


@pytest.mark.parametrize("damage", sorted(BROKEN))
def test_broken_archive_between_the_symbols(tmp_path: Path, damage: str) -> None:
    image = build(tmp_path / "build", BROKEN[damage])
    run_on(tmp_path, image.data, 3, f"xz stream at offset {image.archive_at:#x}", "no valid footer and index")


@pytest.mark.parametrize("where", [0.3, 0.6])
def test_bit_flip_in_block_data(tmp_path: Path, where: float) -> None:
    """The index is intact, so the stream's bounds hold; decoding finds the damage (checksums)."""
    at = 12 + int((INDEX - 12) * where)
    image = build(tmp_path / "build", _flip(ARCHIVE, at))
    outcome = run_on(tmp_path, image.data, 3, "corrupt xz data near offset 0x")
    named = int(outcome.run.stderr.split("near offset ")[1].split(":")[0], 16)
    assert image.archive_at < named <= image.archive_at + len(ARCHIVE)


# bzImage ------------------------------------------------------------------------------------------

BZ_CODECS = ["gzip", "xz", "lz4", "zstd"]


def kernel(size: int = 256 << 10, at: float = 0.6) -> bytes:
    """Kernel-like bytes holding a banner early and the archive at `at` of the way through."""
    body = bytearray(kernel_like(size, seed=11))
    banner = b"Linux version 6.1.0-synthetic (builder@tests) (gcc) #1 SMP\n\0"
    body[0x1000 : 0x1000 + len(banner)] = banner
    pos = int(size * at)
    body[pos : pos + len(ARCHIVE)] = ARCHIVE
    return bytes(body)


@pytest.fixture(params=BZ_CODECS)
def bz_codec(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require(name)
    return name


def test_intact_bzimage(tmp_path: Path, bz_codec: str) -> None:
    fake = bzimage(compress(bz_codec, kernel()))
    report = run_on(tmp_path, fake.image, 0).report
    assert report["layers"][0]["detail"] == f"boot protocol 2.15, {bz_codec}"


def test_payload_length_past_the_end_of_the_file(tmp_path: Path, bz_codec: str) -> None:
    """A length that cannot be true is not believed: the payload is found by its magic; 0."""
    fake = bzimage(compress(bz_codec, kernel()))
    image = with_bytes(fake.image, bz.PAYLOAD_LENGTH, struct.pack("<I", len(fake.image)))
    report = run_on(tmp_path, image, 0).report
    assert "does not fit in the file" in report["layers"][0]["detail"]


def test_payload_length_too_long_within_the_file(tmp_path: Path, bz_codec: str) -> None:
    """A length running into the bytes after the payload: each decoder stops at its stream's end; 0."""
    fake = bzimage(compress(bz_codec, kernel()))
    longer = fake.payload_length + len(fake.image) - fake.payload_end
    run_on(tmp_path, with_bytes(fake.image, bz.PAYLOAD_LENGTH, struct.pack("<I", longer)), 0)


def test_payload_length_too_short(tmp_path: Path, bz_codec: str) -> None:
    """Debatable. A self-consistent boot header (the length fits, a compressor's magic is where it
    says) is believed, so a stream running past its length is damaged: 3, naming where the header
    says the payload ends. Decoding on past a length the header states would make a truncated
    payload and a lying header indistinguishable."""
    fake = bzimage(compress(bz_codec, kernel()))
    short = fake.payload_length // 4
    image = with_bytes(fake.image, bz.PAYLOAD_LENGTH, struct.pack("<I", short))
    run_on(tmp_path, image, 3, f"is truncated: its data ends at {fake.payload_start + short:#x}")


def test_payload_truncated(tmp_path: Path, bz_codec: str) -> None:
    """The file ends inside the payload, before the archive: 3, naming where the data ran out."""
    fake = bzimage(compress(bz_codec, kernel()))
    cut = fake.payload_start + fake.payload_length * 3 // 10
    run_on(tmp_path, fake.image[:cut], 3, f"{cut:#x}")


@pytest.mark.parametrize(("field", "value"), [
    (bz.HEADER, b"\0\0\0\0"),  # no HdrS
    (bz.VERSION, b"\x00\x01"),  # protocol 1.00
    (bz.PAYLOAD_OFFSET, b"\x33\x33\x33\x00"),  # nowhere near the payload
])
def test_corrupt_header_intact_payload(tmp_path: Path, field: int, value: bytes) -> None:
    """The magic scan finds the payload; 0."""
    require("xz")
    fake = bzimage(compress("xz", kernel()))
    report = run_on(tmp_path, with_bytes(fake.image, field, value), 0).report
    layer = report["layers"][0]
    assert layer["offset"] == fake.payload_start and "payload found by scanning" in layer["detail"]


def test_corrupt_archive_inside_a_bzimage(tmp_path: Path) -> None:
    """Regression (locate.py:StreamCarver): an archive that looked like the headers and then failed
    to decode was skipped silently, giving 1; it is the headers archive, damaged: 3."""
    require("gzip")
    body = kernel()
    at = body.index(ARCHIVE)
    flipped = body[: at + INDEX - 40] + bytes([body[at + INDEX - 40] ^ 0x01]) + body[at + INDEX - 39 :]
    fake = bzimage(compress("gzip", flipped))
    # Unpacking decodes the archive once, as it writes; -a decodes it while carving.
    outcome = run_on(tmp_path, fake.image, 3, "the headers archive is corrupt or truncated at its first member: "
                                             "corrupt xz data near offset")
    assert at < json.loads(outcome.run.stdout)["error"]["offset"] <= at + len(ARCHIVE)
    archive = run_cli("-a", "/dev/null", tmp_path / "image")
    assert (archive.code, f"the headers archive at decoded offset {at:#x} is damaged" in archive.stderr) == (3, True)
    # A bit flipped inside a block's data leaves the structure sound: --no-verify does not see it.
    triage = run_cli("--json", "--no-verify", "-a", "/dev/null", tmp_path / "image")
    assert (triage.code, json.loads(triage.stdout)["archive"]["verified"]) == (0, "structure")


# Regression tests for the fuzzers' findings ----------------------------------------------------------


def _tar_header(name: bytes, size_field: bytes, kind: bytes = b"5") -> bytes:
    block = bytearray(512)
    block[: len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = size_field
    block[156:157] = kind
    block[257:263] = b"ustar\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


@pytest.mark.parametrize("size_field", [b"0000000=000\0", b"\xff" * 12, b"-00000000001"])
def test_tar_names_stop_at_a_bad_size_field(size_field: bytes) -> None:
    """xzstream.py:tar_names raised ValueError on a size field that is not octal (found by bench/fuzz.py,
    carve); such a header now ends the names."""
    data = _tar_header(b"./", size_field) + _tar_header(b"./include/", b"00000000000\0")
    assert list(tarwalk.names_at_start(data)) == []  # the walker refuses such a header
    stream = lzma.compress(data + bytes(1024))
    assert xzstream.looks_like_headers(stream, 0) is False


def test_tar_names_reads_a_base256_size() -> None:
    size = (1).to_bytes(12, "big")
    data = _tar_header(b"./big", b"\x80" + size[1:], b"0") + b"x".ljust(512, b"\0") \
        + _tar_header(b"./include/", b"00000000000\0")
    assert list(tarwalk.names_at_start(data)) == ["./big", "./include"]


def test_marker_frame_must_end_inside_the_window() -> None:
    """locate.py:by_markers accepted an IKHD_ED lying past `stop` (found by bench/fuzz.py, markers)."""
    buf = b"\0" * 8 + b"IKHD_ST" + ARCHIVE + b"IKHD_ED"
    stream_end = 15 + len(ARCHIVE)
    assert locate.by_markers(buf, 0, stream_end) is None
    assert locate.by_markers(buf, 0, stream_end + 7) == locate.Span(Method.MARKERS, 15, stream_end)


HUGE_DICTIONARY = xz_dict(ARCHIVE, 40)  # valid xz whose block header asks for a 4 GiB - 1 dictionary


def test_huge_dictionary_is_refused_not_allocated() -> None:
    """unpack.py:_open_stream (LZMAFile) let liblzma allocate what a block header asks for: under an
    address-space limit, MemoryError (found by bench/fuzz.py, unpack). Every xz decoder of the archive
    now has a memory limit; the stream is refused as Damaged."""
    assert lzma.decompress(HUGE_DICTIONARY) == lzma.decompress(ARCHIVE)  # a valid stream, only hostile
    with pytest.raises(Damaged, match="Memory usage limit"):
        unpack.list_members(HUGE_DICTIONARY)
    with pytest.raises(Damaged, match=r"asks for more than 256 MiB"):
        xzstream.verify(HUGE_DICTIONARY)
    assert xzstream.looks_like_headers(HUGE_DICTIONARY, 0) is False
    assert xzstream.decode_prefix(HUGE_DICTIONARY, 100) == b""


def test_huge_dictionary_under_an_address_space_limit(tmp_path: Path) -> None:
    """The same in a process limited to 1 GiB of address space, as bench/fuzz.py runs: no MemoryError."""
    script = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from extract_ikheaders import errors
from extract_ikheaders.archive import locate, unpack, xzstream
data = open({str(tmp_path / 'a.tar.xz')!r}, "rb").read()
for call in (lambda: unpack.list_members(data), lambda: xzstream.verify(data)):
    try:
        call()
    except errors.Damaged as exc:
        print("Damaged")
carver = locate.StreamCarver()
carver.feed(b"\\0" * 64 + data + bytes(70000))
print(carver.found)
"""
    (tmp_path / "a.tar.xz").write_bytes(HUGE_DICTIONARY)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Damaged", "Damaged", "None"]


def test_verify_names_where_the_data_ends() -> None:
    """xzstream.py:verify named the end of its 1 MiB read step, not of the data, for a cut stream."""
    with pytest.raises(Damaged, match="ends at offset 0x10c8 ") as info:
        xzstream.verify(ARCHIVE[:200], base_offset=0x1000)
    assert info.value.offset == 0x1000 + 200


def _rel_object(tmp_path: Path) -> bytes:
    path: Path = incbin_object(tmp_path, ARCHIVE, link=False)
    return path.read_bytes()


def test_symbol_offset_never_points_past_the_file(tmp_path: Path) -> None:
    """elf.py:symbol_file_offset returned offsets past the end of the file when the symbol's section
    did (found by bench/fuzz.py, elf)."""
    data = _rel_object(tmp_path)
    elf = ElfImage(data)
    sym = elf.find_symbols(locate.START_SYMBOL)[locate.START_SYMBOL]
    header = elf.shoff + sym.shndx * elf.shentsize
    broken = bytearray(data)
    struct.pack_into("<Q", broken, header + SHDR_OFFSET, 0xFFFF_FFFF)
    damaged = ElfImage(bytes(broken))
    with pytest.raises(CorruptElf, match="lies outside the file"):
        damaged.symbol_file_offset(damaged.find_symbols(locate.START_SYMBOL)[locate.START_SYMBOL])


def test_unterminated_section_name_is_read_whole(tmp_path: Path) -> None:
    """elf.py:_section_names dropped the last character of a name with no NUL before the table's end."""
    data = bytearray(_rel_object(tmp_path))
    elf = ElfImage(bytes(data))
    shstrtab = elf.sections()[elf.shstrndx]
    last = max(elf.sections(), key=lambda s: data.index(s.name.encode() + b"\0", shstrtab.offset)
               if s.name else 0)
    name_at = data.index(last.name.encode() + b"\0", shstrtab.offset)
    size = name_at + len(last.name) - shstrtab.offset  # the table now ends right after the name, no NUL
    struct.pack_into("<Q", data, elf.shoff + elf.shstrndx * elf.shentsize + SHDR_SIZE, size)
    assert ElfImage(bytes(data)).sections()[last.index].name == last.name


def test_many_copies_of_a_symbol_name_take_linear_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """elf.py:find_symbols searched the whole .symtab once per copy of the name in .strtab: a table
    of 100,000 copies took over a minute here, growing with the square of the tables' size. Past a few
    copies it now reads each symbol once: the per-copy search runs a bounded number of times."""
    data = bytearray(_rel_object(tmp_path))
    elf = ElfImage(bytes(data))
    symtab = next(s for s in elf.sections() if s.name == ".symtab")
    strtab = elf.sections()[symtab.link]
    real = elf.find_symbols(locate.START_SYMBOL)[locate.START_SYMBOL]
    copies = (locate.START_SYMBOL.encode() + b"\0") * 100_000
    old_symtab = bytes(data[symtab.offset : symtab.offset + symtab.size])
    # new .strtab: the copies, then the old table; new .symtab: the old entries, names moved along,
    # then 50,000 entries naming copies (a hostile table can say anything)
    entries = bytearray(old_symtab)
    for at in range(0, len(entries), symtab.entsize):
        struct.pack_into("<I", entries, at, struct.unpack_from("<I", entries, at)[0] + len(copies))
    entries += bytes(symtab.entsize) * 50_000
    new_strtab_at = len(data)
    data += copies + data[strtab.offset : strtab.offset + strtab.size]
    new_symtab_at = len(data)
    data += entries
    for section, offset, size in ((strtab, new_strtab_at, len(copies) + strtab.size),
                                  (symtab, new_symtab_at, len(entries))):
        header = elf.shoff + section.index * elf.shentsize
        struct.pack_into("<QQ", data, header + SHDR_OFFSET, offset, size)
    hostile = ElfImage(bytes(data))
    searches = []
    per_copy = ElfImage._symbols_named
    monkeypatch.setattr(ElfImage, "_symbols_named", lambda self, *args: searches.append(1) or per_copy(self, *args))
    found = hostile.find_symbols(locate.START_SYMBOL, locate.END_SYMBOL)
    assert len(searches) <= 2 * reader._NAME_COPIES_MAX  # not one per copy (100,000)
    assert (found[locate.START_SYMBOL].value, found[locate.START_SYMBOL].shndx) == (real.value, real.shndx)
    assert found[locate.END_SYMBOL].value == real.value + len(ARCHIVE)


def test_corrupt_candidate_in_a_stream_is_reported() -> None:
    """locate.py:StreamCarver: a stream that decoded to ./include headers and then failed was dropped
    without a word (NotFound); finish() now reports it, unless a good archive follows."""
    bad = bytearray(ARCHIVE)
    bad[INDEX - 40] ^= 0x01
    image = b"\0" * 100 + bytes(bad) + bytes(70_000)
    carver = locate.StreamCarver()
    assert carver.feed(image) is False
    with pytest.raises(Damaged, match="the headers archive at decoded offset 0x64 is damaged") as info:
        carver.finish()
    assert info.value.offset is not None and info.value.offset > 100
    carver = locate.StreamCarver()
    assert carver.feed(image + ARCHIVE + bytes(70_000)) is True
    assert carver.archive == ARCHIVE


def test_whole_file_bomb_that_does_not_fit_in_memory(tmp_path: Path) -> None:
    """codecs.py:decode_all: a .gz of 640 MiB of zeros (under api's old 1 GiB limit) in a process limited
    to 768 MiB of address space raised MemoryError (exit 4, "internal error"). It is an InputError,
    exit 2: nothing is damaged, the input is too big to hold. Since codecs.MAX_IMAGE (256 MiB) it is
    refused at that size, with the remedy, before memory runs out."""
    image = tmp_path / "bomb.gz"
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    image.write_bytes(b"".join(packer.compress(chunk) for _ in range(640)) + packer.flush())
    work = tmp_path / "work"
    work.mkdir()

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))

    proc = subprocess.run([sys.executable, "-m", "extract_ikheaders", image], cwd=work, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    assert "decompresses to more than 268,435,456 bytes" in proc.stderr and "Traceback" not in proc.stderr
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(("start", "stop"), [(0, 1 << 64), (1 << 63, (1 << 63) + 100), (-(1 << 70), -5), (50, 10)])
def test_search_ranges_past_the_buffer_are_clamped(start: int, stop: int) -> None:
    """locate.py:by_markers (and the other range searches) raised OverflowError on a range taken
    from a damaged section header, e.g. a .rodata at 2**63 (found by bench/fuzz.py, module)."""
    buf = b"\0" * 8 + b"IKHD_ST" + ARCHIVE + b"IKHD_ED" + b"IKCFG_ST\x1f\x8b\x08IKCFG_ED"
    whole = (0, len(buf)) if stop > len(buf) and start <= 0 else None
    expected = locate.Span(Method.MARKERS, 15, 15 + len(ARCHIVE)) if whole else None
    assert locate.by_markers(buf, start, stop) == expected
    assert (locate.carve(buf, start, stop) is not None) == bool(whole)
    assert (locate.config_by_markers(buf, start, stop) is not None) == bool(whole)
    assert list(xzstream.stream_headers(buf, start, stop)) == ([15] if whole else [])


def test_rodata_past_the_end_without_the_symbols(tmp_path: Path) -> None:
    """The CLI view of the same: a module whose symbol table lacks kernel_headers_data and whose
    .rodata header says 2**63 exited 4 (internal error); now 1, as for any module without them."""
    data = bytearray(_rel_object(tmp_path))
    elf = ElfImage(bytes(data))
    strtab = elf.sections()[next(s for s in elf.sections() if s.name == ".symtab").link]
    names = data[strtab.offset : strtab.offset + strtab.size].replace(b"kernel_headers", b"Kernel_headers")
    data[strtab.offset : strtab.offset + strtab.size] = names
    rodata = next(s for s in elf.sections() if s.name == ".rodata")
    struct.pack_into("<Q", data, elf.shoff + rodata.index * elf.shentsize + SHDR_OFFSET, 1 << 63)
    run_on(tmp_path, bytes(data), 1, "the symbol table has no kernel_headers_data")


@pytest.mark.parametrize("size", [0x28, 0x2F, 0x3F])
def test_arm_zimage_cut_inside_its_header(tmp_path: Path, size: int) -> None:
    """armzimage.py:payload_chunks unpacked its 12-byte table from a file that ends inside it
    (struct.error, "internal error"; found by bench/fuzz/atheris_run.py, api). It is now no payload,
    and the bytes are searched as raw memory."""
    from extract_ikheaders import pipeline
    from extract_ikheaders.images import armzimage

    data = bytes(0x24) + (0x016F2818).to_bytes(4, "little") + bytes(size - 0x28)
    with pytest.raises(NotFound, match="cut short inside its header"):
        armzimage.payload_chunks(data, "zImage")
    (tmp_path / "zImage").write_bytes(data)
    with pytest.raises(NotFound, match="cannot find kernel headers"):
        pipeline.find(tmp_path / "zImage")
