"""Crash images: the archive from physical memory of ELF cores, kdump-compressed, flattened and LiME
dumps; never a cut-short archive. Synthetic dumps test each rule in miniature; the corpus's real
dumps (QEMU dump-guest-memory, a real kdump's /proc/vmcore and its makedumpfile outputs) must give
exactly the running guest's /sys/kernel/kheaders.tar.xz."""

from __future__ import annotations

import hashlib
import json
import mmap
import random
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus, corpus_params, run_cli
from dump_builders import (
    PAGE,
    Seg,
    big_archive,
    elf_core,
    elf_cut,
    filler,
    flatten,
    kdump_file,
    lime,
    lime_from_elf,
    memory_image,
    pages_of,
    raw_from_elf,
    recompress_kdump,
    truncated_copy,
    vmcoreinfo,
)

import extract_ikheaders
from extract_ikheaders import Damaged, ExtractError, Method, NotFound
from extract_ikheaders.dumps import elfcore, flattened, kdump, search
from extract_ikheaders.errors import NotMine

ARCHIVE = big_archive()  # ~12 KiB: spans four pages
OTHER = big_archive(seed=2, release="6.1.0-other")


def find(data: bytes) -> Any:
    return search.find_in_dump(data, "dump")




# ELF cores -------------------------------------------------------------------------------------


def test_archive_split_across_two_adjacent_segments_stored_out_of_order() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    core = elf_core([Seg(0x100000, image[: 3 * PAGE]), Seg(0x100000 + 3 * PAGE, image[3 * PAGE :])],
                    file_order=[1, 0])
    found = find(core)
    assert found.archive == ARCHIVE and found.method == Method.CARVE
    assert found.offset == 0x100000 + 5000
    assert [layer.format for layer in found.layers] == ["elf-core", "physical memory"]
    assert found.layers[1].offset == found.offset and found.layers[1].length == len(ARCHIVE)


def test_magic_split_across_the_segment_boundary() -> None:
    boundary = 3 * PAGE
    image = memory_image(8 * PAGE, {boundary - 3: ARCHIVE})
    core = elf_core([Seg(0, image[:boundary]), Seg(boundary, image[boundary:])], file_order=[1, 0])
    assert find(core).offset == boundary - 3


def test_segment_count_past_pn_xnum() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    core = elf_core([Seg(0, image[: 3 * PAGE]), Seg(3 * PAGE, image[3 * PAGE :])], xnum=True)
    assert find(core).archive == ARCHIVE


def test_segments_with_a_hole_between_them_are_damaged_naming_the_hole() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    core = elf_core([Seg(0x100000, image[: 2 * PAGE]), Seg(0x100000 + 3 * PAGE, image[3 * PAGE :])])
    with pytest.raises(Damaged, match=r"physical 0x102000-0x102fff is not in the dump \(no PT_LOAD covers it\)"):
        find(core)


def test_memsz_tail_is_absent_not_zero() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    core = elf_core([Seg(0, image[: 2 * PAGE], memsz=8 * PAGE)])
    with pytest.raises(Damaged, match=r"physical 0x2000-0x7fff .*excluded"):
        find(core)


def test_truncated_core_is_damaged_naming_the_lost_range() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    core = elf_core([Seg(0, image)])
    with pytest.raises(Damaged, match=r"physical 0x1c00-0x7fff .*truncated"):
        find(core[: len(core) - len(image) + 7 * 1024])


def test_vmcoreinfo_gives_release_and_search_order() -> None:
    kernel = 0x200000
    image = memory_image(0x300000, {0x1000: OTHER, kernel + 0x5432: ARCHIVE})
    core = elf_core([Seg(0, image)], notes=[("CORE", 1, bytes(336)),
                                             ("VMCOREINFO", 0, vmcoreinfo("6.1.7-test", kernel))])
    found = find(core)
    assert found.archive == ARCHIVE and found.offset == kernel + 0x5432  # the kernel's own, not the lower one
    assert found.release == "6.1.7-test"
    assert any("VMCOREINFO" in n for n in found.notes)
    assert "VMCOREINFO" in found.layers[0].detail


