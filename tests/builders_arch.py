"""Boot images of other architectures, built small: ARM zImage, s390 bzImage, riscv Image."""

from __future__ import annotations

import struct
import subprocess

from builders_bzimage import DECOY_STUB

from extract_ikheaders.images import arm64_image, armzimage, s390

DTB = b"\xd0\x0d\xfe\xed" + b"\x00" * 60  # a device tree appended after the zImage's end


def xz_arm(data: bytes) -> bytes:
    """scripts/xz_wrap.sh for ARCH=arm: xz with the ARM BCJ filter, then kbuild's size trailer."""
    out = subprocess.run(["xz", "--check=crc32", "--arm", "--lzma2=dict=8MiB"], input=data, capture_output=True,
                         check=True).stdout
    return out + struct.pack("<I", len(data))


def zimage(payload: bytes, *, big_endian: bool = False, appended: bytes = DTB) -> bytes:
    head = bytearray(b"\x00\x00\xa0\xe1" * 16)  # mov r0, r0 (the 'nop' sled head.S starts with)
    size = 0x40 + len(DECOY_STUB) + len(payload)
    struct.pack_into("<III", head, 0x24, armzimage.MAGIC, 0, size)
    head[0x30:0x34] = struct.pack(">I" if big_endian else "<I", 0x04030201)
    return bytes(head) + DECOY_STUB + payload + appended


def s390_bzimage(payload: bytes) -> bytes:
    head = bytearray(0x10100)
    head[s390.EP_OFFSET : s390.EP_OFFSET + 6] = s390.EP_STRING
    return bytes(head) + DECOY_STUB + payload + b"\x07" * 0x200




def riscv_image(body: bytes) -> bytes:
    """A riscv Image: its 64-byte header (text_offset 0x200000, header version 0.2) then `body`."""
    head = bytearray(0x40)
    struct.pack_into("<QQQI", head, 0x08, 0x200000, 0x1000000, 0, 0x2)
    head[0x30:0x38] = arm64_image.RISCV_MAGIC
    head[0x38:0x3C] = arm64_image.RISCV_MAGIC2
    return bytes(head) + body
