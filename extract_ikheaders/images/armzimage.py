"""32-bit ARM zImage: a position-independent decompressor followed by the compressed kernel.

arch/arm/boot/compressed/head.S puts a small table at 0x24 (little-endian even in big-endian
images, so boot loaders can read it):

    0x24 u32 0x016f2818 (magic)   0x28 u32 load address   0x2c u32 end address
    0x30 u32 0x04030201 in the kernel's byte order

The compressed kernel (piggy.S, `input_data`..`input_data_end`, the 4-byte uncompressed size
after it) has no pointer in the header, so it is found by scanning for a compressor's magic
whose stream decodes, within the image (a device tree may be appended after the end address).
With KERNEL_XZ the payload is xz with the ARM BCJ filter, which liblzma undoes by itself.
"""

from __future__ import annotations

import struct

from .. import compression
from ..buffer import Buffer
from ..errors import NotFound, NotMine
from ..model import Layer
from .bzimage import scan_payloads
from .peeler import Format, Peeled, streamed

MAGIC = 0x016F2818
TABLE = struct.Struct("<III")  # magic, start, end
TABLE_AT = 0x24
HEADER_END = 0x40


def is_zimage(data: Buffer) -> bool:
    raw = bytes(data[TABLE_AT : TABLE_AT + 4])
    return len(raw) == 4 and int.from_bytes(raw, "little") == MAGIC


def payload_chunks(data: Buffer, path: str) -> tuple[tuple[Layer, ...], compression.Stream]:
    """The zImage layer and a lazy stream of the decompressed kernel (Image); close it to stop early.

    Raises NotMine for anything that is not a zImage, NotFound when no payload decodes.
    """
    if not is_zimage(data):
        raise NotMine(f"not an ARM zImage (no 0x016f2818 at {TABLE_AT:#x})", path=path)
    if len(data) < HEADER_END:
        raise NotFound(f"ARM zImage cut short inside its header ({len(data)} bytes)", path=path)
    _, start, end = TABLE.unpack_from(data, TABLE_AT)
    size = end - start
    limit = size if HEADER_END < size <= len(data) else len(data)
    for payload in scan_payloads(data, HEADER_END, "ARM zImage"):
        if payload.offset >= limit:
            break
        appended = f", {len(data) - limit} bytes appended (a device tree?)" if limit < len(data) else ""
        layer = Layer("ARM zImage", payload.offset, limit - payload.offset,
                      f"{payload.codec} payload found by scanning, image {limit:#x} bytes{appended}")
        return (layer,), payload.chunks(data)
    raise NotFound("ARM zImage without a decodable compressed kernel", path=path)


def _peel_layer(data: Buffer, path: str) -> Peeled:
    try:
        return streamed(*payload_chunks(data, path))
    except NotFound as exc:  # the magic without a payload (memory holding a zImage's header): search the bytes
        raise NotMine(exc.reason, path=path) from None


FORMAT = Format("ARM zImage", is_zimage, _peel_layer)