def test_release_from_banner_without_vmcoreinfo() -> None:
    banner = b"Linux version 6.1.99-banner (me@host) (gcc) #1\n"
    core = elf_core([Seg(0, memory_image(8 * PAGE, {100: banner, 9000: ARCHIVE}))])
    assert find(core).release == "6.1.99-banner"


def utsname(release: bytes, sysname: bytes = b"Linux", version: bytes = b"#1 SMP Thu Jan  1 2026") -> bytes:
    """struct new_utsname as the kernel lays it out: six NUL-padded 65-byte fields."""
    return b"".join(f.ljust(65, b"\0") for f in (sysname, b"(none)", release, version, b"x86_64", b"(none)"))


def test_release_from_the_kernels_utsname_wherever_the_archive_lies() -> None:
    """No VMCOREINFO and no banner near the archive (a loaded kheaders.ko's pages can land anywhere):
    the kernel's init_uts_ns gives the release, and a look-alike whose release or version field does
    not fit is passed over."""
    decoy = utsname(b"not a release") + utsname(b"6.1.0-nover", version=b"no hash")
    image = memory_image(0x90_0000, {0x1000: decoy, 0x30_0000: utsname(b"6.1.42-uts"), 0x80_0000: ARCHIVE})
    found = find(elf_core([Seg(0, image)]))
    assert found.archive == ARCHIVE and found.release == "6.1.42-uts"
    assert "release from the kernel's utsname at physical 0x300000" in found.notes


def test_vmcoreinfo_release_wins_over_utsname() -> None:
    image = memory_image(0x20_0000, {0x1000: utsname(b"6.1.1-uts"), 0x10_0000: ARCHIVE})
    core = elf_core([Seg(0, image)], notes=[("VMCOREINFO", 0, vmcoreinfo("6.1.2-vmci"))])
    assert find(core).release == "6.1.2-vmci"


def test_no_archive_is_not_found() -> None:
    with pytest.raises(NotFound, match=r"CONFIG_IKHEADERS=y"):
        find(elf_core([Seg(0, filler(8 * PAGE))]))


def test_first_page_only_is_damaged_and_says_why() -> None:
    """A module's archive (=m) in vmalloc space: only its first page follows the stream header."""
    image = memory_image(8 * PAGE, {PAGE + 0xE1: ARCHIVE[: PAGE - 0xE1]})
    with pytest.raises(Damaged, match=r"not physically contiguous.*CONFIG_IKHEADERS=m.*page tables"):
        find(elf_core([Seg(0, image)]))


def test_missing_memory_is_reported_before_a_partial_copy() -> None:
    image = memory_image(16 * PAGE, {PAGE + 0xE1: ARCHIVE[: PAGE - 0xE1], 9 * PAGE + 17: ARCHIVE})
    core = elf_core([Seg(0, image[: 11 * PAGE])])
    with pytest.raises(Damaged, match=r"at physical 0x9011 is incomplete.*physical 0xb000.* \(1 more incomplete"):
        find(core)


def test_a_whole_copy_wins_over_a_partial_one() -> None:
    image = memory_image(16 * PAGE, {PAGE + 0xE1: ARCHIVE[: PAGE - 0xE1], 9 * PAGE + 17: ARCHIVE})
    found = find(elf_core([Seg(0, image)]))
    assert found.archive == ARCHIVE and found.offset == 9 * PAGE + 17
    assert any("incomplete" in n for n in found.notes)


def test_raw_memory_skips_a_partial_copy() -> None:
    image = memory_image(16 * PAGE, {PAGE + 0xE1: ARCHIVE[: PAGE - 0xE1], 9 * PAGE + 17: ARCHIVE})
    found = search.find_in_raw(image, "raw")
    assert found.archive == ARCHIVE and found.offset == 9 * PAGE + 17
    assert found.layers[0].format == "raw memory"
    with pytest.raises(Damaged, match="not physically contiguous"):
        search.find_in_raw(image[: 9 * PAGE], "raw")


def test_non_core_elf_and_other_files_are_not_mine() -> None:
    exec_elf = bytearray(elf_core([Seg(0, bytes(PAGE))]))
    exec_elf[16] = 2  # ET_EXEC
    for data in (bytes(exec_elf), b"", b"\x7fELF", filler(PAGE), b"KDUMP  x" + bytes(600)):
        with pytest.raises(NotMine):
            find(data)


