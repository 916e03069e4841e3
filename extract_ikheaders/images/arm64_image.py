"""EFI zboot images (arm64, riscv, loongarch `vmlinuz.efi`) and plain arm64 `Image` files.

EFI zboot (since 6.1; drivers/firmware/efi/libstub/zboot-header.S and Makefile.zboot) is a PE/COFF
EFI application that carries the compressed `Image` (the payload). Its DOS header says where:

    0x00 "MZ"   0x04 "zimg"   0x08 u32 LE payload offset   0x0C u32 LE payload size
    0x18 compression type, NUL-terminated (6.1: gzip lz4 lzma lzo xzkern zstd22; 6.12: gzip zstd)
    0x3C u32 LE offset of the PE header

kbuild appends the 4-byte uncompressed size to every payload but gzip's, and the size field
leaves it out, so offset + size is the exact end of the compressed stream.

arm64 `Image` (Documentation/arm64/booting.rst) is the uncompressed kernel with a 64-byte header,
magic "ARM\\x64" at 0x38. Built with the EFI stub it starts with "MZ" and is itself a PE file,
but it never has "zimg" at 4.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import compression
from ..buffer import Buffer
from ..errors import Damaged, NotMine
from ..model import Layer
from .peeler import Format, Peeled, streamed

MZ_MAGIC = b"MZ"
ZIMG_MAGIC = b"zimg"
ZIMG = 0x04
PAYLOAD_FIELDS = 0x08  # u32 offset, u32 size
COMP_TYPE = 0x18
COMP_TYPE_END = 0x3C  # the PE header offset follows the compression type (.org 0x3c)
HEADER_END = 0x40

# The compression type string -> codecs' name (Makefile.zboot comp-type-y, 6.1 and 6.12).
COMP_TYPES = {"gzip": "gzip", "lz4": "lz4", "lzma": "lzma", "lzo": "lzo", "xzkern": "xz", "xz": "xz",
              "zstd22": "zstd", "zstd": "zstd", "bzip2": "bzip2"}

ARM64_MAGIC = b"ARM\x64"
ARM64_MAGIC_AT = 0x38
ARM64_HEADER = struct.Struct("<8xQQQ")  # text_offset, image_size, flags
ARM64_FLAG_BE = 1 << 0
ARM64_PAGE_SIZES = ("page size unspecified", "4K pages", "16K pages", "64K pages")
ARM64_FLAG_PHYS_ANYWHERE = 1 << 3

PE_DESCRIBE_MAX = 256 << 20  # larger "zboot" files are not read whole just to describe their PE


@dataclass(frozen=True)
class Payload:
    """The compressed kernel inside an EFI zboot image (the shape of bzimage.Payload)."""

    layer: Layer
    codec: str
    offset: int
    end: int  # exclusive end of the compressed stream (the size trailer excluded)

    def chunks(self, data: Buffer) -> compression.Stream:
        return compression.decode_stream(self.codec, data, self.offset, end=self.end)


# EFI zboot -------------------------------------------------------------------------------------


def is_zboot(data: Buffer) -> bool:
    return bytes(data[:2]) == MZ_MAGIC and bytes(data[ZIMG : ZIMG + 4]) == ZIMG_MAGIC


def peel(data: Buffer, path: str) -> Payload:
    """The payload the zboot header points at.

    Raises NotMine for anything else, Damaged when the header is truncated or points outside
    the file or at something that is not a known compressed stream.
    """
    if not is_zboot(data):
        raise NotMine("not an EFI zboot image (no MZ/zimg header)", path=path)
    if len(data) < HEADER_END:
        raise Damaged(f"EFI zboot header is truncated ({len(data)} of {HEADER_END} bytes)",
                      offset=len(data), path=path)
    start, size = struct.unpack_from("<II", data, PAYLOAD_FIELDS)
    _check_span(data, path, start, size)
    declared = _comp_type(data)
    codec = compression.identify(data, start)
    if codec is None:
        raise Damaged(f"EFI zboot payload at {start:#x} is not a known compressed stream "
                      f"(header says {declared!r})", offset=start, path=path)
    detail = f"{_payload_detail(declared, codec)}, {describe_pe(data, start, start + size)}"
    return Payload(Layer("EFI zboot", start, size, detail), codec, start, start + size)


def payload_chunks(data: Buffer, path: str) -> tuple[tuple[Layer, ...], compression.Stream]:
    """The zboot layer and a lazy stream of the decompressed Image; close it to stop early."""
    payload = peel(data, path)
    return (payload.layer,), payload.chunks(data)


def _check_span(data: Buffer, path: str, start: int, size: int) -> None:
    if size == 0:
        raise Damaged("EFI zboot header declares an empty payload", offset=PAYLOAD_FIELDS, path=path)
    if start < HEADER_END or start >= len(data):
        raise Damaged(f"EFI zboot payload offset {start:#x} is outside the file "
                      f"({len(data):#x} bytes)", offset=PAYLOAD_FIELDS, path=path)
    if start + size > len(data):
        raise Damaged(f"EFI zboot payload {start:#x}+{size:#x} runs past the end of the file "
                      f"({len(data):#x} bytes): truncated?", offset=len(data), path=path)


def _comp_type(data: Buffer) -> str:
    """The compression type string (printable ASCII up to its NUL), '' if absent or garbled."""
    raw = bytes(data[COMP_TYPE:COMP_TYPE_END]).split(b"\0", 1)[0]
    text = raw.decode("ascii", errors="replace")
    return text if raw.isascii() and text.isprintable() else ""


def _payload_detail(declared: str, codec: str) -> str:
    expected = COMP_TYPES.get(declared)
    if expected == codec:
        return f"{declared} payload"
    if expected is None:
        return f"{codec} payload (unknown compression type {declared!r} in the header)"
    return f"{codec} payload (the header says {declared!r})"


def describe_pe(data: Buffer, start: int, end: int) -> str:
    """The PE machine and sections (read with lief), and which section holds data[start:end]."""
    if len(data) > PE_DESCRIBE_MAX:
        return "PE not examined (file too large)"
    import lief  # costs ~0.35 s: only images that need it pay

    with lief.logging.level_scope(lief.logging.LEVEL.OFF):
        binary = lief.PE.parse(bytes(data))
    if binary is None:
        return "PE headers unreadable"
    sections = [(str(s.name), int(s.offset), int(s.sizeof_raw_data)) for s in binary.sections]
    machine = _pe_machine(binary.header)
    holder = next((name for name, off, size in sections if off <= start and end <= off + size), None)
    where = f"payload in {holder}" if holder else "payload outside every PE section"
    return f"PE {machine}, sections {' '.join(n for n, _, _ in sections) or '(none)'}, {where}"


def _pe_machine(header: object) -> str:
    """lief's name for the machine; lief releases that predate a machine (RISCV64 0x5064 in some)
    warn and hand back the bare number instead of an enum member."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        machine = getattr(header, "machine", None)
    name = getattr(machine, "name", None)
    if isinstance(name, str):
        return name
    return f"machine {int(machine):#x}" if isinstance(machine, int) else "machine unknown"


