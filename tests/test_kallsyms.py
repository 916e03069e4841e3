"""kallsyms: the symbol table decoded through VMCOREINFO or located by shape in any image or dump."""

from __future__ import annotations

import gzip
import mmap
import random
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus
from dump_builders import Seg, elf_core
from kallsyms_builder import encode, encode_name, kernel_symbols, tokens_for

from extract_ikheaders.analysis import kallsyms, kallsyms_locate
from extract_ikheaders.dumps.search import open_dump
from extract_ikheaders.errors import Damaged, NotFound

_KERNEL_MAP = 0xFFFFFFFF80000000
_X86_BASE = 0xFFFFFFFF81000000


# Synthetic tables ---------------------------------------------------------------------------------

_TOKENS = ["T", "t", "D", "foo", "_bar", "x"] + [f"<{i}>" for i in range(6, 256)]


def _token_tables(tokens: list[str]) -> tuple[bytes, bytes]:
    """kallsyms_token_table and kallsyms_token_index for `tokens`."""
    table, index = b"", []
    for token in tokens:
        index.append(len(table))
        table += token.encode() + b"\0"
    return table, struct.pack("<256H", *index)


def _name(indices: list[int]) -> bytes:
    """One kallsyms_names entry: its length (two bytes when >= 0x80), then the token indices."""
    n = len(indices)
    head = bytes([n]) if n < 0x80 else bytes([0x80 | (n & 0x7F), n >> 7])
    return head + bytes(indices)


_NAMES = [_name([0, 3]), _name([1, 4, 5]), _name([2] + [5] * 200)]  # Tfoo, t_barx, D + x*200
_EXPECTED = [("T", "foo"), ("t", "_barx"), ("D", "x" * 200)]


def test_decode_names_expands_tokens_and_long_lengths() -> None:
    table, index = _token_tables(_TOKENS)
    tokens = kallsyms_locate.decode_tokens(table, struct.unpack("<256H", index))
    names, end = kallsyms_locate.decode_names(b"".join(_NAMES), 3, tokens)
    assert list(names) == _EXPECTED
    assert end == len(b"".join(_NAMES))


def test_decode_names_refuses_a_short_stream() -> None:
    table, index = _token_tables(_TOKENS)
    tokens = kallsyms_locate.decode_tokens(table, struct.unpack("<256H", index))
    with pytest.raises(Damaged, match="symbol 2 of 3"):
        kallsyms_locate.decode_names(b"".join(_NAMES)[:-5], 3, tokens)


def test_decode_names_checks_markers() -> None:
    table, index = _token_tables(_TOKENS)
    tokens = kallsyms_locate.decode_tokens(table, struct.unpack("<256H", index))
    with pytest.raises(Damaged, match="symbol 0 is not where kallsyms_markers says"):
        kallsyms_locate.decode_names(b"".join(_NAMES), 3, tokens, markers=[1])


def test_decode_tokens_refuses_an_index_past_the_table() -> None:
    table, index = _token_tables(_TOKENS)
    with pytest.raises(Damaged, match="token 0"):
        kallsyms_locate.decode_tokens(table, (len(table) + 10, *struct.unpack("<256H", index)[1:]))


def test_relative_addresses_both_modes() -> None:
    base = _X86_BASE
    assert kallsyms_locate.relative_addresses((0, 0x10, 0x2000), base).tolist() == [base, base + 0x10, base + 0x2000]
    # CONFIG_KALLSYMS_ABSOLUTE_PERCPU: >= 0 absolute (percpu), < 0 is base - 1 - offset
    assert kallsyms_locate.relative_addresses((0x1000, -1, -0x11), base).tolist() == [0x1000, base, base + 0x10]
    # 32-bit: wraps at 2**32
    assert kallsyms_locate.relative_addresses((0x10,), 0xFFFFFFF8, 4).tolist() == [0x8]


def test_encoder_puts_digits_at_their_own_slots() -> None:
    tokens = tokens_for(["T0123456789abc"])
    assert tokens[0x30:0x3A] == list("0123456789")
    assert len(tokens) == 256 and all(tokens)
    assert encode_name("Tabc", tokens)[0] <= 4


# Located by shape: the synthetic encoder, every layout ---------------------------------------------

_CASES = [(word, endian, layout, mode) for word in (4, 8) for endian in "<>" for layout in ("6.1", "6.1-noseqs", "6.12")
          for mode in ("relative", "absolute", "percpu") if not (layout == "6.12" and mode == "absolute")]


