"""--config on every kind of corpus input equals the kernel build's own .config, byte for byte:
vmlinux (with and without symbols), raw image, every bzImage codec, the seed layout, 6.12, arm64
Image/zboot, the other architectures' images, and every crash dump (IKCFG_ST..IKCFG_ED sits in
.rodata, physically contiguous)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Corpus, corpus_params, run_cli
from test_arches import IMAGES as ARCH_IMAGES
from test_arches import KERNELS as ARCH_STAGES
from test_dumps import corpus_dumps

IMAGES = [
    ("k61y", "vmlinux", "config"),
    ("k61y", "vmlinux.stripped", "config"),
    ("k61y", "vmlinux.bin", "config"),
    *[("k61y", f"bzImage.{c}", f"variants/{c}/config") for c in ("gzip", "bzip2", "lzma", "xz", "lzo", "lz4", "zstd")],
    ("k61seed", "bzImage", "config"),
    ("k612y", "vmlinux", "config"),
    ("k612y", "bzImage", "config"),
    ("k72y", "vmlinux", "config"),
    ("k72y", "bzImage", "config"),
    ("k61arm64", "Image", "config"),
    ("k61arm64", "Image.gz", "config"),
    ("k61arm64", "vmlinux", "config"),
    ("k61arm64", "vmlinuz.efi.gzip", "variants/gzip/config"),
    ("k61arm64", "vmlinuz.efi.zstd", "variants/zstd/config"),
]
# the kernel a dump's ground truth is for -> the stage that built it
DUMP_STAGES = {"6.1-y-gzip": "k61y", "6.1-m": "k61m", "6.12-y": "k612y", "6.12-btf": "k612btf", "7.2-y": "k72y",
               "7.2-m": "k72m", "kdump": "k61y", "kdump-7.2": "k72y"}


def _inputs(corpus: Corpus) -> Iterator[tuple[str, tuple[Path, Path]]]:
    for stage, name, config in IMAGES:
        yield f"{stage}/{name}", (corpus.stage(stage) / name, corpus.stage(stage) / config)
    for kernel, images in ARCH_IMAGES.items():
        sub = corpus.manifest["kernels"][kernel]["dir"]
        stage = corpus.stage(ARCH_STAGES[kernel])
        for image in images:
            yield f"{kernel}/{image}", (stage / image, stage / sub / "config")
    for name, (path, _) in corpus_dumps(corpus):
        yield f"dump:{name}", (path, corpus.stage(DUMP_STAGES[name.split("/")[0]]) / "config")


@pytest.mark.parametrize("case", corpus_params(_inputs))
def test_config_is_the_builds_dotconfig(corpus: Corpus, tmp_path: Path, case: tuple[Path, Path]) -> None:
    image, config = case
    out = tmp_path / "config"
    run = run_cli("--config", out, image)  # the .config alone: no archive is located or verified
    assert run.code == 0, run.stderr
    assert out.read_bytes() == config.read_bytes()