# kdump-compressed ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd", "none"])
def test_kdump_pages_each_codec(codec: str) -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    data = kdump_file(pages_of(image, base_pfn=0x100), codec=codec, info=vmcoreinfo("6.1.5-kd"))
    found = find(data)
    assert found.archive == ARCHIVE and found.offset == 0x100 * PAGE + 5000
    assert found.release == "6.1.5-kd"
    assert found.layers[0].format == "kdump"
    assert (codec if codec != "none" else "uncompressed") in found.layers[0].detail


def test_kdump_release_from_utsname_without_vmcoreinfo() -> None:
    data = kdump_file(pages_of(memory_image(8 * PAGE, {5000: ARCHIVE})), release="6.1.6-uts")
    assert find(data).release == "6.1.6-uts"


def test_kdump_page_excluded_in_the_middle_is_damaged_with_pfn_range() -> None:
    pages = pages_of(memory_image(8 * PAGE, {5000: ARCHIVE}), base_pfn=0x200)
    del pages[0x202]
    with pytest.raises(Damaged, match=r"physical 0x202000-0x202fff .*pfn 0x202-0x202: excluded by makedumpfile"):
        find(kdump_file(pages, ram=range(0x200, 0x208)))


def test_kdump_page_missing_from_ram_bitmap() -> None:
    pages = pages_of(memory_image(8 * PAGE, {5000: ARCHIVE}))
    del pages[2], pages[3]
    with pytest.raises(Damaged, match=r"pfn 0x2-0x3: not RAM"):
        find(kdump_file(pages))


def test_kdump_descriptor_past_eof_is_damaged() -> None:
    pages = pages_of(memory_image(8 * PAGE, {5000: ARCHIVE}))
    data = kdump_file(pages, desc_override={2: (1 << 40, 1000)})
    with pytest.raises(Damaged, match=r"pfn 0x2-0x2: its data .* lies outside the file"):
        find(data)


def test_kdump_truncated_in_the_blob() -> None:
    data = kdump_file(pages_of(memory_image(8 * PAGE, {5000: ARCHIVE})), codec="none")
    with pytest.raises(Damaged, match=r"truncated"):
        find(data[: len(data) - 5 * PAGE])


def test_kdump_corrupt_page_in_the_blob_is_damaged() -> None:
    pages = pages_of(memory_image(8 * PAGE, {5000: ARCHIVE}))
    with pytest.raises(Damaged, match=r"pfn 0x2 .*does not decode"):
        find(kdump_file(pages, stored={2: (b"\x78\x9c garbage", 0x1)}))


def test_kdump_corrupt_page_elsewhere_does_not_stop_the_search() -> None:
    pages = pages_of(memory_image(16 * PAGE, {9 * PAGE + 5: ARCHIVE}))
    found = find(kdump_file(pages, stored={1: (b"garbage", 0x1), 3: (b"x" * 100, 0x20)}))
    assert found.archive == ARCHIVE


def test_kdump_archive_across_pages_that_are_apart_in_the_file() -> None:
    """Descriptors point anywhere: contiguity is by pfn, not by file position."""
    pages = pages_of(memory_image(8 * PAGE, {5000: ARCHIVE}))
    plain = kdump_file(pages, codec="none")
    descs_at = len(plain) - 8 * PAGE - 8 * 24
    blobs = [plain[descs_at + 8 * 24 + i * PAGE :][:PAGE] for i in range(8)]
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    data_at = descs_at + 8 * 24
    descs = b"".join(struct.pack("<qIIQ", data_at + order.index(i) * PAGE, PAGE, 0, 0) for i in range(8))
    shuffled = plain[:descs_at] + descs + b"".join(blobs[i] for i in order)
    assert find(shuffled).archive == ARCHIVE