def _noise(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(size))


def _image(blob: bytes, seed: int = 7) -> bytes:
    """The tables inside other bytes, with a decoy run of digit tokens before them."""
    decoy = b"\xff" * 64 + kallsyms_locate.DIGIT_TOKENS + b"A\0B\0\0\0" + bytes(512)
    head = _noise(8192, seed) + decoy
    head += bytes(-len(head) % 4096)
    return head + blob + _noise(4096, seed + 1)


def _base(word: int) -> int:
    return _X86_BASE if word == 8 else 0xC0100000


@pytest.mark.parametrize(("word", "endian", "layout", "mode"), _CASES)
def test_locate_every_layout(word: int, endian: str, layout: str, mode: str) -> None:
    symbols = kernel_symbols(700, _base(word), word=word, percpu=9 if mode == "percpu" else 0)
    enc = encode(symbols, word=word, endian=endian, layout=layout, mode=mode, percpu_below=0x10000)
    image = _image(enc.blob)
    found = kallsyms_locate.locate(image, "image")
    assert found.symbols == enc.symbols
    assert len(found.symbols) == 701 + (9 if mode == "percpu" else 0)
    assert found.word == word and found.big_endian == (endian == ">")
    assert found.names_at == image.index(enc.blob) + enc.labels["kallsyms_names"]
    assert found.token_table_at == image.index(enc.blob) + enc.labels["kallsyms_token_table"]
    assert ("after the token index" in found.layout) == (layout == "6.12")
    assert found.relative_base == (None if mode == "absolute" else _base(word))


@pytest.mark.parametrize("count", [10, 255, 256, 257, 513])  # names with every digit: as in any kernel
def test_locate_marker_boundaries(count: int) -> None:
    enc = encode(kernel_symbols(count, _X86_BASE)[:count], layout="6.1")
    assert kallsyms_locate.locate(_image(enc.blob), "image").symbols == enc.symbols


def test_broken_names_are_damaged() -> None:
    enc = encode(kernel_symbols(700, _X86_BASE), layout="6.12")
    blob = bytearray(enc.blob)
    blob[enc.labels["kallsyms_names"]] = 0x7F  # the first name's length: every later one is misread
    with pytest.raises(Damaged, match=r"kallsyms token table at 0x[0-9a-f]+, but no kallsyms_names"):
        kallsyms_locate.locate(_image(bytes(blob)), "image")


def test_missing_addresses_are_damaged() -> None:
    enc = encode(kernel_symbols(700, _X86_BASE), layout="6.12")
    cut = enc.blob[: enc.labels["kallsyms_offsets"]] + _noise(8192, 3)
    with pytest.raises(Damaged, match="701 names decode but no sorted address table"):
        kallsyms_locate.locate(cut, "image")


def test_no_table_is_not_found() -> None:
    with pytest.raises(NotFound, match="no kallsyms table found"):
        kallsyms_locate.locate(_image(b""), "image")


@pytest.mark.parametrize("seed", range(4))
def test_mutated_tables_never_raise_raw_exceptions(seed: int) -> None:
    """Damaged or hostile bytes around a real-looking table: a result, NotFound or Damaged only."""
    rng = random.Random(seed)
    word, endian = (4, 8)[seed % 2], "<>"[seed // 2]
    layout = ("6.1", "6.12")[seed % 2]
    enc = encode(kernel_symbols(600, _base(word), word=word), word=word, endian=endian, layout=layout)
    outcomes: Counter[str] = Counter()
    for _ in range(300):
        data = bytearray(bytes(4096) + enc.blob + bytes(64))
        for _ in range(rng.choice((1, 4, 32))):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randrange(1, 64)]
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        try:
            kallsyms.locate_in_image(bytes(data), "mutated", ())
            outcomes["decoded"] += 1
        except (NotFound, Damaged) as exc:
            outcomes[type(exc).__name__] += 1
    assert sum(outcomes.values()) == 300 and outcomes["decoded"] > 0 and outcomes["Damaged"] + outcomes["NotFound"] > 0


def test_find_symbols_peels_a_compressed_file(tmp_path: Path) -> None:
    enc = encode(kernel_symbols(700, _X86_BASE), layout="6.1")
    path = tmp_path / "Image.gz"
    path.write_bytes(gzip.compress(_image(enc.blob)))
    table = kallsyms.find_symbols(path)
    assert table.symbols == enc.symbols
    assert table.method == "located" and not table.kaslr_known
    assert [layer.format for layer in table.layers] == ["gzip"]
    assert table.offset == _image(enc.blob).index(enc.blob) + enc.labels["kallsyms_names"]