# arm64 Image -----------------------------------------------------------------------------------


def is_arm64_image(data: Buffer) -> bool:
    return bytes(data[ARM64_MAGIC_AT : ARM64_MAGIC_AT + 4]) == ARM64_MAGIC and not is_zboot(data)


def arm64_image_layer(data: Buffer, path: str) -> Layer:
    """A Layer describing an uncompressed arm64 Image (the archive is then carved from it).

    Raises NotMine for anything else (a zboot image included).
    """
    if not is_arm64_image(data):
        raise NotMine(f"not an arm64 Image (no ARM\\x64 magic at {ARM64_MAGIC_AT:#x})", path=path)
    return Layer("arm64 Image", 0, len(data), _arm64_detail(data))


def _arm64_detail(data: Buffer) -> str:
    text_offset, image_size, flags = ARM64_HEADER.unpack_from(bytes(data[: ARM64_HEADER.size]))
    if image_size == 0:  # before v3.17: no flags, text_offset in the kernel's endianness
        parts = ["pre-3.17 header (image_size 0)"]
    else:
        parts = [f"text_offset {text_offset:#x}", f"image_size {image_size:#x}",
                 "big-endian" if flags & ARM64_FLAG_BE else "little-endian",
                 ARM64_PAGE_SIZES[flags >> 1 & 3]]
        if flags & ARM64_FLAG_PHYS_ANYWHERE:
            parts.append("placeable anywhere")
    if bytes(data[:2]) == MZ_MAGIC:
        parts.append("EFI stub")
    return ", ".join(parts)


# riscv Image --------------------------------------------------------------------------------------

RISCV_MAGIC = b"RISCV\0\0\0"  # at 0x30 (deprecated, still written)
RISCV_MAGIC2 = b"RSC\x05"  # at 0x38
RISCV_HEADER = struct.Struct("<8xQQQI")  # text_offset, image_size, flags, version


def is_riscv_image(data: Buffer) -> bool:
    """A riscv Image (Documentation/riscv/boot-image-header.rst); with the EFI stub it is a PE file."""
    return (bytes(data[0x30:0x38]) == RISCV_MAGIC or bytes(data[0x38:0x3C]) == RISCV_MAGIC2) and not is_zboot(data)


def riscv_image_layer(data: Buffer) -> Layer:
    text_offset, image_size, _, version = RISCV_HEADER.unpack_from(bytes(data[: RISCV_HEADER.size]))
    parts = [f"text_offset {text_offset:#x}", f"image_size {image_size:#x}",
             f"header version {version >> 16}.{version & 0xFFFF}"]
    if bytes(data[:2]) == MZ_MAGIC:
        parts.append("EFI stub")
    return Layer("riscv Image", 0, len(data), ", ".join(parts))


# The three formats this module reads, for images/registry.py ------------------------------------


def _peel_zboot(data: Buffer, path: str) -> Peeled:
    return streamed(*payload_chunks(data, path))


def _peel_arm64(data: Buffer, path: str) -> Peeled:
    return Peeled((arm64_image_layer(data, path),), data=data)


def _peel_riscv(data: Buffer, path: str) -> Peeled:
    return Peeled((riscv_image_layer(data),), data=data)


ZBOOT = Format("EFI zboot", is_zboot, _peel_zboot)
ARM64 = Format("arm64 Image", is_arm64_image, _peel_arm64)
RISCV = Format("riscv Image", is_riscv_image, _peel_riscv)
