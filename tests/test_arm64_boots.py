"""arm64 kernels booted under QEMU virt (TCG): every capture of each guest (QEMU's ELF and kdump
formats, a LiME file and a raw physical image made from the ELF) against what the running guest
served (/sys/kernel/kheaders.tar.xz, /proc/config.gz) and the build's System.map."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus, corpus_params, run_cli
from dump_builders import lime_from_elf, raw_from_elf
from test_kallsyms import kallsyms_selection

# arm64 virt RAM starts at 1 GiB: the raw image must reach past it (a sparse file).
RAW_LIMIT = 1 << 32
DERIVED = ("lime", "raw")  # made from the ELF capture by tests/dump_builders.py
# The containers -a reports per capture (QEMU 7.2 writes kdump in the flattened form; a raw image
# is carved like any kernel image, without a layer).
KDUMP_LAYERS = ["flattened", "kdump", "physical memory"]
LAYERS = {"elf": ["elf-core", "physical memory"], "kdump-zlib": KDUMP_LAYERS, "kdump-lzo": KDUMP_LAYERS,
          "kdump-snappy": KDUMP_LAYERS, "lime": ["lime", "physical memory"], "raw": []}


def _kernels(corpus: Corpus, modular: bool | None = None) -> list[str]:
    names: list[str] = corpus.manifest["arm64_boots"]["kernels"]
    return [k for k in names if modular is None or (corpus.manifest["kernels"][k]["module"] is not None) == modular]


def _captures(corpus: Corpus, modular: bool | None = None) -> list[tuple[str, tuple[str, str]]]:
    out = []
    for kernel in _kernels(corpus, modular):
        for kind in [*corpus.truth(kernel)["dumps"], *DERIVED]:
            out.append((f"{kernel}/{kind}", (kernel, kind)))
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def capture_path(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Any:
    made: dict[tuple[str, str], Path] = {}

    def path(kernel: str, kind: str) -> Path:
        entry = corpus.manifest["kernels"][kernel]
        if kind not in DERIVED:
            return corpus.root / entry["dumps"][kind]
        if (kernel, kind) not in made:
            elf = corpus.root / entry["dumps"]["elf"]
            dest = tmp_path_factory.mktemp("arm64") / f"{kernel}.{kind}"
            if kind == "lime":
                lime_from_elf(elf, dest)
            else:
                raw_from_elf(elf, dest, RAW_LIMIT)
            made[(kernel, kind)] = dest
        return made[(kernel, kind)]
    return path


def test_the_corpus_boots_four_arm64_kernels(corpus: Corpus) -> None:
    boots = corpus.manifest["arm64_boots"]
    assert boots["kernels"] == ["6.1-arm64", "6.1-arm64-m", "7.2-arm64", "7.2-arm64-m"]
    assert {"elf", "kdump-zlib"} <= set(boots["qemu_dump_formats_offered"])
    assert boots["busybox"]["package"] == "busybox-static:arm64"


@pytest.mark.parametrize("kernel", corpus_params(lambda c: [(k, k) for k in _kernels(c)]))
def test_arm64_ground_truth(corpus: Corpus, kernel: str) -> None:
    """The guest served the build's blob and .config, and handed QEMU its VMCOREINFO."""
    entry, truth, build = corpus.manifest["kernels"][kernel], corpus.truth(kernel), corpus.build(kernel)
    assert entry["arch"] == "arm64" and entry["page_size"] == 4096 == int(truth["vmcoreinfo"]["PAGESIZE"])
    kstage = corpus.stage(entry["stage"])
    assert truth["release"] == build["release"] == truth["vmcoreinfo"]["OSRELEASE"]
    assert truth["config_sha256"] == build["config_sha256"] == sha256((kstage / "config").read_bytes())
    assert truth["vmcoreinfo"]["SYMBOL(swapper_pg_dir)"]
    assert any(row.split()[1:2] == ["init"] for row in truth["ps"][1:])
    assert truth["sha256"] == build["blob_sha256"]
    assert truth.get("module_loaded", False) is (entry["module"] is not None)
    # 6.1: 39-bit VA by default for 4K pages; 7.2: 52-bit (LPA2), which QEMU's -cpu max offers
    assert (entry["va_bits"], entry["vmcoreinfo_va_bits"]) == ((52, 52) if kernel.startswith("7.") else (39, 39))