def test_find_symbols_32bit_system_map_width(tmp_path: Path) -> None:
    enc = encode(kernel_symbols(300, 0xC0100000, word=4), word=4, endian=">", layout="6.1")
    path = tmp_path / "zImage.raw"
    path.write_bytes(_image(enc.blob))
    lines = b"".join(kallsyms.find_symbols(path).system_map()).decode().splitlines()
    assert lines[0] == "c0100000 D " + enc.symbols[0][2]
    assert len(lines) == 301


@pytest.mark.parametrize("text", [0xFFFF800008000000, 0xFFFFFFC008000000])
def test_relocatable_arm64_image_base_from_its_rela(tmp_path: Path, text: int) -> None:
    """--no-apply-dynamic-relocs leaves kallsyms_relative_base 0; its R_AARCH64_RELATIVE entry has it."""
    base = text + 0x10000
    enc = encode(kernel_symbols(700, base), layout="6.1")
    head = bytes(0x40000)  # the Image starts at _text
    blob = bytearray(enc.blob)
    at = enc.labels["kallsyms_relative_base"]
    blob[at : at + 8] = bytes(8)
    rela = struct.pack("<6Q", text + 0x1238, 0x403, text + 0x999, text + len(head) + at, 0x403, base)
    path = tmp_path / "Image"
    path.write_bytes(head + bytes(blob) + rela)
    table = kallsyms.find_symbols(path)
    assert table.symbols == enc.symbols
    path.write_bytes(head + bytes(blob))  # no RELA entry: the offsets as they are, from 0
    assert kallsyms.find_symbols(path).symbols[0][0] == enc.symbols[0][0] - base


def test_dump_without_vmcoreinfo_is_located() -> None:
    """A QEMU-style core: the tables where the kernel ran, relative_base already relocated."""
    running = _X86_BASE + 0x2A000000
    enc = encode(kernel_symbols(700, running), layout="6.1")
    image = _image(enc.blob)
    core = elf_core([Seg(0x1000000, image), Seg(0x8000000, bytes(4096))])
    with pytest.raises(NotFound, match=r"no VMCOREINFO; reading kallsyms needs a 6\.0"):
        kallsyms.read_dump(core, "core")  # the VMCOREINFO-only reader (--isf, drgn need the KASLR offset)
    table = kallsyms.symbols_in_memory(open_dump(core), "core")
    assert table.symbols == enc.symbols
    assert table.symbols[0][0] == running
    assert not table.kaslr_known and table.method == "located"
    assert table.layers[-1].format == "physical memory"
    assert table.layers[-1].offset + (table.offset or 0) == 0x1000000 + image.index(enc.blob) + enc.labels[
        "kallsyms_names"]


def _synthetic_core(kaslr: int, extra: dict[str, str] | None = None, num_syms: int = 3) -> bytes:
    """An ELF core whose kernel image (at physical 16 MiB) holds a 3-symbol kallsyms."""
    paddr, vbase = 0x1000000, 0xFFFFFFFF81000000 + kaslr
    table, index = _token_tables(_TOKENS)
    names = b"".join(_NAMES)
    parts = {"kallsyms_offsets": struct.pack("<3i", 0, 0x10, 0x2000),
             "kallsyms_relative_base": struct.pack("<Q", vbase),
             "kallsyms_num_syms": struct.pack("<I", num_syms),
             "kallsyms_names": names,
             "kallsyms_token_table": table,
             "kallsyms_token_index": index}
    image, info = b"", [f"KERNELOFFSET={kaslr:x}", f"NUMBER(phys_base)={paddr - (vbase - _KERNEL_MAP)}"]
    for name, data in parts.items():
        image += bytes(-len(image) % 8)
        info.append(f"SYMBOL({name})={vbase + len(image):x}")
        image += data
    info += [f"{k}={v}" for k, v in (extra or {}).items()]
    note = ("\n".join(info) + "\n").encode()
    return elf_core([Seg(paddr, image + bytes(4096))], [("VMCOREINFO", 0, note)])