def test_kdump_malformed_headers_never_raise_raw_exceptions() -> None:
    data = bytearray(kdump_file(pages_of(memory_image(8 * PAGE, {5000: ARCHIVE})), info=vmcoreinfo()))
    rng = random.Random(5)
    fields = [8, 424, 428, 432, 436, 440, PAGE, PAGE + 8, PAGE + 16, PAGE + 24, PAGE + 32, PAGE + 40,
              PAGE + 96, 3 * PAGE, len(data) - 8 * PAGE - 8 * 24]
    for _ in range(300):
        bad = bytearray(data)
        at = rng.choice(fields)
        bad[at : at + 8] = rng.randbytes(8)
        if rng.random() < 0.3:
            bad = bad[: rng.randrange(8, len(bad))]
        _expect_clean(bytes(bad))


def _expect_clean(data: bytes) -> None:
    try:
        found = find(data)
    except (ExtractError, NotMine):
        return
    assert found.archive == ARCHIVE


# flattened -------------------------------------------------------------------------------------


def test_flattened_with_rewrites_and_shuffled_records() -> None:
    data = kdump_file(pages_of(memory_image(8 * PAGE, {5000: ARCHIVE}), base_pfn=7), codec="zstd",
                      info=vmcoreinfo("6.1.8-flat"))
    found = find(flatten(data, record=3000))
    assert found.archive == ARCHIVE and found.release == "6.1.8-flat"
    assert [layer.format for layer in found.layers] == ["flattened", "kdump", "physical memory"]


def test_flattened_reads_holes_as_zeros() -> None:
    data = kdump_file(pages_of(memory_image(8 * PAGE, {5000: ARCHIVE})))
    flat = bytearray(flatten(data, rewrites=False))
    stream = flattened.open_memory(bytes(flat))
    assert isinstance(stream.source, flattened.FlattenedFile)
    virtual = stream.source
    assert len(virtual) == len(data)
    assert virtual.read(0, len(data)) == data
    assert virtual.read(len(data) - 10, 10) == data[-10:]


def test_flattened_truncated_and_corrupt_records() -> None:
    flat = flatten(kdump_file(pages_of(memory_image(8 * PAGE, {5000: ARCHIVE})), codec="none"), rewrites=False)
    with pytest.raises(Damaged):
        find(flat[: len(flat) - 6 * PAGE])
    bad = bytearray(flat)
    bad[4096:4112] = struct.pack(">qq", -5, 10)
    with pytest.raises(Damaged, match="record at 0x1000 is corrupt"):
        find(bytes(bad))
    for size in range(0, 4200, 97):
        _expect_clean(flat[:size])


# LiME ------------------------------------------------------------------------------------------


def test_lime_ranges() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    data = lime([(0x1000, filler(PAGE)), (0x100000, image[: 3 * PAGE]), (0x103000, image[3 * PAGE :])])
    found = find(data)
    assert found.archive == ARCHIVE and found.offset == 0x100000 + 5000
    assert found.layers[0].format == "lime" and "3 range(s)" in found.layers[0].detail


def test_lime_truncated_and_corrupt() -> None:
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    data = lime([(0x100000, image)])
    with pytest.raises(Damaged, match=r"physical 0x101c00-0x107fff .*truncated inside the range"):
        find(data[: 32 + 7 * 1024])
    bad = bytearray(data + lime([(0x200000, filler(PAGE))]))
    bad[32 + len(image) + 4 : 32 + len(image) + 8] = b"\x09\0\0\0"
    with pytest.raises(Damaged, match="corrupt"):
        find(bytes(bad))


# Real dumps (the corpus) ---------------------------------------------------------------------


@contextmanager
def mapped(path: Path) -> Iterator[mmap.mmap]:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        yield m


