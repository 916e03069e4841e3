"""The corpus gives the same bytes on every machine and every run (fixtures/corpus.py BUILD_ENV).

`repro-<stage>` built one kernel stage a second time in another source and build directory; each
`clean-<stage>-<variant>` built a variant's headers archive in a clean tree, the variant that its
stage rebuilt in a reused tree. These tests compare them, so a recipe whose output depends on the
clock, the machine, the build directory or the order of builds cannot pass.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import Corpus


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "stage.json"}


def test_a_kernel_stage_built_twice_gives_the_same_bytes(corpus: Corpus) -> None:
    repro = corpus.manifest["repro"]
    assert repro, "the corpus proves reproducibility on at least one stage"
    for stage, again in repro.items():
        first, second = digests(corpus.stage(stage)), digests(corpus.root / again)
        assert {"kheaders_data.tar.xz", "config", "System.map", "vmlinux"} <= first.keys()
        assert first == second, {k: (v, second.get(k)) for k, v in first.items() if second.get(k) != v}


@pytest.mark.parametrize("stage", ["k61y", "k61arm64", "k61arm"])
def test_a_variant_rebuilt_in_its_tree_equals_a_clean_build(corpus: Corpus, stage: str) -> None:
    (variant, clean_dir), = corpus.manifest["clean_variants"][stage].items()
    clean = json.loads((corpus.root / clean_dir / "build.json").read_text())
    listed = corpus.stage(stage) / "variants.json"  # k61y, k61arm64; cross kernels: one build.json each
    rebuilt = (json.loads(listed.read_text())[variant] if listed.is_file()
               else json.loads((corpus.stage(stage) / "variants" / variant / "build.json").read_text()))
    assert (rebuilt["blob_sha256"], rebuilt["config_sha256"]) == (clean["blob_sha256"], clean["config_sha256"])
    assert rebuilt["release"] == clean["release"]


def test_every_variant_has_its_own_configuration_in_its_archive(corpus: Corpus) -> None:
    """A variant's archive is regenerated: its autoconf.h names its own compressor (before, kbuild
    kept the first build's archive, since no *.h file changed)."""
    import io
    import lzma
    import tarfile

    for stage, prefix in (("k61y", "CONFIG_KERNEL_"), ("k61arm", "CONFIG_KERNEL_"), ("k61arm64", "CONFIG_KERNEL_")):
        for vdir in sorted((corpus.stage(stage) / "variants").iterdir()):
            blob = lzma.decompress((vdir / "kheaders_data.tar.xz").read_bytes())
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                member = tar.extractfile("./include/generated/autoconf.h")
                assert member is not None
                autoconf = member.read().decode()
            chosen = [line.split()[1] for line in autoconf.splitlines()
                      if line.startswith(f"#define {prefix}") and line.split()[1].removeprefix(prefix).lower()
                      in ("gzip", "bzip2", "lzma", "xz", "lzo", "lz4", "zstd")]
            assert chosen == [f"{prefix}{vdir.name.upper()}"], (stage, vdir.name, chosen)


def test_the_corpus_records_its_cold_build_time(corpus: Corpus) -> None:
    seconds = corpus.manifest["stage_seconds"]
    assert set(seconds) == set(corpus.manifest["recipe"])
    assert all(s > 0 for s in seconds.values())
