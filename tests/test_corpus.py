"""The corpus itself: its ground truth holds together and each artefact is what it claims to be."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from conftest import Corpus

KERNELS = ["6.1-y-gzip", "6.1-y-bzip2", "6.1-y-lzma", "6.1-y-xz", "6.1-y-lzo", "6.1-y-lz4", "6.1-y-zstd",
           "6.1-seed", "6.1-m", "6.12-y", "7.2-y", "7.2-m"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kernel", KERNELS)
def test_build_blob_is_what_the_running_guest_served(corpus: Corpus, kernel: str) -> None:
    truth, build = corpus.truth(kernel), corpus.build(kernel)
    assert truth["sha256"] == build["blob_sha256"]
    assert truth["size"] == build["blob_size"]
    assert truth["release"] == build["release"]


def test_module_was_loaded_in_its_guest(corpus: Corpus) -> None:
    assert corpus.truth("6.1-m").get("module_loaded") is True


def test_releases(corpus: Corpus) -> None:
    assert corpus.truth("6.1-y-gzip")["release"].startswith("6.1.")
    assert corpus.truth("6.12-y")["release"].startswith("6.12.")
    assert corpus.truth("7.2-y")["release"].startswith("7.2.")


def test_manifest_hashes_match_files(corpus: Corpus) -> None:
    files = corpus.manifest["files"]
    assert len(files) > 40
    for rel, meta in files.items():
        path = corpus.root / rel
        if meta["size"] < 50_000_000:  # the big dumps are checked by their own tests
            assert sha256(path) == meta["sha256"], rel


def test_seed_vmlinux_has_exactly_one_marker_pair_around_the_blob(corpus: Corpus) -> None:
    data = corpus.file("k61seed", "vmlinux.stripped").read_bytes()
    blob = corpus.file("k61seed", "kheaders_data.tar.xz").read_bytes()
    assert data.count(b"IKHD_ST") == 1 and data.count(b"IKHD_ED") == 1
    start = data.index(b"IKHD_ST") + 7
    assert data[start : data.index(b"IKHD_ED")] == blob


def test_mainline_vmlinux_has_no_markers(corpus: Corpus) -> None:
    assert b"IKHD_ST" not in corpus.file("k61y", "vmlinux").read_bytes()


def test_module_is_signed(corpus: Corpus) -> None:
    assert corpus.file("k61m", "kheaders.ko").read_bytes().endswith(b"~Module signature appended~\n")


def elf_type(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(18)
    assert head[:4] == b"\x7fELF", path
    return int(struct.unpack_from("<H", head, 16)[0])


def test_qemu_dumps_parse_as_their_format(corpus: Corpus) -> None:
    for kernel in ("6.1-y-gzip", "6.1-m", "6.12-y", "7.2-y", "7.2-m"):
        boot = corpus.root / corpus.manifest["kernels"][kernel]["boot"]
        dumps = corpus.truth(kernel)["dumps"]
        assert {"elf", "kdump-zlib"} <= set(dumps)
        assert elf_type(boot / dumps["elf"]) == 4  # ET_CORE
        with (boot / dumps["kdump-zlib"]).open("rb") as f:
            # QEMU 7.2 writes its kdump formats in makedumpfile's flattened form (8.2 added
            # a "reassembled" option).
            assert f.read(12) == b"makedumpfile"


def test_kdump_capture_and_makedumpfile_outputs(corpus: Corpus) -> None:
    kdump = corpus.manifest["kdump"]
    kdir = corpus.root / kdump["dir"]
    assert elf_type(kdir / "vmcore") == 4
    assert b"VMCOREINFO" in (kdir / "vmcore").read_bytes()[:65536]
    assert kdump["ground_truth"]["sha256"] == corpus.truth("6.1-y-gzip")["sha256"]
    for name, file in kdump["makedumpfile_outputs"].items():
        with (kdir / file).open("rb") as f:
            head = f.read(16)
        if name.startswith("kdump-"):
            assert head[:8] == b"KDUMP   ", name
        elif name.startswith("flat-"):
            assert head.startswith(b"makedumpfile"), name
        else:
            assert elf_type(kdir / file) == 4, name


def test_unavailable_formats_are_explained(corpus: Corpus) -> None:
    reasons = {u["format"]: u["reason"] for u in corpus.manifest["unavailable"]}
    assert any("snappy" in f for f in reasons) and all(reasons.values())