def test_synthetic_dump_gives_kaslr_addresses() -> None:
    kaslr = 0x27E00000
    found = kallsyms.read_dump(_synthetic_core(kaslr), "core")
    base = 0xFFFFFFFF81000000 + kaslr
    assert found.kaslr_offset == kaslr
    assert found.symbols == [(base, "T", "foo"), (base + 0x10, "t", "_barx"), (base + 0x2000, "D", "x" * 200)]
    assert b"".join(found.system_map()).decode().splitlines()[0] == f"{base:016x} T foo"


def test_synthetic_dump_with_absurd_count_is_damaged() -> None:
    with pytest.raises(Damaged, match="kallsyms_num_syms"):
        kallsyms.symbols_from_dump(_synthetic_core(0, num_syms=5_000_000), "core")


def test_dump_without_kallsyms_entries_or_tables_is_not_found() -> None:
    core = elf_core([Seg(0, bytes(4096))], [("VMCOREINFO", 0, b"OSRELEASE=5.15.0\nPAGESIZE=4096\n")])
    with pytest.raises(NotFound, match=r"SYMBOL\(kallsyms_\*\).*6\.0\+ kernel"):
        kallsyms.symbols_from_dump(core, "core")
    with pytest.raises(NotFound, match=r"no kallsyms table found in the dump's memory \(VMCOREINFO has no SYMBOL"):
        kallsyms.symbols_in_memory(open_dump(core), "core")


def test_not_a_dump_is_not_found() -> None:
    with pytest.raises(NotFound, match="not a crash dump"):
        kallsyms.symbols_from_dump(b"\0" * 8192, "zeros")


# The corpus: every image and dump against the build's System.map ----------------------------------
#
# "Every symbol kallsyms holds" is what scripts/kallsyms.c keeps of the link's symbol list, which
# System.map shows too. Without CONFIG_KALLSYMS_ALL (every corpus kernel) it drops (read_symbol,
# is_ignored_symbol, symbol_valid): the kallsyms_* and _SDA_BASE_ names; names starting __efistub_,
# __kvm_nvhe_$ / .L, lld thunks, __kcfi_typeid_; names ending _from_arm/_from_thumb/_veneer;
# ppc .long_branch./.plt_branch. stubs; types U/N and absolute (A) symbols but four; symbols
# outside [_stext, _etext] and [_sinittext, _einittext]; others at _etext / _einittext. 6.12 keeps
# __start_* / __stop_* wherever they are. It reads nm output with fscanf("%llx %c %s"), so a line
# with an empty name takes the next line's address as its name and drops that line (32-bit arm).
# The decoded table must equal that selection of System.map exactly: same count, same
# (address, type, name) entries.

_IGNORED = {"kallsyms_addresses", "kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms",
            "kallsyms_names", "kallsyms_markers", "kallsyms_token_table", "kallsyms_token_index",
            "kallsyms_seqs_of_names", "_SDA_BASE_", "_SDA2_BASE_"}
_IGNORED_PREFIXES = ("__efistub_", "__kvm_nvhe_$", "__kvm_nvhe_.L", "__AArch64ADRPThunk_", "__ARMV5PILongThunk_",
                     "__ARMV7PILongThunk_", "__ThumbV7PILongThunk_", "__LA25Thunk_", "__microLA25Thunk_",
                     "__kcfi_typeid_")
_IGNORED_SUFFIXES = ("_from_arm", "_from_thumb", "_veneer")
_KEPT_ABSOLUTE = {"__kernel_syscall_via_break", "__kernel_syscall_via_epc", "__kernel_sigtramp", "__gp"}


def _read_map(path: Path) -> list[tuple[int, str, str]]:
    """System.map as scripts/kallsyms.c's fscanf reads it."""
    out: list[tuple[int, str, str]] = []
    lines = iter(path.read_text().splitlines())
    for line in lines:
        fields = line.split()
        if len(fields) == 2:  # an empty name: %s takes the next line's first word, the rest is skipped
            fields.append(next(lines, "").split()[0])
        out.append((int(fields[0], 16), fields[1], fields[2]))
    return out


