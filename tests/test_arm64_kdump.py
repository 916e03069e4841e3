"""A real arm64 kdump under QEMU virt (TCG), the kdump-6.1-arm64 stage: the first kernel loaded the
same Image as capture kernel (kexec -s -p) and panicked; the capture kernel saved /proc/vmcore (ELF)
and makedumpfile -F -c -d 31 (flattened; reassembled on the host with makedumpfile -R). Each capture
against what the first kernel served and the build's System.map."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus, corpus_params, run_cli
from test_kallsyms import kallsyms_selection

LAYERS = {"elf": ["elf-core", "physical memory"], "flat-zlib-d31": ["flattened", "kdump", "physical memory"],
          "kdump-zlib-d31": ["kdump", "physical memory"]}


def _captures(corpus: Corpus) -> list[tuple[str, str]]:
    kdump = corpus.manifest.get("kdump_arm64")
    return [(kind, kind) for kind in kdump["captures"]] if kdump else []


def _kdump(corpus: Corpus) -> dict[str, Any]:
    if "kdump_arm64" not in corpus.manifest:
        pytest.skip("this corpus has no arm64 kdump")
    kdump: dict[str, Any] = corpus.manifest["kdump_arm64"]
    return kdump


def _capture(corpus: Corpus, kind: str) -> Path:
    kdump = _kdump(corpus)
    return corpus.root / str(kdump["dir"]) / str(kdump["captures"][kind])


def test_arm64_kdump_ground_truth(corpus: Corpus) -> None:
    kdump = _kdump(corpus)
    truth, build = kdump["ground_truth"], kdump["build"]
    assert truth["release"] == build["release"] == truth["vmcoreinfo"]["OSRELEASE"]
    assert truth["sha256"] == build["blob_sha256"] and truth["guest_makedumpfile"]
    # the whole capture, QEMU's start to the capture kernel's last marker, within the 10 minutes
    assert truth["seconds"]["CAPTURE-DONE"] < 600 and truth["vmcoreinfo"]["NUMBER(VA_BITS)"] == "39"


@pytest.mark.parametrize("kind", corpus_params(_captures))
def test_arm64_kdump_gives_the_guests_archive(corpus: Corpus, tmp_path: Path, kind: str) -> None:
    truth = _kdump(corpus)["ground_truth"]
    out = tmp_path / "a.tar.xz"
    run = run_cli("--json", "-a", out, _capture(corpus, kind))
    assert run.code == 0, run.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == truth["sha256"]
    assert run.json["release"] == truth["release"]
    assert [layer["format"] for layer in run.json["layers"]] == LAYERS[kind]


@pytest.mark.parametrize("kind", corpus_params(_captures))
def test_arm64_kdump_symbols_equal_system_map(corpus: Corpus, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "System.map"
    run = run_cli("--json", "--symbols", out, _capture(corpus, kind))
    assert run.code == 0, run.stderr
    assert run.json["symbols"]["method"] == "vmcoreinfo"
    symbols = [(int(addr, 16), typ, name) for addr, typ, name in
               (line.split(" ", 2) for line in out.read_text().splitlines())]
    expected = kallsyms_selection(corpus.stage(_kdump(corpus)["kernel_stage"]) / "System.map", False)
    assert Counter(symbols) == expected and len(symbols) > 5000


@pytest.mark.parametrize("kind", corpus_params(_captures))
def test_arm64_kdump_info_names_the_release(corpus: Corpus, kind: str) -> None:
    run = run_cli("--info", _capture(corpus, kind))
    assert run.code == 0, run.stderr
    assert f"release:  {_kdump(corpus)['ground_truth']['release']}" in run.stdout.decode()