@pytest.mark.parametrize("capture", corpus_params(lambda c: _captures(c)))
def test_arm64_capture_gives_the_guests_archive(corpus: Corpus, capture_path: Any, tmp_path: Path,
                                                capture: tuple[str, str]) -> None:
    kernel, kind = capture
    out = tmp_path / "a.tar.xz"
    run = run_cli("--json", "-a", out, capture_path(kernel, kind))
    assert run.code == 0, run.stderr
    truth = corpus.truth(kernel)
    assert sha256(out.read_bytes()) == truth["sha256"]
    report = run.json
    assert report["release"] == truth["release"]
    layers = LAYERS[kind]
    if corpus.manifest["kernels"][kernel]["module"] is not None:
        # =m: the page walk rebuilds the module's archive from its vmalloc pages, through VMCOREINFO's
        # swapper_pg_dir and kimage_voffset (LiME and raw images: the kernel's own copy in memory)
        layers = [*layers[:-1], "virtual memory"] if kind != "raw" else ["raw memory", "virtual memory"]
    assert [layer["format"] for layer in report["layers"]] == layers


@pytest.mark.parametrize("capture", corpus_params(lambda c: _captures(c)))
def test_arm64_capture_symbols_equal_system_map(corpus: Corpus, capture_path: Any, tmp_path: Path,
                                                capture: tuple[str, str]) -> None:
    """--symbols: exactly the build's System.map entries that kallsyms holds (no KASLR: tinyconfig
    has no RANDOMIZE_BASE), every text symbol at its link address."""
    kernel, kind = capture
    out = tmp_path / "System.map"
    run = run_cli("--json", "--symbols", out, capture_path(kernel, kind))
    if kernel.startswith("7.") and kind == "raw":
        # read as a kernel image, not a dump: 7.x offsets are place-relative and nothing gives the
        # tables' virtual address (kimage_voffset) there: refused, never wrong addresses
        assert run.code == 1 and "place-relative offsets (the 7.x layout)" in run.stderr
        return
    assert run.code == 0, run.stderr
    # a LiME file has no notes: the VMCOREINFO is the kernel's own copy, found in its memory
    assert run.json["symbols"]["method"] == ("vmcoreinfo" if kind != "raw" else "located")
    symbols = [(int(addr, 16), typ, name) for addr, typ, name in
               (line.split(" ", 2) for line in out.read_text().splitlines())]
    system_map = corpus.stage(corpus.manifest["kernels"][kernel]["stage"]) / "System.map"
    expected = kallsyms_selection(system_map, not kernel.startswith("6.1"))
    assert Counter(symbols) == expected and len(symbols) > 5000
    assert run.json["symbols"]["count"] == len(symbols)
    text = {(addr, name) for addr, typ, name in symbols if typ in "Tt"}
    assert text == {(addr, name) for addr, typ, name in expected if typ in "Tt"} and len(text) > 3000


@pytest.mark.parametrize("capture", corpus_params(lambda c: _captures(c)))
def test_arm64_capture_info_names_the_release(corpus: Corpus, capture_path: Any, capture: tuple[str, str]) -> None:
    kernel, kind = capture
    run = run_cli("--info", capture_path(kernel, kind))
    assert run.code == 0, run.stderr
    assert f"release:  {corpus.truth(kernel)['release']}" in run.stdout.decode()


@pytest.mark.parametrize("capture", corpus_params(lambda c: _captures(c)))
def test_arm64_capture_config_is_the_guests(corpus: Corpus, capture_path: Any, tmp_path: Path,
                                            capture: tuple[str, str]) -> None:
    kernel, kind = capture
    out = tmp_path / "config"
    run = run_cli("--config", out, "-a", tmp_path / "a.tar.xz", capture_path(kernel, kind))
    assert sha256(out.read_bytes()) == corpus.truth(kernel)["config_sha256"], run.stderr
    assert run.code == 0, run.stderr
    assert sha256((tmp_path / "a.tar.xz").read_bytes()) == corpus.truth(kernel)["sha256"]