def kallsyms_selection(path: Path, keeps_section_bounds: bool) -> Counter[tuple[int, str, str]]:
    """The System.map entries that kallsyms holds (see above)."""
    symbols = _read_map(path)
    where = {name: addr for addr, _, name in symbols}
    ranges = [(where["_stext"], where["_etext"], "_etext"), (where["_sinittext"], where["_einittext"], "_einittext")]
    kept: Counter[tuple[int, str, str]] = Counter()
    for addr, typ, name in symbols:
        if (name in _IGNORED or name.startswith(_IGNORED_PREFIXES) or name.endswith(_IGNORED_SUFFIXES)
                or ".long_branch." in name or ".plt_branch." in name or typ in "UuNn"
                or (typ in "Aa" and name not in _KEPT_ABSOLUTE)):
            continue
        if not (keeps_section_bounds and name.startswith(("__start_", "__stop_"))):
            if not any(lo <= addr <= hi for lo, hi, _ in ranges):
                continue
            if any(addr == hi and name != end for _, hi, end in ranges):
                continue
        kept[(addr, typ, name)] += 1
    return kept


def _assert_matches(symbols: list[tuple[int, str, str]], system_map: Path, release: str, shift: int = 0) -> None:
    """Decoded symbols (running addresses) equal System.map's kallsyms selection moved by `shift`."""
    keeps_bounds = tuple(map(int, release.split(".")[:2])) >= (6, 12)
    expected = kallsyms_selection(system_map, keeps_bounds)
    # KASLR moves the kernel image; absolute percpu symbols (x86_64 SMP) stay where they are.
    ours = Counter((addr - shift if addr >= 1 << 63 else addr, typ, name) for addr, typ, name in symbols)
    assert ours - expected == Counter()
    assert expected - ours == Counter()
    assert len(symbols) == sum(expected.values()) > 5000


# (stage, file, release) of every image in the corpus built with IKHEADERS=y on x86_64 and arm64
_IMAGES = [("k61y", name, "6.1") for name in ("vmlinux", "vmlinux.stripped", "vmlinux.bin", "bzImage.gzip",
                                                "bzImage.bzip2", "bzImage.lzma", "bzImage.xz", "bzImage.lzo",
                                                "bzImage.lz4", "bzImage.zstd")]
_IMAGES += [("k612y", "bzImage", "6.12"), ("k612y", "vmlinux.stripped", "6.12")]
# 7.x: place-relative offsets, placed through the ELF (the bzImage's payload is one)
_IMAGES += [("k72y", name, "7.2") for name in ("vmlinux", "vmlinux.stripped", "bzImage")]
_IMAGES += [("k61arm64", name, "6.1") for name in ("vmlinux", "Image", "Image.gz", "vmlinuz.efi.gzip",
                                                    "vmlinuz.efi.zstd")]
# The cross-built kernels (issue 11), when the corpus has them
_CROSS = [("k61arm", name) for name in ("vmlinux", "vmlinux.stripped", "zImage", "zImage.gzip", "zImage.lzo")]
_CROSS += [("k61riscv64", name) for name in ("vmlinux", "Image", "Image.gz", "Image.lzma", "vmlinuz.efi")]
_CROSS += [("k61s390x", "vmlinux"), ("k61s390x", "bzImage"), ("k61ppc64be", "vmlinux"),
           ("k61ppc64be", "vmlinux.stripped")]


@pytest.mark.parametrize(("stage", "name", "release"), _IMAGES)
def test_image_symbols_equal_system_map(corpus: Corpus, stage: str, name: str, release: str) -> None:
    table = kallsyms.find_symbols(corpus.file(stage, name))
    assert table.method == "located" and not table.kaslr_known
    _assert_matches(table.symbols, corpus.file(stage, "System.map"), release)


@pytest.mark.parametrize(("stage", "name"), _CROSS)
def test_cross_built_image_symbols_equal_system_map(corpus: Corpus, stage: str, name: str) -> None:
    if stage not in corpus.manifest["recipe"]:
        pytest.skip(f"the corpus has no {stage} kernel (cross-built kernels not in this corpus)")
    table = kallsyms.find_symbols(corpus.file(stage, name))
    expected = kallsyms_selection(corpus.file(stage, "System.map"), False)
    assert Counter(table.symbols) == expected
    assert len(table.symbols) > 5000


def _boot(corpus: Corpus, kernel: str) -> Path:
    return corpus.root / str(corpus.manifest["kernels"][kernel]["boot"])


