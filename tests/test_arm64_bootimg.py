"""EFI zboot, arm64 Image and Android boot images: header parsing (synthetic, fast) and the real
cross-built 6.1 arm64 kernel and x86 bzImage from the corpus (sha256 against the build's blob or
the booted guest)."""

from __future__ import annotations

import contextlib
import hashlib
import struct
import tempfile
from pathlib import Path

import pytest
from builders import headers_archive
from builders_bootimg import arm64_image, boot_image, mkbootimg, mkbootimg_missing, zboot
from builders_bzimage import compress
from conftest import Corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract_ikheaders import pipeline
from extract_ikheaders.errors import Damaged, NotFound, NotMine
from extract_ikheaders.images import arm64_image as zb
from extract_ikheaders.images import bootimg
from extract_ikheaders.model import Layer

ARCHIVE = headers_archive()
BANNER = b"Linux version 6.1.0-synthetic (builder@tests) (gcc) #1 SMP\n\0"
RAW = arm64_image(b"\x1f\x20\x03\xd5" * 0x400 + BANNER + b"\0" * 13 + ARCHIVE + b"\xc0\x03\x5f\xd6" * 0x800)
# Makefile.zboot's compression type strings (6.1), by codec
COMP_TYPES = {"gzip": "gzip", "lz4": "lz4", "lzma": "lzma", "lzo": "lzo", "xz": "xzkern", "zstd": "zstd22",
              "bzip2": "bzip2"}