def find_file(path: Path) -> Any:
    with mapped(path) as m:
        return search.find_in_dump(m, str(path))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def corpus_dumps(corpus: Corpus) -> list[tuple[str, tuple[Path, dict[str, Any]]]]:
    """(name, (path, ground truth)) of every dump in the corpus."""
    dumps = []
    for kernel in ("6.1-y-gzip", "6.1-m", "6.12-y", "6.12-btf", "7.2-y", "7.2-m"):
        boot = corpus.root / corpus.manifest["kernels"][kernel]["boot"]
        for kind, name in corpus.truth(kernel)["dumps"].items():
            dumps.append((f"{kernel}/{kind}", (boot / name, corpus.truth(kernel))))
    kd = corpus.manifest["kdump"]
    kdir = corpus.root / kd["dir"]
    dumps.append(("kdump/vmcore", (kdir / "vmcore", kd["ground_truth"])))
    for kind, name in kd["makedumpfile_outputs"].items():
        dumps.append((f"kdump/{kind}", (kdir / name, kd["ground_truth"])))
    # makedumpfile -F -c -d 31 run by the capture kernel itself, written to its second disk
    dumps.append(("kdump/guest-flat-c-d31", (kdir / "vmcore.guest-flat-c-d31", kd["ground_truth"])))
    seven = corpus.manifest["kdump_7"]
    dumps.append(("kdump-7.2/vmcore", (corpus.root / seven["dir"] / "vmcore", seven["ground_truth"])))
    return dumps


def test_the_corpus_has_every_dump(corpus: Corpus) -> None:
    """QEMU's ELF and kdump-compressed captures of three kernels, the kdump capture kernel's
    vmcore and makedumpfile's outputs of it."""
    assert len(corpus_dumps(corpus)) >= 14


@pytest.mark.parametrize("dump", corpus_params(lambda c: [(name, (name, *v)) for name, v in corpus_dumps(c)]))
def test_every_corpus_dump_gives_the_guests_archive(corpus: Corpus, tmp_path: Path,
                                                    dump: tuple[str, Path, dict[str, Any]]) -> None:
    name, path, truth = dump
    out = tmp_path / "a.tar.xz"
    run = run_cli("--json", "--archive", out, path)
    assert run.code == 0, run.stderr
    assert sha256(out.read_bytes()) == truth["sha256"]
    report = run.json
    assert report["archive"]["sha256"] == truth["sha256"] and report["release"] == truth["release"]
    # =m: the module's archive is in vmalloc space, read through the page tables
    modular = name.startswith(("6.1-m/", "7.2-m/"))
    assert report["layers"][-1]["format"] == ("virtual memory" if modular else "physical memory")


def test_qemu_dumps_take_the_release_from_the_kernels_utsname(corpus: Corpus) -> None:
    """QEMU's dumps carry no VMCOREINFO: the release comes from init_uts_ns on every capture
    (=y, =m 5-level and 4-level, 6.12), never from a banner that happens to lie near the archive."""
    captures = [(kernel, corpus.root / corpus.manifest["kernels"][kernel]["boot"] / "dump.elf")
                for kernel in ("6.1-y-gzip", "6.1-m", "6.1-m-4level", "6.12-y", "7.2-y", "7.2-m")]
    for kernel, path in captures:
        found = find_file(path)
        assert found.release == corpus.truth(kernel)["release"], kernel
        assert any(n.startswith("release from the kernel's utsname at physical ") for n in found.notes), kernel


def test_vmcoreinfo_locates_the_kernel_in_real_kdump(corpus: Corpus) -> None:
    kdir = corpus.root / corpus.manifest["kdump"]["dir"]
    found = find_file(kdir / "vmcore.kdump-lzo-d31")
    assert any("VMCOREINFO puts the kernel" in n for n in found.notes)
    assert "dump level 31" in found.layers[0].detail and "lzo" in found.layers[0].detail


@pytest.fixture(scope="module")
def qemu_61y(corpus: Corpus) -> Path:
    return corpus.root / str(corpus.manifest["kernels"]["6.1-y-gzip"]["boot"]) / "dump.elf"


@pytest.fixture(scope="module")
def kdump_dir(corpus: Corpus) -> Path:
    return corpus.root / str(corpus.manifest["kdump"]["dir"])