@pytest.mark.parametrize(("kernel", "stage", "dump"), [("6.1-y-gzip", "k61y", "dump.elf"),
                                                       ("6.1-y-gzip", "k61y", "dump.kdump-zlib"),
                                                       ("6.12-y", "k612y", "dump.elf"),
                                                       ("6.12-y", "k612y", "dump.kdump-zlib"),
                                                       ("7.2-y", "k72y", "dump.elf"),
                                                       ("7.2-y", "k72y", "dump.kdump-zlib"),
                                                       ("6.1-m", "k61m", "dump.elf"),
                                                       ("7.2-m", "k72m", "dump.elf"),
                                                       ("6.1-m-4level", "k61m", "dump.kdump-zlib")])
def test_qemu_dump_symbols_equal_system_map(corpus: Corpus, kernel: str, stage: str, dump: str) -> None:
    """No VMCOREINFO: the tables are found in physical memory, addresses as the guest ran them."""
    table = kallsyms.find_symbols(_boot(corpus, kernel) / dump)
    assert table.method == "located"
    assert table.layers[-1].format == "physical memory"
    running = {name: addr for addr, _, name in table.symbols}
    linked = {name: addr for addr, _, name in _read_map(corpus.file(stage, "System.map"))}
    shift = running["_text"] - linked["_text"]  # the guest's KASLR offset, one number for all symbols
    # without VMCOREINFO the offset comes from the kernel's own .config (link address of _text)
    assert table.kaslr_known and table.kaslr_source == "config"
    assert table.kaslr_offset == shift != 0
    _assert_matches(table.symbols, corpus.file(stage, "System.map"), corpus.build(kernel)["release"], shift)


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        yield buf


@pytest.mark.parametrize("name", ["vmcore", "vmcore.kdump-zlib-d31", "vmcore.flat-zlib-d31"])
def test_real_kdump_agrees_with_system_map(corpus: Corpus, name: str) -> None:
    kdump = corpus.manifest["kdump"]
    assert name == "vmcore" or name in kdump["makedumpfile_outputs"].values()
    table = kallsyms.find_symbols(corpus.root / kdump["dir"] / name)
    assert table.method == "vmcoreinfo" and table.kaslr_source == "vmcoreinfo"
    assert table.kaslr_offset  # the corpus kdump booted with KASLR
    _assert_matches(table.symbols, corpus.file("k61y", "System.map"), "6.1", table.kaslr_offset)


@pytest.mark.parametrize("kdump", ["kdump-6.1-m", "kdump-6.1-m-4level"])
def test_real_modular_kdumps_agree_with_system_map(corpus: Corpus, kdump: str) -> None:
    entry = corpus.manifest["kdump_m"][kdump]
    for name in ("vmcore", entry["makedumpfile_outputs"]["kdump-zlib-d31"]):
        table = kallsyms.find_symbols(corpus.root / entry["dir"] / name)
        assert table.method == "vmcoreinfo" and table.kaslr_offset
        _assert_matches(table.symbols, corpus.file("k61m", "System.map"), "6.1", table.kaslr_offset)


def test_real_7x_kdump_through_vmcoreinfo(corpus: Corpus) -> None:
    """7.2's VMCOREINFO lists kallsyms_offsets and no kallsyms_relative_base: each offset is read
    relative to its own address; the located tables (placed through phys_base) give the same."""
    vmcore = corpus.root / corpus.manifest["kdump_7"]["dir"] / "vmcore"
    table = kallsyms.find_symbols(vmcore)
    assert table.method == "vmcoreinfo" and table.kaslr_offset
    _assert_matches(table.symbols, corpus.file("k72y", "System.map"), "7.2", table.kaslr_offset)
    with _mapped(vmcore) as buf:
        mem = open_dump(buf)
        assert "SYMBOL(kallsyms_relative_base)" not in mem.info.vmcoreinfo
        assert kallsyms.locate_in_memory(mem, "vmcore").symbols == table.symbols


def test_real_kdump_located_equals_vmcoreinfo(corpus: Corpus) -> None:
    """Ignoring VMCOREINFO, the tables found by shape give the very same symbols."""
    kdump = corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore.kdump-zlib-d31"
    with _mapped(kdump) as buf:
        mem = open_dump(buf)
        located = kallsyms.locate_in_memory(mem, "vmcore")
        through_info = kallsyms.read_memory(mem, "vmcore")
    assert located.method == "located" and through_info.method == "vmcoreinfo"
    assert located.symbols == through_info.symbols
    assert len(located.symbols) > 10_000  # a whole kernel's table (the count is the build's, not the test's)


# The CLI ---------------------------------------------------------------------------------------------


