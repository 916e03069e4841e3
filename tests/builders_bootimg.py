"""Android boot images, EFI zboot images and arm64 Image headers for the tests.

`boot_image` writes header versions 0-4 itself, following AOSP mkbootimg.py (v4 is beyond
Debian's mkbootimg); `mkbootimg` runs Debian's tool (v0-v3, v2 needs a dtb) so the two can be
compared. `zboot` and `arm64_image` write the headers the kernel's own build writes
(drivers/firmware/efi/libstub/zboot-header.S, arch/arm64/kernel/head.S), without a real PE.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

BOOT_MAGIC = b"ANDROID!"
V3_PAGE_SIZE = 4096
HEADER_SIZES = {1: 1648, 2: 1660, 3: 1580, 4: 1584}
DTB = b"\xd0\x0d\xfe\xed" + b"\0" * 60  # only its size matters to a boot image
BASE, KERNEL_OFFSET, RAMDISK_OFFSET, TAGS_OFFSET, DTB_OFFSET = 0x10000000, 0x8000, 0x1000000, 0x100, 0x1F00000


def pad(data: bytes, page: int) -> bytes:
    return data + b"\0" * (-len(data) % page)


def boot_image(kernel: bytes, version: int, *, page_size: int = 2048, ramdisk: bytes = b"\x1f\x8b ramdisk",
               cmdline: str = "console=ttyS0", dtb: bytes = DTB, signature_size: int = 0) -> bytes:
    """A boot image of header `version` (0-4), laid out as mkbootimg does it."""
    if version >= 3:
        header = _header_v3(kernel, ramdisk, cmdline, version, signature_size)
        return b"".join(pad(part, V3_PAGE_SIZE) for part in (header, kernel, ramdisk))
    header = _header_v0(kernel, ramdisk, cmdline, version, page_size, dtb)
    parts = [header, kernel, ramdisk] + ([dtb] if version == 2 else [])
    return b"".join(pad(part, page_size) for part in parts)


def _header_v0(kernel: bytes, ramdisk: bytes, cmdline: str, version: int, page_size: int, dtb: bytes) -> bytes:
    header = BOOT_MAGIC + struct.pack("<10I", len(kernel), BASE + KERNEL_OFFSET, len(ramdisk),
                                      BASE + RAMDISK_OFFSET, 0, 0, BASE + TAGS_OFFSET, page_size, version, 0)
    header += struct.pack("16s512s32s1024s", b"", cmdline.encode()[:512], b"\0" * 32, cmdline.encode()[512:])
    if version >= 1:
        header += struct.pack("<IQI", 0, 0, HEADER_SIZES[version])
    if version == 2:
        header += struct.pack("<IQ", len(dtb), BASE + DTB_OFFSET)
    return header


def _header_v3(kernel: bytes, ramdisk: bytes, cmdline: str, version: int, signature_size: int) -> bytes:
    header = BOOT_MAGIC + struct.pack("<4I4II", len(kernel), len(ramdisk), 0, HEADER_SIZES[version],
                                      0, 0, 0, 0, version)
    header += struct.pack("1536s", cmdline.encode())
    if version == 4:
        header += struct.pack("<I", signature_size)
    return header


def mkbootimg_missing() -> str | None:
    return None if shutil.which("mkbootimg") else "mkbootimg not installed (Debian package mkbootimg)"


def mkbootimg(tmp: Path, kernel: Path, version: int, *, page_size: int = 2048) -> Path:
    """Debian's mkbootimg around `kernel` (versions 0-3)."""
    ramdisk, dtb = tmp / "ramdisk", tmp / "dtb"
    ramdisk.write_bytes(b"\x1f\x8b ramdisk")
    dtb.write_bytes(DTB)
    out = tmp / f"boot-v{version}.img"
    cmd = ["mkbootimg", "--kernel", str(kernel), "--ramdisk", str(ramdisk), "--header_version", str(version),
           "--pagesize", str(page_size), "--cmdline", "console=ttyS0", "-o", str(out)]
    if version == 2:
        cmd += ["--dtb", str(dtb)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


# EFI zboot and arm64 Image ---------------------------------------------------------------------

ZBOOT_PAYLOAD_AT = 0x1000


def zboot(payload: bytes, comp_type: str, *, size_trailer: bool = False, payload_at: int = ZBOOT_PAYLOAD_AT,
          tail: bytes = b"\xc3" * 0x200) -> bytes:
    """A zboot-shaped image: header, filler up to `payload_at`, the payload, some stub after it.

    With `size_trailer`, the payload's last 4 bytes are kbuild's size trailer and the header's
    size leaves them out, as Makefile.zboot does for every codec but gzip."""
    size = len(payload) - (4 if size_trailer else 0)
    header = b"MZ\0\0zimg" + struct.pack("<II", payload_at, size) + b"\0" * 8 + comp_type.encode() + b"\0"
    header = header.ljust(0x3C, b"\0") + struct.pack("<I", 0x40)
    return header.ljust(payload_at, b"\0") + payload + tail


def arm64_image(body: bytes, *, efi_stub: bool = True, flags: int = 0b1010) -> bytes:
    """An arm64 Image: its 64-byte header (text_offset 0, 4K pages, anywhere) then `body`."""
    code0 = b"MZ@\xfa" if efi_stub else b"\x00\x00\x00\x14"
    header = code0 + b"\0\0\0\x14" + struct.pack("<QQQQQQ", 0, 64 + len(body) + 0x10000, flags, 0, 0, 0)
    return header + b"ARM\x64" + struct.pack("<I", 0x40 if efi_stub else 0) + body
