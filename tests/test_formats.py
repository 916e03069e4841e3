"""Every registered image format is tested four ways, so that none can be half-added:

- probe: its sample is claimed by it first in the registry's order (and no probe chokes on a
  few bytes);
- peel: pipeline.find goes through it to the exact archive, with the layers it should record;
- truncation: the sample cut short fails with the error class and fields its table row says;
- corpus: a real kernel's file goes through it to the build's archive, byte for byte.

The tables are keyed by the names in images/registry.py: a format registered without its rows
fails below, naming itself.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import headers_archive, incbin_object
from builders_arch import riscv_image, s390_bzimage, zimage
from builders_bootimg import arm64_image, boot_image, zboot
from builders_bzimage import bzimage, compress, kernel_like
from conftest import Corpus, run_cli

from extract_ikheaders import pipeline
from extract_ikheaders.errors import Damaged, ExtractError
from extract_ikheaders.images import registry

ARCHIVE = headers_archive()
KERNEL = kernel_like(256 << 10, seed=1) + ARCHIVE + kernel_like(64 << 10, seed=2)


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], bytes]  # a small image of this format holding ARCHIVE
    layers: tuple[str, ...]  # the layers pipeline.find records for it
    cut: Callable[[bytes], int]  # where to cut the sample short
    cut_error: type[ExtractError]  # what the cut sample gives
    cut_layer: str | None  # the layer that error names (None: the cut broke the format's own header)
    corpus: tuple[str, str]  # (stage, file) of a real kernel in this format


def _elf(tmp: Path) -> bytes:
    build = tmp / "build"
    build.mkdir()
    return incbin_object(build, ARCHIVE).read_bytes()


def _archive_middle(data: bytes) -> int:
    """Half-way through the archive, where it lies uncompressed in the sample."""
    return data.index(ARCHIVE) + len(ARCHIVE) // 2


def _two_thirds(data: bytes) -> int:
    return len(data) * 2 // 3


CASES: dict[str, Case] = {
    "elf": Case(_elf, ("elf",), _archive_middle, Damaged, None, ("k61y", "vmlinux")),
    "compressed file": Case(lambda _: gzip.compress(KERNEL), ("gzip",), _two_thirds, Damaged, "gzip",
                            ("k61arm64", "Image.gz")),
    "android boot.img": Case(lambda _: boot_image(arm64_image(KERNEL), 2), ("android boot.img", "arm64 Image"),
                             _archive_middle, Damaged, "android boot.img", ("k61arm64", "boot.img")),
    "EFI zboot": Case(lambda _: zboot(compress("gzip", KERNEL), "gzip"), ("EFI zboot", "raw image"),
                      _two_thirds, Damaged, "EFI zboot", ("k61arm64", "vmlinuz.efi")),
    "bzImage": Case(lambda _: bzimage(compress("gzip", KERNEL)).image, ("bzImage", "raw image"),
                    _two_thirds, Damaged, "bzImage", ("k61y", "bzImage.gzip")),
    "arm64 Image": Case(lambda _: arm64_image(KERNEL), ("arm64 Image",), _archive_middle, Damaged, "arm64 Image",
                        ("k61arm64", "Image")),
    "ARM zImage": Case(lambda _: zimage(compress("gzip", KERNEL)), ("ARM zImage", "raw image"),
                       _two_thirds, Damaged, "ARM zImage", ("k61arm", "zImage")),
    "s390 bzImage": Case(lambda _: s390_bzimage(compress("gzip", KERNEL)), ("s390 bzImage", "raw image"),
                         _two_thirds, Damaged, "s390 bzImage", ("k61s390x", "bzImage")),
    "riscv Image": Case(lambda _: riscv_image(KERNEL), ("riscv Image",), _archive_middle, Damaged, "riscv Image",
                        ("k61riscv64", "Image")),
}
NAMES = [fmt.name for fmt in registry.formats()]


def test_every_registered_format_has_its_cases_and_no_case_is_stale() -> None:
    assert sorted(CASES) == sorted(NAMES)
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_probe_claims_its_sample_first(name: str, tmp_path: Path) -> None:
    sample = CASES[name].build(tmp_path)
    claimed = [fmt.name for fmt in registry.formats() if fmt.probe(sample)]
    assert claimed[:1] == [name]


@pytest.mark.parametrize("data", [b"", b"\0", b"MZ", b"\x7fELF", b"ANDROID!", b"\x1f\x8b"], ids=repr)
def test_probes_read_only_what_is_there(data: bytes) -> None:
    """Probes look at magics only and never raise on a file shorter than their header; a gzip
    magic without its method byte is not yet a gzip stream."""
    claimed = [fmt.name for fmt in registry.formats() if fmt.probe(data)]
    assert claimed == {b"\x7fELF": ["elf"], b"ANDROID!": ["android boot.img"]}.get(data, [])


@pytest.mark.parametrize("name", NAMES)
def test_peel_reaches_the_exact_archive(name: str, tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(CASES[name].build(tmp_path))
    found = pipeline.find(path)
    assert found.archive == ARCHIVE
    assert tuple(layer.format for layer in found.layers) == CASES[name].layers


@pytest.mark.parametrize("name", NAMES)
def test_a_cut_short_sample_fails_with_its_error_and_fields(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    sample = case.build(tmp_path)
    path = tmp_path / "cut"
    path.write_bytes(sample[: case.cut(sample)])
    with pytest.raises(ExtractError) as caught:
        pipeline.find(path)
    assert type(caught.value) is case.cut_error or isinstance(caught.value, case.cut_error), caught.value
    assert caught.value.path == str(path)
    assert caught.value.layer == case.cut_layer
    run = run_cli("-a", tmp_path / "out.tar.xz", path)
    assert run.code == (3 if case.cut_error is Damaged else 1)
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"extract-ikheaders: {path}: ")
    assert not (tmp_path / "out.tar.xz").exists()


@pytest.mark.parametrize("name", NAMES)
def test_a_real_kernel_in_this_format(name: str, corpus: Corpus, tmp_path: Path) -> None:
    stage, file = CASES[name].corpus
    if file == "boot.img":  # Android boot images are made from the corpus's Image.gz
        path = tmp_path / file
        path.write_bytes(boot_image(corpus.file(stage, "Image.gz").read_bytes(), 2))
    else:
        path = corpus.file(stage, file)
    found = pipeline.find(path)
    expected = corpus.file(stage, "kheaders_data.tar.xz").read_bytes()
    assert found.sha256 == hashlib.sha256(expected).hexdigest()
    assert name in [fmt.name for fmt in registry.formats()]
    formats = [layer.format for layer in found.layers]
    assert CASES[name].layers[0] in formats, formats
