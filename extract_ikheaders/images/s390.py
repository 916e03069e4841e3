"""s390 bzImage: the IPL-able decompressor (arch/s390/boot) with the compressed kernel inside.

head.S starts with the IPL PSW and CCWs and puts the string "S390EP" at 0x10008 (the entry
point marker kexec and zipl look for). The compressed vmlinux.bin sits in .rodata.compressed
between `_compressed_start` and `_compressed_end`, symbols that the flat binary no longer has, so
it is found by scanning for a compressor's magic whose stream decodes (the same scan as a
bzImage with an unusable header). Every codec but gzip has the 4-byte uncompressed size after it.
"""

from __future__ import annotations

from .. import compression
from ..buffer import Buffer
from ..errors import NotFound, NotMine
from ..model import Layer
from .bzimage import scan_payloads
from .peeler import Format, Peeled, streamed

EP_OFFSET = 0x10008
EP_STRING = b"S390EP"


def is_s390_bzimage(data: Buffer) -> bool:
    return bytes(data[EP_OFFSET : EP_OFFSET + len(EP_STRING)]) == EP_STRING


def payload_chunks(data: Buffer, path: str) -> tuple[tuple[Layer, ...], compression.Stream]:
    """The s390 bzImage layer and a lazy stream of the decompressed kernel; close it to stop early.

    Raises NotMine for anything else, NotFound when no payload decodes.
    """
    if not is_s390_bzimage(data):
        raise NotMine(f"not an s390 bzImage (no {EP_STRING.decode()} at {EP_OFFSET:#x})", path=path)
    for payload in scan_payloads(data, EP_OFFSET + len(EP_STRING), "s390 bzImage"):
        return (payload.layer,), payload.chunks(data)
    raise NotFound("s390 bzImage without a decodable compressed kernel", path=path)


def _peel_layer(data: Buffer, path: str) -> Peeled:
    try:
        return streamed(*payload_chunks(data, path))
    except NotFound as exc:  # the entry string without a payload (memory): search the bytes
        raise NotMine(exc.reason, path=path) from None


FORMAT = Format("s390 bzImage", is_s390_bzimage, _peel_layer)
