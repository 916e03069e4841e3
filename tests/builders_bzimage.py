"""Fake x86 bzImages: a boot-protocol setup area, a stub, and a payload compressed by the real
command-line tools the way kbuild does it (scripts/Makefile.lib cmd_gzip and cmd_*_with_size,
used by arch/x86/boot/compressed/Makefile), then some more stub."""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from extract_ikheaders import compression

# kbuild's commands; xz and zstd use a smaller window than the kernel's so tests stay quick.
COMMANDS: dict[str, tuple[str, ...]] = {
    "gzip": ("gzip", "-n", "-f", "-9"),  # no size appended: gzip's ISIZE trailer is the size
    "bzip2": ("bzip2", "-9"),
    "lzma": ("lzma", "-9"),
    "xz": ("xz", "--check=crc32", "--threads=1", "--x86", "--lzma2=dict=8MiB"),  # scripts/xz_wrap.sh
    "lzo": ("lzop", "-9"),
    "lz4": ("lz4", "-l", "-9", "-", "-"),
    "zstd": ("zstd", "-19", "-q"),  # kbuild: -22 --ultra
}
CODECS = tuple(COMMANDS)
MARKER = b"--kernel-headers-marker--"

SECTOR_SIZE = 512
PROTOCOL_2_15 = 0x020F
# Decoy magics like the ones a real decompressor stub holds in its code and tables.
DECOY_STUB = (b"\x90" * 0x100 + b"\xfd7zXZ\x00\x00\x00junk" + b"\xcc" * 0x40 + b"\x28\xb5\x2f\xfd\x00\x00\x00"
              + b"BZh9 is not bzip2" + b"\x5d\x00\x00\x00\x03\x00" + b"\x89LZO\x00\r\n\x1a\n\x10" + b"\x90" * 0x100)
TAIL_STUB = b"\xc3" * 0x300


def tool_missing(codec: str) -> str | None:
    """Why `codec` cannot be built here, or None."""
    tool = COMMANDS[codec][0]
    return None if shutil.which(tool) else f"{tool} not installed (needed to build {codec} payloads)"


def require(*codecs: str) -> None:
    """Skip the calling test, with the reason, unless every codec's tool is installed."""
    for codec in codecs:
        reason = tool_missing(codec)
        if reason:
            pytest.skip(reason)


_compressed: dict[tuple[str, str], bytes] = {}


def compress(codec: str, data: bytes, *, size_trailer: bool = True) -> bytes:
    """`data` compressed by the codec's command-line tool, plus kbuild's 4-byte LE size trailer."""
    key = (codec, hashlib.sha256(data).hexdigest())
    if key not in _compressed:
        _compressed[key] = subprocess.run(COMMANDS[codec], input=data, capture_output=True, check=True).stdout
    out = _compressed[key]
    if size_trailer and codec != "gzip":
        out += struct.pack("<I", len(data))
    return out


def kernel_like(size: int = 2 << 20, seed: int = 0) -> bytes:
    """Semi-random bytes with MARKER in the middle: text-like runs (compressible) and noise."""
    rnd = random.Random(seed)
    words = [bytes(rnd.randrange(0x61, 0x7B) for _ in range(rnd.randrange(2, 10))) for _ in range(2000)]
    parts: list[bytes] = []
    length = 0
    while length < size:
        part = rnd.randbytes(4096) if rnd.random() < 0.1 else b" ".join(rnd.choices(words, k=700))
        parts.append(part)
        length += len(part)
    body = b"".join(parts)[:size]
    middle = size // 2
    return body[:middle] + MARKER + body[middle + len(MARKER) :]


@dataclass(frozen=True)
class FakeBzImage:
    image: bytes
    payload_start: int
    payload_length: int

    @property
    def payload_end(self) -> int:
        return self.payload_start + self.payload_length


def bzimage(payload: bytes, *, setup_sects: int = 4, version: int = PROTOCOL_2_15, stub: bytes = DECOY_STUB,
            tail: bytes = TAIL_STUB) -> FakeBzImage:
    """A bzImage whose header points at `payload` (already compressed, trailer included)."""
    setup = bytearray((setup_sects or 4) * SECTOR_SIZE + SECTOR_SIZE)
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200:0x202] = b"\xeb\x66"  # jmp over the header, as header.S does
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    struct.pack_into("<II", setup, 0x248, len(stub), len(payload))
    image = bytes(setup) + stub + payload + tail
    return FakeBzImage(image, len(setup) + len(stub), len(payload))


def with_bytes(image: bytes, offset: int, new: bytes) -> bytes:
    """`image` with `new` written at `offset`."""
    return image[:offset] + new + image[offset + len(new) :]


# lzop files built by hand -------------------------------------------------------------------------


def lzop_file(blocks: list[bytes], *, flags: int = compression.LZOP_F_ADLER32_D, extra: bytes | None = None,
              header_crc32: bool = False, stored: bool = False, packed: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """An lzop file (format of lzop 1.04, version 0x1040) holding `blocks`, built by hand; `packed`
    adds blocks given as (declared size, LZO data) as they are (checksums only of the LZO data)."""
    import lzokay

    if extra is not None:
        flags |= compression.LZOP_F_H_EXTRA_FIELD
    if header_crc32:
        flags |= compression.LZOP_F_H_CRC32
    body = struct.pack(">HHHBBI", 0x1040, 0x20A0, 0x0940, 3, 9, flags) + struct.pack(">III", 0o100644, 0, 0)
    body += b"\x04name"
    checksum = zlib.crc32 if header_crc32 else zlib.adler32
    out = compression.MAGICS["lzo"] + body + struct.pack(">I", checksum(body))
    if extra is not None:
        field = struct.pack(">I", len(extra)) + extra
        out += field + struct.pack(">I", checksum(field))
    for block in blocks:
        data = block if stored else lzokay.compress(block)
        if len(data) >= len(block):
            data = block
        out += struct.pack(">II", len(block), len(data)) + _lzop_sums(flags, block, data) + data
    for size, data in packed:
        out += struct.pack(">II", size, len(data)) + data
    return out + struct.pack(">I", 0)


def _lzop_sums(flags: int, block: bytes, packed: bytes) -> bytes:
    sums = b""
    for flag, algorithm, data in ((compression.LZOP_F_ADLER32_D, zlib.adler32, block),
                                  (compression.LZOP_F_CRC32_D, zlib.crc32, block),
                                  (compression.LZOP_F_ADLER32_C, zlib.adler32, packed),
                                  (compression.LZOP_F_CRC32_C, zlib.crc32, packed)):
        compressed_sum = flag in (compression.LZOP_F_ADLER32_C, compression.LZOP_F_CRC32_C)
        if flags & flag and not (compressed_sum and packed is block):
            sums += struct.pack(">I", algorithm(data))
    return sums