def test_lime_made_from_a_real_dump(corpus: Corpus, qemu_61y: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.lime"
    lime_from_elf(qemu_61y, out)
    found = find_file(out)
    assert found.sha256 == corpus.truth("6.1-y-gzip")["sha256"]
    assert found.layers[0].format == "lime"


def test_raw_image_made_from_a_real_dump(corpus: Corpus, qemu_61y: Path, tmp_path: Path) -> None:
    """No header at all: the raw carve of the main pipeline handles it."""
    out = tmp_path / "dump.raw"
    raw_from_elf(qemu_61y, out)
    found = extract_ikheaders.find(out)
    assert found.sha256 == corpus.truth("6.1-y-gzip")["sha256"]
    assert find_raw(out).sha256 == found.sha256


def test_raw_image_of_a_module_kernel_finds_the_whole_copy(corpus: Corpus, tmp_path: Path) -> None:
    """=m: the module's first page (vmalloc) comes first in memory; the whole copy later."""
    out = tmp_path / "dump.raw"
    raw_from_elf(corpus.root / corpus.manifest["kernels"]["6.1-m"]["boot"] / "dump.elf", out)
    found = find_raw(out)
    assert found.sha256 == corpus.truth("6.1-m")["sha256"]
    assert any("incomplete" in n for n in found.notes)


def find_raw(path: Path) -> Any:
    with mapped(path) as m:
        return search.find_in_raw(m, str(path))


@pytest.mark.parametrize("codec", ["zstd", "snappy"])
def test_kdump_recompressed(corpus: Corpus, kdump_dir: Path, tmp_path: Path, codec: str) -> None:
    out = tmp_path / f"vmcore.kdump-{codec}"
    assert recompress_kdump(kdump_dir / "vmcore.kdump-zlib-d31", out, codec) > 1000
    found = find_file(out)
    assert found.sha256 == corpus.manifest["kdump"]["ground_truth"]["sha256"]
    assert codec in found.layers[0].detail


def _blob(path: Path) -> tuple[int, int]:
    found = find_file(path)
    return found.offset, found.size


def test_real_elf_dump_truncated_in_the_blob(kdump_dir: Path, tmp_path: Path) -> None:
    src = kdump_dir / "vmcore.elf-d31"
    paddr, size = _blob(src)
    with mapped(src) as m:
        mem = elfcore.open_memory(m)
        extent = next(e for e in mem.extents if e.paddr <= paddr < e.paddr + e.size)
    cut_at = extent.offset + paddr - extent.paddr + size // 2
    out = tmp_path / "vmcore.truncated"
    truncated_copy(src, out, cut_at)
    with pytest.raises(Damaged) as err:
        find_file(out)
    lost = extent.paddr + cut_at - extent.offset
    assert re.search(rf"physical {lost:#x}-0x[0-9a-f]+ is not in the dump \(the file ends", str(err.value))


def test_real_kdump_truncated_in_the_blob(kdump_dir: Path, tmp_path: Path) -> None:
    src = kdump_dir / "vmcore.kdump-zlib-d31"
    paddr, size = _blob(src)
    middle_pfn = (paddr + size // 2) // PAGE
    with mapped(src) as m:
        location = kdump.open_memory(m).page_location(middle_pfn)
    assert location is not None
    out = tmp_path / "vmcore.truncated"
    truncated_copy(src, out, location[0] + 10)
    with pytest.raises(Damaged, match=rf"physical {middle_pfn * PAGE:#x}-.*pfn {middle_pfn:#x}-.*truncated"):
        find_file(out)


def test_real_flattened_truncated_in_the_blob(kdump_dir: Path, tmp_path: Path) -> None:
    src = kdump_dir / "vmcore.flat-zlib-d31"
    paddr, size = _blob(src)
    middle_pfn = (paddr + size // 2) // PAGE
    with mapped(src) as m:
        mem = flattened.open_memory(m)
        location = mem.page_location(middle_pfn)
        assert location is not None and isinstance(mem.source, flattened.FlattenedFile)
        cut_at = mem.source.source_offset(location[0])
    assert cut_at is not None
    out = tmp_path / "vmcore.truncated"
    truncated_copy(src, out, cut_at + 10)
    with pytest.raises(Damaged, match=rf"pfn {middle_pfn:#x}-"):
        find_file(out)


def test_real_dump_without_the_blob_is_not_found(kdump_dir: Path, tmp_path: Path) -> None:
    src = kdump_dir / "vmcore.elf-d31"
    paddr, size = _blob(src)
    out = tmp_path / "vmcore.cut"
    elf_cut(src, out, paddr, paddr + size)
    with pytest.raises(NotFound, match="CONFIG_IKHEADERS=y"):
        find_file(out)


# The command line (after wiring) -------------------------------------------------------------


def test_cli_json_report(corpus: Corpus, kdump_dir: Path) -> None:
    report = run_cli("--json", "--archive", "/dev/null", kdump_dir / "vmcore.flat-lzo-d1").json
    assert [layer["format"] for layer in report["layers"]] == ["flattened", "kdump", "physical memory"]
    assert report["archive"]["method"] == "carve"
    assert report["release"] == corpus.release("6.1-m")


def test_cli_exit_codes(kdump_dir: Path, tmp_path: Path) -> None:
    src = kdump_dir / "vmcore.elf-d31"
    paddr, size = _blob(src)
    cut = tmp_path / "vmcore.cut"
    elf_cut(src, cut, paddr, paddr + size)
    run = run_cli("--archive", "-", cut)
    assert run.code == 1 and "CONFIG_IKHEADERS=y" in run.stderr and not run.stdout
    gap = tmp_path / "core"
    image = memory_image(8 * PAGE, {5000: ARCHIVE})
    gap.write_bytes(elf_core([Seg(0, image[: 2 * PAGE]), Seg(3 * PAGE, image[3 * PAGE :])]))
    run = run_cli("--archive", "-", gap)
    assert run.code == 3 and "physical 0x2000-0x2fff is not in the dump" in run.stderr and not run.stdout
    assert run.stderr.count("\n") == 1


def test_a_module_kernels_dump_without_the_module_says_what_a_dump_holds(tmp_path: Path) -> None:
    """CONFIG_IKHEADERS=m, kheaders.ko not loaded: the advice is about the dump, not "give that file"."""
    import gzip

    config = b"# Linux/x86 6.1.0-synthetic Kernel Configuration\nCONFIG_IKCONFIG=y\nCONFIG_IKHEADERS=m\n"
    blob = b"IKCFG_ST" + gzip.compress(config, mtime=0) + b"IKCFG_ED"
    dump = tmp_path / "vmcore"
    dump.write_bytes(elf_core([Seg(0x100000, memory_image(4 * PAGE, {PAGE: blob}))]))
    run = run_cli("--info", "--json", dump)
    assert run.code == 0, run.stderr
    headers = json.loads(run.stdout)["headers"]
    assert headers["status"] == "module"
    assert headers["hint"].startswith("CONFIG_IKHEADERS=m: a dump holds the headers only while kheaders.ko is loaded")
    run = run_cli("-a", "-", dump)
    assert run.code == 1 and not run.stdout
    assert "which a dump holds only if kheaders.ko was loaded" in run.stderr and "give that file" not in run.stderr


def test_lime_takes_vmcoreinfo_from_the_kernels_memory() -> None:
    """LiME has no notes: the kernel's own VMCOREINFO text (vmcoreinfo_data) is found in memory; the
    format string in .rodata and implausible copies are passed over."""
    real = b"OSRELEASE=6.1.0-synthetic\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffc008a3c000\nKERNELOFFSET=0\n\0"
    decoys = b"OSRELEASE=%s\n\0" + b"OSRELEASE=6.1\nPAGESIZE=1000\nSYMBOL(x)=1\n\0"
    memory = memory_image(8 * PAGE, {PAGE: decoys, 5 * PAGE + 8: real})
    mem = search.open_dump(lime([(0x40000000, memory)]))
    assert mem.info.vmcoreinfo == {"OSRELEASE": "6.1.0-synthetic", "PAGESIZE": "4096",
                                   "SYMBOL(swapper_pg_dir)": "ffffffc008a3c000", "KERNELOFFSET": "0"}
    assert mem.info.detail.endswith("VMCOREINFO found in memory")
    assert search.open_dump(lime([(0x40000000, memory_image(8 * PAGE, {PAGE: decoys}))])).info.vmcoreinfo == {}


def test_memory_full_of_vmcoreinfo_keys_costs_a_bounded_search() -> None:
    flood = b"OSRELEASE=x\n\0" * 40_000  # 520 KB of candidates, none plausible
    mem = search.open_dump(lime([(0, flood + b"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(a)=1\n\0")]))
    assert mem.info.vmcoreinfo == {}  # the real one lies past the candidates read (_VMCOREINFO_TRIES)