def test_cli_symbols_writes_sorted_system_map(corpus: Corpus, cli: Any, tmp_path: Path) -> None:
    kdump = corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore.kdump-zlib-d31"
    out = tmp_path / "System.map"
    run = cli("--json", "--symbols", out, kdump)
    assert run.code == 0, run.stderr
    report = run.json["symbols"]
    assert report["method"] == "vmcoreinfo"
    lines = out.read_text().splitlines()
    assert len(lines) == report["count"] > 5000
    addresses = [int(line.split()[0], 16) for line in lines]
    assert addresses == sorted(addresses)
    smap = {(addr, typ, name) for addr, typ, name in _read_map(corpus.file("k61y", "System.map"))}
    addr, typ, name = lines[0].split()
    assert (int(addr, 16) - report["kaslr_offset"], typ, name) in smap


def test_cli_symbols_from_bzimage_reports_where(corpus: Corpus, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "System.map"
    run = cli("--json", "--symbols", out, corpus.file("k612y", "bzImage"))
    assert run.code == 0, run.stderr
    report = run.json["symbols"]
    assert report["method"] == "located" and report["kaslr_offset"] is None
    assert [layer["format"] for layer in report["layers"]] == ["bzImage", "raw image"]
    raw = corpus.file("k612y", "vmlinux.stripped")  # the payload is this ELF, so the offset is the same
    assert report["offset"] == kallsyms.find_symbols(raw).offset
    assert out.read_bytes() == b"".join(kallsyms.find_symbols(raw).system_map())
    text = cli("--symbols", tmp_path / "again.map", corpus.file("k612y", "bzImage"))
    assert text.code == 0
    assert f"{report['count']} symbols (located at {report['offset']:#x} in raw image)" in text.stderr


def test_cli_symbols_without_a_table_exits_1(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(_image(b""))
    run = cli("--symbols", "-", path)
    assert run.code == 1 and run.stdout == b""
    assert run.stderr.strip().splitlines() == [f"extract-ikheaders: {path}: no kallsyms table found in the file "
                                               "(was the kernel built with CONFIG_KALLSYMS?)"]


def test_cli_symbols_damaged_table_exits_3(cli: Any, tmp_path: Path) -> None:
    enc = encode(kernel_symbols(700, _X86_BASE), layout="6.1")
    blob = bytearray(enc.blob)
    blob[enc.labels["kallsyms_names"]] = 0x7F
    path = tmp_path / "broken.bin"
    path.write_bytes(_image(bytes(blob)))
    run = cli("--symbols", "-", path)
    assert run.code == 3 and run.stdout == b""
    assert len(run.stderr.strip().splitlines()) == 1
    assert "kallsyms token table at 0x" in run.stderr and "Traceback" not in run.stderr


def test_cli_symbols_from_a_module_exits_1(corpus: Corpus, cli: Any) -> None:
    module = corpus.file("k61m", "kheaders.ko")
    run = cli("--symbols", "-", module)
    assert run.code == 1 and run.stdout == b""
    assert run.stderr.strip() == (f"extract-ikheaders: {module}: no kallsyms table found in the ELF file "
                                  "(was the kernel built with CONFIG_KALLSYMS?)")


# 7.x: place-relative offsets, every table aligned to 4 (7.2's scripts/kallsyms.c) --------------------

_SEVEN_CASES = [(word, endian, mode) for word in (4, 8) for endian in "<>" for mode in ("relative", "absolute")
                if not (word == 8 and mode == "absolute")]  # plain u32 addresses: 32-bit, not relocatable


@pytest.mark.parametrize(("word", "endian", "mode"), _SEVEN_CASES)
def test_locate_the_7x_layout(word: int, endian: str, mode: str) -> None:
    """No kallsyms_relative_base, nothing aligned to 8: the layout is told by the
    kallsyms_seqs_of_names permutation right after the offsets, not by a version."""
    blob_at = 0x3000  # where _image puts the blob
    vaddr = _base(word) + 0x800000 - blob_at  # the link address of the image's first byte
    symbols = kernel_symbols(700, _base(word), word=word)
    enc = encode(symbols, word=word, endian=endian, layout="7.x", mode=mode, vaddr=vaddr + blob_at)
    image = _image(enc.blob)
    assert image.index(enc.blob) == blob_at
    found = kallsyms_locate.locate(image, "image")
    assert found.names_at == blob_at + enc.labels["kallsyms_names"] and found.big_endian == (endian == ">")
    assert found.relative_base is None and found.layout.startswith("7.x")
    if mode == "absolute":
        assert found.place_relative_at is None and found.symbols == enc.symbols
        return
    assert found.place_relative_at == blob_at + enc.labels["kallsyms_offsets"]
    placed = found.placed(vaddr + found.place_relative_at, word)
    assert placed.symbols == enc.symbols and placed.word == word
    assert "place-relative" in placed.describe()


def _seven_vmlinux(vaddr: int) -> tuple[bytes, list[tuple[int, str, str]]]:
    """An ET_EXEC vmlinux whose PT_LOAD maps the image (7.x tables inside) at `vaddr`."""
    symbols = kernel_symbols(700, vaddr + 0x100)
    blob_at = 0x3000  # where _image puts the blob
    enc = encode(symbols, layout="7.x", vaddr=vaddr + blob_at)
    core = bytearray(elf_core([Seg(0, _image(enc.blob), vaddr=vaddr)]))
    core[16:18] = struct.pack("<H", 2)  # ET_EXEC: a kernel image, not a dump
    return bytes(core), enc.symbols


def test_7x_vmlinux_symbols_through_its_load_segment(tmp_path: Path) -> None:
    data, symbols = _seven_vmlinux(0xFFFFFFFF81000000)
    path = tmp_path / "vmlinux"
    path.write_bytes(data)
    table = kallsyms.find_symbols(path)
    assert table.symbols == symbols and table.word == 8
    assert b"".join(table.system_map()).decode().splitlines()[0] == f"{symbols[0][0]:016x} {symbols[0][1]} " \
                                                                     f"{symbols[0][2]}"


def test_7x_raw_image_says_what_it_needs(tmp_path: Path) -> None:
    enc = encode(kernel_symbols(700, _X86_BASE), layout="7.x", vaddr=_X86_BASE)
    path = tmp_path / "Image"
    path.write_bytes(_image(enc.blob))
    with pytest.raises(NotFound, match=r"place-relative offsets \(the 7\.x layout\).*give the vmlinux"):
        kallsyms.find_symbols(path)


def _seven_core(kaslr: int, vmcoreinfo: bool = True) -> tuple[bytes, list[tuple[int, str, str]]]:
    """A core whose kernel image (physical 16 MiB) holds 7.x tables; VMCOREINFO lists them (7.x lists
    kallsyms_offsets but no kallsyms_relative_base), or only says where the image is mapped."""
    paddr, vbase = 0x1000000, _X86_BASE + kaslr
    blob_at = len(_image(b""))  - 4096  # _image's head
    enc = encode(kernel_symbols(700, vbase), layout="7.x", vaddr=vbase + blob_at)
    image = _image(enc.blob)
    assert image.index(enc.blob) == blob_at
    info = [f"KERNELOFFSET={kaslr:x}", f"NUMBER(phys_base)={paddr - (vbase - _KERNEL_MAP)}"]
    if vmcoreinfo:
        info += [f"SYMBOL({name})={vbase + blob_at + enc.labels[name]:x}" for name in (
            "kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index", "kallsyms_offsets")]
    note = ("\n".join(info) + "\n").encode()
    return elf_core([Seg(paddr, image)], [("VMCOREINFO", 0, note)]), enc.symbols


def test_7x_dump_through_vmcoreinfo() -> None:
    core, symbols = _seven_core(0x1E400000)
    table = kallsyms.read_dump(core, "core")
    assert table.symbols == symbols and table.kaslr_offset == 0x1E400000 and table.method == "vmcoreinfo"


def test_7x_dump_located_and_placed_through_phys_base() -> None:
    core, symbols = _seven_core(0x1E400000, vmcoreinfo=False)
    table = kallsyms.symbols_in_memory(open_dump(core), "core")
    assert table.symbols == symbols and table.method == "located"


def test_7x_raw_image_says_why_it_has_no_addresses(corpus: Corpus, cli: Any, tmp_path: Path) -> None:
    """A raw 7.2 image (objcopy -O binary): the tables decode, but nothing gives their address."""
    run = cli("--symbols", tmp_path / "map", corpus.file("k72y", "vmlinux.bin"))
    assert run.code == 1 and run.stderr.count("\n") == 1, run.stderr
    assert "place-relative offsets (the 7.x layout)" in run.stderr and "give the vmlinux" in run.stderr
    assert not (tmp_path / "map").exists()
