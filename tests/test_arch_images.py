"""Boot images of other architectures, built small in the tests: ARM zImage (xz with the ARM BCJ
filter, gzip), s390 bzImage, riscv Image; and where the architecture and byte order come from."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from builders import HEADERS, headers_archive
from builders_arch import DTB, riscv_image, s390_bzimage, xz_arm, zimage
from builders_bzimage import DECOY_STUB, compress, kernel_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract_ikheaders import arch, pipeline
from extract_ikheaders.errors import Damaged, NotFound, NotMine
from extract_ikheaders.images import armzimage, s390
from extract_ikheaders.model import Method, Platform

ARCHIVE = headers_archive()


def _kernel() -> bytes:
    """An uncompressed kernel-like image with the archive in its 'rodata'."""
    return kernel_like(256 << 10, seed=1) + ARCHIVE + kernel_like(64 << 10, seed=2)


@pytest.mark.parametrize("codec", ["xz-arm", "gzip"])
def test_arm_zimage(tmp_path: Path, codec: str) -> None:
    payload = xz_arm(_kernel()) if codec == "xz-arm" else compress("gzip", _kernel())
    path = tmp_path / "zImage"
    path.write_bytes(zimage(payload))
    found = pipeline.find(path)
    assert (found.archive, found.method) == (ARCHIVE, Method.CARVE)
    layer = found.layers[0]
    assert (layer.format, layer.offset) == ("ARM zImage", 0x40 + len(DECOY_STUB))
    assert f"{len(DTB)} bytes appended" in layer.detail
    assert found.platform == Platform("arm", "little", 32, "ARM zImage header")


def test_big_endian_arm_zimage_says_so(tmp_path: Path) -> None:
    path = tmp_path / "zImage"
    path.write_bytes(zimage(compress("gzip", _kernel()), big_endian=True))
    found = pipeline.find(path)
    assert found.archive == ARCHIVE
    assert found.platform == Platform("arm", "big", 32, "ARM zImage header")


def test_zimage_payload_only_within_the_image(tmp_path: Path) -> None:
    """A compressed stream in the appended data is not the kernel."""
    image = zimage(b"", appended=compress("gzip", _kernel()))
    with pytest.raises(NotFound, match="ARM zImage without a decodable compressed kernel"):
        armzimage.payload_chunks(image, "zImage")


@pytest.mark.parametrize("image", ["zImage", "s390"])
def test_image_header_without_payload_is_searched_as_bytes(tmp_path: Path, image: str) -> None:
    """A boot header in memory whose compressed kernel is gone: the bytes themselves are carved."""
    data = zimage(b"", appended=b"") if image == "zImage" else s390_bzimage(b"")
    path = tmp_path / "memory"
    path.write_bytes(data + _kernel())
    found = pipeline.find(path)
    assert (found.archive, found.method, found.layers) == (ARCHIVE, Method.CARVE, ())


def test_s390_bzimage(tmp_path: Path) -> None:
    path = tmp_path / "bzImage"
    path.write_bytes(s390_bzimage(compress("gzip", _kernel())))
    found = pipeline.find(path)
    assert found.archive == ARCHIVE
    assert found.layers[0].format == "s390 bzImage"
    assert found.platform == Platform("s390", "big", 64, "s390 bzImage (S390EP)")


def test_s390_without_payload_is_not_found() -> None:
    with pytest.raises(NotFound, match="s390 bzImage without a decodable compressed kernel"):
        s390.payload_chunks(s390_bzimage(b""), "bzImage")


@pytest.mark.parametrize("data", [b"", b"\x00" * 0x20000, zimage(b"")[:0x27]])
def test_other_inputs_are_not_mine(data: bytes) -> None:
    with pytest.raises(NotMine):
        armzimage.payload_chunks(data, "x")
    with pytest.raises(NotMine):
        s390.payload_chunks(data, "x")


def test_riscv_image(tmp_path: Path) -> None:
    path = tmp_path / "Image"
    path.write_bytes(riscv_image(_kernel()))
    found = pipeline.find(path)
    assert found.archive == ARCHIVE
    assert (found.layers[0].format, found.layers[0].detail) == (
        "riscv Image", "text_offset 0x200000, image_size 0x1000000, header version 0.2")
    assert found.platform == Platform("riscv", "little", None, "riscv Image header")


def test_arm64_image_big_endian_flag() -> None:
    head = bytearray(0x40)
    struct.pack_into("<QQQ", head, 0x08, 0, 0x100000, 1)
    head[0x38:0x3C] = b"ARM\x64"
    assert arch.from_image(bytes(head)) == Platform("arm64", "big", 64, "arm64 Image header")
    struct.pack_into("<Q", head, 0x18, 0)
    assert arch.from_image(bytes(head)) == Platform("arm64", "little", 64, "arm64 Image header")


@pytest.mark.parametrize(("machine", "expected"), [
    ("s390x", Platform("s390", "big", 64, "kdump header (machine s390x)")),
    ("ppc64le", Platform("powerpc", "little", 64, "kdump header (machine ppc64le)")),
    ("armv7l", Platform("arm", "little", 32, "kdump header (machine armv7l)")),
])
def test_kdump_header_machine(machine: str, expected: Platform) -> None:
    header = bytearray(0x200)
    header[:8] = b"KDUMP   "
    header[arch.KDUMP_MACHINE_AT : arch.KDUMP_MACHINE_AT + len(machine)] = machine.encode()
    assert arch.from_dump_header(bytes(header)) == expected


@pytest.mark.parametrize(("arch_name", "autoconf", "expected"), [
    ("powerpc", b"#define CONFIG_64BIT 1\n#define CONFIG_CPU_BIG_ENDIAN 1\n", ("big", 64)),
    ("arm", b"#define CONFIG_MMU 1\n", ("little", 32)),
    ("s390", b"#define CONFIG_64BIT 1\n", ("big", 64)),
    ("arm64", None, (None, None)),
])
def test_from_archive(arch_name: str, autoconf: bytes | None, expected: tuple[str | None, int | None]) -> None:
    names = ["./include/linux", f"./arch/{arch_name}/include/asm/page.h"]
    found = arch.from_archive(names, autoconf)
    assert found is not None and (found.arch, found.endian, found.bits) == (arch_name, *expected)


@pytest.mark.parametrize(("autoconf", "bits"), [(None, None), (b"#define CONFIG_64BIT 1\n", 64)])
def test_bare_archive_platform_comes_from_its_contents(tmp_path: Path, autoconf: bytes | None,
                                                        bits: int | None) -> None:
    files = dict(HEADERS)
    if autoconf is not None:
        files["./include/generated/autoconf.h"] = autoconf
    path = tmp_path / "kheaders.tar.xz"
    path.write_bytes(headers_archive(files))
    found = pipeline.find(path)
    assert found.platform is None
    assert pipeline.platform_of(found) == Platform("x86", "little", bits, "the archive's arch/ and autoconf.h")


_SMALL = compress("gzip", b"kernel " * 200)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.binary(max_size=0x40), st.integers(0, 0x80))
def test_fuzzed_zimage_headers_never_raise_raw_exceptions(start: int, end: int, junk: bytes, cut: int) -> None:
    """Whatever the start/end words say (or however the file is cut), a payload or a clean error."""
    image = bytearray(zimage(_SMALL))
    struct.pack_into("<II", image, 0x28, start, end)
    data = bytes(image[: len(image) - cut]) + junk
    try:
        layers, chunks = armzimage.payload_chunks(data, "zImage")
    except NotFound:
        return
    assert 0x40 <= layers[0].offset < len(data)
    with contextlib.suppress(Damaged):
        b"".join(chunks)
    platform_found = arch.from_image(data)
    assert platform_found is not None and platform_found.arch == "arm"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=0x100), st.integers(0, 0x200))
def test_fuzzed_s390_images_never_raise_raw_exceptions(junk: bytes, cut: int) -> None:
    image = s390_bzimage(_SMALL)
    data = image[: len(image) - cut] + junk
    try:
        layers, chunks = s390.payload_chunks(data, "bzImage")
    except NotFound:
        return
    assert layers[0].offset > s390.EP_OFFSET
    with contextlib.suppress(Damaged):
        b"".join(chunks)