def peel_and_find(data: bytes) -> tuple[bytes, tuple[Layer, ...]]:
    """The archive and its layers, through the real pipeline (pipeline.find on a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image"
        path.write_bytes(data)
        found = pipeline.find(path)
    return found.archive, found.layers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def zboot_of(codec: str, raw: bytes = RAW) -> bytes:
    return zboot(compress(codec, raw), COMP_TYPES[codec], size_trailer=codec != "gzip")


# EFI zboot (synthetic) ------------------------------------------------------------------------


def test_zboot_payload_decodes_to_the_image(codec: str) -> None:
    image = zboot_of(codec)
    payload = zb.peel(image, "test")
    size = len(compress(codec, RAW)) - (codec != "gzip") * 4
    assert (payload.codec, payload.offset, payload.end) == (codec, 0x1000, 0x1000 + size)
    assert payload.layer == Layer("EFI zboot", 0x1000, size, payload.layer.detail)
    assert payload.layer.detail.startswith(f"{COMP_TYPES[codec]} payload, PE headers unreadable")
    layers, chunks = zb.payload_chunks(image, "test")
    assert layers == (payload.layer,)
    assert b"".join(chunks) == RAW


def test_zboot_archive_found_through_the_stream(codec: str) -> None:
    archive, layers = peel_and_find(zboot_of(codec))
    assert archive == ARCHIVE
    assert [layer.format for layer in layers] == ["EFI zboot", "raw image"]


def test_zboot_payload_closes_early() -> None:
    _, chunks = zb.payload_chunks(zboot_of("gzip", RAW * 20), "test")
    first = next(chunks)
    chunks.close()
    assert RAW.startswith(first[:1000])


@pytest.mark.parametrize("cut", [8, 0x18, 0x3F])
def test_truncated_zboot_header_is_damaged(cut: int) -> None:
    with pytest.raises(Damaged, match="truncated"):
        zb.peel(zboot_of("gzip")[:cut], "test")


@pytest.mark.parametrize("data", [b"", b"MZ", b"MZ\0\0zim", b"\x7fELF" + b"\0" * 100, arm64_image(b"\0" * 100)])
def test_not_zboot_is_not_mine(data: bytes) -> None:
    assert not zb.is_zboot(data)
    with pytest.raises(NotMine):
        zb.peel(data, "test")


@pytest.mark.parametrize(("field", "value", "match"), [
    (0x08, 0x10, "outside the file"),  # inside the header
    (0x08, 0xFFFF_FFFF, "outside the file"),
    (0x0C, 0, "empty payload"),
    (0x0C, 0xFFFF_FFF0, "past the end"),
    (0x08, 0x800, "not a known compressed stream"),  # the zero filler before the payload
])
def test_impossible_zboot_fields_are_damaged(field: int, value: int, match: str) -> None:
    with pytest.raises(Damaged, match=match):
        zb.peel(with_u32(zboot_of("gzip"), field, value), "test")


def test_truncated_zboot_payload_is_damaged() -> None:
    image = zboot_of("gzip")
    with pytest.raises(Damaged, match="past the end"):
        zb.peel(image[: 0x1000 + 100], "test")


@pytest.mark.parametrize(("comp_type", "detail"), [
    ("zstd22", "gzip payload (the header says 'zstd22')"),
    ("brotli", "gzip payload (unknown compression type 'brotli' in the header)"),
    ("\xff\x01", "gzip payload (unknown compression type '' in the header)"),
])
def test_zboot_codec_comes_from_the_magic(comp_type: str, detail: str) -> None:
    image = zboot(compress("gzip", RAW), "")
    image = image[:0x18] + comp_type.encode("latin-1") + image[0x18 + len(comp_type) :]
    payload = zb.peel(image, "test")
    assert payload.codec == "gzip" and payload.layer.detail.startswith(detail)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=0x60), st.integers(0, 0x2000), st.integers(0, 0x2000))
def test_fuzzed_zboot_headers_never_raise_raw_exceptions(tail: bytes, offset: int, size: int) -> None:
    image = (b"MZ\0\0zimg" + struct.pack("<II", offset, size) + tail).ljust(0x40, b"\0") + compress("gzip", b"x" * 99)
    try:
        payload = zb.peel(image, "test")
    except Damaged:
        return
    assert 0x40 <= payload.offset < payload.end <= len(image)
    with contextlib.suppress(Damaged):
        b"".join(payload.chunks(image))


# arm64 Image (synthetic) ----------------------------------------------------------------------


def test_arm64_image_layer() -> None:
    layer = zb.arm64_image_layer(RAW, "test")
    assert (layer.format, layer.offset, layer.length) == ("arm64 Image", 0, len(RAW))
    assert layer.detail == (f"text_offset 0x0, image_size {len(RAW) + 0x10000:#x}, little-endian, 4K pages, "
                            f"placeable anywhere, EFI stub")
    archive, layers = peel_and_find(RAW)
    assert archive == ARCHIVE and [x.format for x in layers] == ["arm64 Image"]


def test_arm64_image_without_efi_stub_and_pre_317() -> None:
    image = arm64_image(b"\0" * 64, efi_stub=False)
    assert zb.arm64_image_layer(image, "t").detail.endswith("4K pages, placeable anywhere")
    old = image[:16] + b"\0" * 16 + image[32:]  # image_size 0: before v3.17
    assert zb.arm64_image_layer(old, "t").detail == "pre-3.17 header (image_size 0)"


@pytest.mark.parametrize("data", [b"", b"MZ" + b"\0" * 0x3A + b"ARM", zboot(b"x" * 10, "gzip")])
def test_not_an_arm64_image(data: bytes) -> None:
    assert not zb.is_arm64_image(data)
    with pytest.raises(NotMine):
        zb.arm64_image_layer(data, "test")


def test_zboot_is_never_an_arm64_image() -> None:
    image = zboot(compress("gzip", RAW), "gzip")
    image = image[:0x38] + b"ARM\x64" + image[0x3C:]
    assert zb.is_zboot(image) and not zb.is_arm64_image(image)


# Android boot images (synthetic) --------------------------------------------------------------

KERNEL = b"\x1f\x8b\x08" + bytes(range(256)) * 20


@pytest.mark.parametrize("version", range(5))
@pytest.mark.parametrize("page_size", [2048, 4096, 16384])
def test_boot_image_kernel_span(version: int, page_size: int) -> None:
    image = boot_image(KERNEL, version, page_size=page_size)
    layer = bootimg.peel(image, "test")
    page = 4096 if version >= 3 else page_size
    assert (layer.format, layer.offset, layer.length) == ("android boot.img", page, len(KERNEL))
    assert layer.detail == f"header v{version}, page size {page}, kernel {len(KERNEL)} bytes"
    assert image[layer.offset : layer.offset + layer.length] == KERNEL


@pytest.mark.parametrize("version", range(4))
def test_mkbootimg_images(tmp_path: Path, version: int) -> None:
    if mkbootimg_missing():
        pytest.skip(str(mkbootimg_missing()))
    kernel = tmp_path / "kernel"
    kernel.write_bytes(KERNEL)
    image = mkbootimg(tmp_path, kernel, version).read_bytes()
    layer = bootimg.peel(image, "test")
    assert image[layer.offset : layer.offset + layer.length] == KERNEL
    assert layer.detail.startswith(f"header v{version}, page size {4096 if version == 3 else 2048},")


def test_boot_image_archive_through_zboot() -> None:
    archive, layers = peel_and_find(boot_image(zboot_of("gzip"), 4))
    assert archive == ARCHIVE and [x.format for x in layers] == ["android boot.img", "EFI zboot", "raw image"]


@pytest.mark.parametrize("version", range(5))
def test_truncated_boot_images_are_damaged(version: int) -> None:
    image = boot_image(KERNEL, version)
    page = 4096 if version >= 3 else 2048
    for cut in (8, 12, 43, 44, 600, bootimg.FIXED_SIZES[version] - 1, page, page + len(KERNEL) - 1):
        with pytest.raises(Damaged):
            bootimg.peel(image[:cut], "test")
    bootimg.peel(image[: page + len(KERNEL)], "test")  # the kernel's end is enough


@pytest.mark.parametrize("data", [b"", b"ANDROID", b"VNDRBOOT" + b"\0" * 4096, b"MZ" + b"\0" * 4096])
def test_not_a_boot_image(data: bytes) -> None:
    assert not bootimg.is_boot_image(data)
    with pytest.raises(NotMine):
        bootimg.peel(data, "test")


@pytest.mark.parametrize(("offset", "value", "error", "match"), [
    (bootimg.KERNEL_SIZE, 0xFFFF_FFFF, Damaged, "past the end"),
    (bootimg.KERNEL_SIZE, 0, NotFound, "without a kernel"),
    (bootimg.PAGE_SIZE, 0, Damaged, "page size 0"),
    (bootimg.PAGE_SIZE, 3000, Damaged, "page size 3000"),
    (bootimg.PAGE_SIZE, 1 << 20, Damaged, "page size"),
    (bootimg.PAGE_SIZE, 0xFFFF_FFFF, Damaged, "page size"),
    (bootimg.HEADER_VERSION, 5, NotFound, "version 5 is not supported"),
    (bootimg.HEADER_VERSION, 0xFFFF_FFFF, NotFound, "not supported"),
])
def test_impossible_boot_image_fields(offset: int, value: int, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        bootimg.peel(with_u32(boot_image(KERNEL, 1), offset, value), "test")


def test_page_size_larger_than_the_file_is_damaged() -> None:
    with pytest.raises(Damaged, match="past the end"):
        bootimg.peel(with_u32(boot_image(KERNEL, 0), bootimg.PAGE_SIZE, 1 << 16), "test")


def test_nested_boot_image_is_refused() -> None:
    with pytest.raises(NotFound, match="another boot image"):
        bootimg.peel(boot_image(boot_image(KERNEL, 2), 2), "test")


@pytest.mark.parametrize(("version", "offset"), [(1, 1644), (2, 1644), (3, 20), (4, 20)])
def test_odd_header_size_is_noted_not_fatal(version: int, offset: int) -> None:
    layer = bootimg.peel(with_u32(boot_image(KERNEL, version), offset, 7), "test")
    assert layer.detail.endswith("(implausible header_size 7)")
    assert bootimg.peel(with_u32(boot_image(KERNEL, 3), 20, 1596), "test").detail.endswith("bytes")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=0x700), st.integers(0, 6), st.integers(0, 1 << 17))
def test_fuzzed_boot_headers_never_raise_raw_exceptions(tail: bytes, version: int, page: int) -> None:
    image = b"ANDROID!" + tail
    if len(image) >= 44:
        image = with_u32(with_u32(image, bootimg.HEADER_VERSION, version), bootimg.PAGE_SIZE, page)
    try:
        layer = bootimg.peel(image, "test")
    except (Damaged, NotFound):
        return
    assert layer.offset >= 2048 and layer.length > 0 and layer.offset + layer.length <= len(image)


# The real kernels -----------------------------------------------------------------------------

ARM64_FILES = [("Image", "gzip"), ("Image.gz", "gzip"), ("vmlinuz.efi", "gzip"), ("vmlinuz.efi.gzip", "gzip"),
               ("vmlinuz.efi.zstd", "zstd")]


@pytest.fixture(scope="module")
def arm64(corpus: Corpus) -> Corpus:
    if "k61arm64" not in corpus.manifest["recipe"]:
        pytest.skip("this corpus has no arm64 stage (k61arm64)")
    return corpus


def blob_sha(corpus: Corpus, variant: str) -> str:
    return str(corpus.build(f"6.1-arm64-{variant}")["blob_sha256"])


def test_arm64_ground_truth_is_consistent(arm64: Corpus) -> None:
    """The blob kept from the build is the one in the symbol-bearing vmlinux."""
    build = arm64.build("6.1-arm64")
    assert sha(arm64.file("k61arm64", "kheaders_data.tar.xz").read_bytes()) == build["blob_sha256"]
    assert build["blob_sha256"] == blob_sha(arm64, "gzip")
    assert pipeline.find(arm64.file("k61arm64", "vmlinux")).sha256 == build["blob_sha256"]


@pytest.mark.parametrize(("name", "variant"), ARM64_FILES, ids=[n for n, _ in ARM64_FILES])
def test_arm64_images(arm64: Corpus, name: str, variant: str) -> None:
    archive, layers = peel_and_find(arm64.file("k61arm64", name).read_bytes())
    assert sha(archive) == blob_sha(arm64, variant)
    formats = [layer.format for layer in layers]
    if name == "Image":
        assert formats == ["arm64 Image"] and layers[0].detail.endswith("4K pages, placeable anywhere, EFI stub")
    elif name == "Image.gz":
        assert formats == ["gzip", "arm64 Image"]
    else:
        assert formats == ["EFI zboot", "raw image"]
        comp_type = {"gzip": "gzip", "zstd": "zstd22"}[variant]
        assert layers[0].detail == f"{comp_type} payload, PE ARM64, sections .text .data, payload in .text"


def boot_img_of(tmp_path: Path, kernel: Path, version: int) -> bytes:
    if version == 4:
        return boot_image(kernel.read_bytes(), 4)
    if mkbootimg_missing():
        pytest.skip(str(mkbootimg_missing()))
    return mkbootimg(tmp_path, kernel, version).read_bytes()


@pytest.mark.parametrize("version", range(5))
def test_boot_image_with_x86_bzimage(corpus: Corpus, tmp_path: Path, version: int) -> None:
    kernel = corpus.file("k61y", "bzImage.gzip")
    archive, layers = peel_and_find(boot_img_of(tmp_path, kernel, version))
    assert sha(archive) == corpus.truth("6.1-y-gzip")["sha256"]
    assert [layer.format for layer in layers] == ["android boot.img", "bzImage", "raw image"]
    assert layers[0].length == kernel.stat().st_size


@pytest.mark.parametrize("version", range(5))
def test_boot_image_with_arm64_image_gz(arm64: Corpus, tmp_path: Path, version: int) -> None:
    kernel = arm64.file("k61arm64", "Image.gz")
    archive, layers = peel_and_find(boot_img_of(tmp_path, kernel, version))
    assert sha(archive) == blob_sha(arm64, "gzip")
    assert [layer.format for layer in layers] == ["android boot.img", "gzip", "arm64 Image"]


# Through the public API -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "variant"), ARM64_FILES, ids=[n for n, _ in ARM64_FILES])
def test_find_arm64(arm64: Corpus, name: str, variant: str) -> None:
    found = pipeline.find(arm64.file("k61arm64", name))
    assert found.sha256 == blob_sha(arm64, variant)
    assert found.release == arm64.build("6.1-arm64")["release"]


@pytest.mark.parametrize("version", [0, 2, 4])
def test_find_boot_images(corpus: Corpus, tmp_path: Path, version: int) -> None:
    image = tmp_path / "boot.img"
    image.write_bytes(boot_img_of(tmp_path, corpus.file("k61y", "bzImage.gzip"), version))
    found = pipeline.find(image)
    assert found.sha256 == corpus.truth("6.1-y-gzip")["sha256"]
    assert [layer.format for layer in found.layers][:2] == ["android boot.img", "bzImage"]


def test_find_synthetic_boot_zboot(tmp_path: Path) -> None:
    image = tmp_path / "boot.img"
    image.write_bytes(boot_image(zboot_of("gzip"), 3))
    found = pipeline.find(image)
    assert found.archive == ARCHIVE and found.release == "6.1.0-synthetic"
    assert [layer.format for layer in found.layers] == ["android boot.img", "EFI zboot", "raw image"]


