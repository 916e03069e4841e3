"""x86 bzImage: the boot protocol header says where the compressed kernel (the payload) lies.

Boot protocol: Documentation/arch/x86/boot.rst. Since protocol 2.08 the header holds
payload_offset (from the start of the protected-mode code, which follows the setup sectors)
and payload_length; kbuild appends the 4-byte uncompressed size to the compressed stream
(arch/x86/boot/compressed/Makefile, `*_with_size`), and payload_length includes it.

When the header is unusable (older protocol, damaged fields, a length running past the end of
a truncated file) the payload is found the way scripts/extract-ikconfig does it, by scanning for
compressor magics, except that every hit's header is checked and its first KiB decoded before
it is believed, so false hits cost almost nothing.
"""

from __future__ import annotations

import heapq
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .. import compression, imagetext
from ..archive import xzstream
from ..buffer import Buffer
from ..errors import Damaged, NotFound, NotMine, ParserSignal
from ..model import Layer
from .peeler import Format, Peeled, streamed

SECTOR_SIZE = 512
SETUP_SECTS = 0x1F1  # u8; 0 means 4 (very old kernels)
SETUP_SECTS_DEFAULT = 4
BOOT_FLAG = 0x1FE  # u16 0xAA55
BOOT_FLAG_MAGIC = 0xAA55
HEADER = 0x202  # "HdrS"
HEADER_MAGIC = b"HdrS"
VERSION = 0x206  # u16, major << 8 | minor
PAYLOAD_OFFSET = 0x248  # u32, protocol 2.08+
PAYLOAD_LENGTH = 0x24C  # u32, protocol 2.08+
PAYLOAD_FIELDS_VERSION = 0x0208
HEADER_END = PAYLOAD_LENGTH + 4

SIZE_TRAILER = 4
PROBE_CHUNK = 4 << 10  # a scan hit must decode its first few KiB


@dataclass(frozen=True)
class Payload:
    """The compressed kernel inside a bzImage."""

    layer: Layer
    codec: str
    offset: int
    end: int | None  # exclusive end including the size trailer; None when found by scanning

    def chunks(self, data: Buffer) -> compression.Stream:
        return compression.decode_stream(self.codec, data, self.offset, end=self.end)


class _HeaderUnusable(ParserSignal):
    """The boot header cannot locate the payload; the message says why."""


def is_bzimage(data: Buffer) -> bool:
    """The boot sector flag or the setup header magic; either survives if the other is damaged."""
    return _u16(data, BOOT_FLAG) == BOOT_FLAG_MAGIC or bytes(data[HEADER : HEADER + 4]) == HEADER_MAGIC


KERNEL_VERSION = 0x20E  # u16: the kernel_version string's offset, less 0x200 (boot protocol 2.00+)
KERNEL_VERSION_MAX = 256


def kernel_version(data: Buffer) -> str | None:
    """The release from the setup header's kernel_version string ("6.1.0-13-amd64 (debian-kernel@...)
    #1 SMP ..."): every x86 bzImage has it, with or without headers inside."""
    if bytes(data[HEADER : HEADER + 4]) != HEADER_MAGIC or (_u16(data, VERSION) or 0) < 0x0200:
        return None
    pointer = _u16(data, KERNEL_VERSION)
    if not pointer:
        return None
    raw = bytes(data[pointer + 0x200 : pointer + 0x200 + KERNEL_VERSION_MAX]).split(b"\0", 1)[0]
    release = raw.split(b" ", 1)[0]
    return imagetext.decode(release) if re.fullmatch(rb"\d+\.\d+[!-~]*", release) else None


def peel(data: Buffer, path: str) -> Payload:
    """The payload located by the boot header, or else by scanning.

    Raises NotMine for anything that is not a bzImage, NotFound when no payload can be found.
    """
    if not is_bzimage(data):
        raise NotMine("not a bzImage (no boot flag, no HdrS header)", path=path)
    try:
        return _payload_from_header(data)
    except _HeaderUnusable as exc:
        reason = str(exc)
    for payload in scan_payloads(data):
        layer = replace(payload.layer, detail=f"payload found by scanning ({reason}), {payload.codec}")
        return replace(payload, layer=layer)
    raise NotFound(f"bzImage without a decodable compressed kernel ({reason})", path=path)


def payload_chunks(data: Buffer, path: str) -> tuple[tuple[Layer, ...], compression.Stream]:
    """The bzImage layer and a lazy stream of the decompressed kernel; close it to stop early."""
    payload = peel(data, path)
    return (payload.layer,), payload.chunks(data)


def _payload_from_header(data: Buffer) -> Payload:
    if bytes(data[HEADER : HEADER + 4]) != HEADER_MAGIC:
        raise _HeaderUnusable("no HdrS setup header")
    if len(data) < HEADER_END:
        raise _HeaderUnusable("file ends inside the setup header")
    version: int = struct.unpack_from("<H", data, VERSION)[0]
    if version < PAYLOAD_FIELDS_VERSION:
        raise _HeaderUnusable(f"boot protocol {_version(version)} has no payload fields")
    setup_sects = data[SETUP_SECTS] or SETUP_SECTS_DEFAULT
    payload_offset, payload_length = struct.unpack_from("<II", data, PAYLOAD_OFFSET)
    start = (setup_sects + 1) * SECTOR_SIZE + payload_offset
    end = start + payload_length
    if payload_length <= SIZE_TRAILER:
        raise _HeaderUnusable(f"payload_length {payload_length} is too small")
    if end > len(data):
        raise _HeaderUnusable(f"payload {start:#x}+{payload_length:#x} does not fit in the file ({len(data):#x} bytes)")
    codec = compression.identify(data, start)
    if codec is None:
        raise _HeaderUnusable(f"no known compressor at payload offset {start:#x}")
    layer = Layer("bzImage", start, payload_length, f"boot protocol {_version(version)}, {codec}")
    return Payload(layer, codec, start, end)


def scan_payloads(data: Buffer, start: int = 0, fmt: str = "bzImage") -> Iterator[Payload]:
    """Every compressed stream in data[start:], in file order, whose header is valid and whose
    first few KiB decode. Their ends are unknown: each layer runs to the end of the file.
    `fmt` names the container in the layers (other architectures' self-decompressing images
    keep their payload the same way, without a header that points at it)."""
    for offset, codec in _magic_hits(data, start):
        if codec == "xz" and xzstream.looks_like_headers(data, offset):
            continue  # the headers archive itself (memory holding a decompressed kernel), never a payload
        if compression.identify(data, offset) == codec and _decodes(codec, data, offset):
            layer = Layer(fmt, offset, len(data) - offset, f"payload found by scanning, {codec}")
            yield Payload(layer, codec, offset, None)


def _magic_hits(data: Buffer, start: int) -> Iterator[tuple[int, str]]:
    """(offset, codec) of every codec magic in data[start:], in file order."""
    hits = [(pos, name) for name, magic in compression.MAGICS.items() if (pos := data.find(magic, start)) != -1]
    heapq.heapify(hits)
    while hits:
        pos, name = heapq.heappop(hits)
        yield pos, name
        following = data.find(compression.MAGICS[name], pos + 1)
        if following != -1:
            heapq.heappush(hits, (following, name))


def _decodes(codec: str, data: Buffer, offset: int) -> bool:
    """Whether the stream at `offset` yields its first piece (a cheap trial), or decodes without
    error until the file ends: a truncated payload is still the payload, and decoding it will
    report the damage."""
    stream = compression.decode_stream(codec, data, offset, chunk=PROBE_CHUNK)
    try:
        return next(stream, b"") != b""
    except Damaged as exc:
        return exc.offset == len(data)
    finally:
        stream.close()


def _u16(data: Buffer, offset: int) -> int | None:
    raw = bytes(data[offset : offset + 2])
    return int.from_bytes(raw, "little") if len(raw) == 2 else None


def _version(version: int) -> str:
    return f"{version >> 8}.{version & 0xFF:02d}"


def _peel_layer(data: Buffer, path: str) -> Peeled:
    try:
        payload = peel(data, path)
    except NotFound as exc:  # a boot sector without a kernel payload (a disk or memory image): search the bytes
        raise NotMine(exc.reason, path=path) from None
    return streamed((payload.layer,), payload.chunks(data))


FORMAT = Format("bzImage", is_bzimage, _peel_layer)
