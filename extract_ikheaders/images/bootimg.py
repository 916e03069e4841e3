"""Android boot images (`boot.img`, magic "ANDROID!"), header versions 0 to 4.

Layouts from AOSP system/tools/mkbootimg (include/bootimg/bootimg.h, mkbootimg.py). All fields
are u32 little-endian; what every version shares:

    0 "ANDROID!"   8 kernel_size   40 header_version (v0: "unused", zero)

v0-v2: 36 page_size; the header occupies one page and the kernel starts at page_size.
    v1/v2 add header_size at 1644 (1648 and 1660 bytes).
v3/v4: pages are always 4096 bytes; the kernel starts at 4096. 20 header_size (1580, 1584;
    older mkbootimg wrote 1596 for v3). v4 appends signature_size.

The kernel inside may be anything the pipeline knows (bzImage, Image, Image.gz, zboot, ...): this
module only says where it lies.
"""

from __future__ import annotations

import struct

from ..buffer import Buffer
from ..errors import Damaged, NotFound, NotMine
from ..model import Layer
from .peeler import Format, Peeled

BOOT_MAGIC = b"ANDROID!"
KERNEL_SIZE = 8
PAGE_SIZE = 36
HEADER_VERSION = 40
COMMON_END = HEADER_VERSION + 4
V3_PAGE_SIZE = 4096
V3_HEADER_SIZE = 20
V1_HEADER_SIZE = 1644
FIXED_SIZES = {0: 1632, 1: 1648, 2: 1660, 3: 1580, 4: 1584}  # sizeof(boot_img_hdr_vN)
PAGE_SIZE_MIN = 2048  # mkbootimg offers 2048 to 16384
PAGE_SIZE_MAX = 1 << 16
LAYER_FORMAT = "android boot.img"


def is_boot_image(data: Buffer) -> bool:
    return bytes(data[: len(BOOT_MAGIC)]) == BOOT_MAGIC


def peel(data: Buffer, path: str) -> Layer:
    """Where the kernel lies: Layer(LAYER_FORMAT, offset, length, detail).

    Raises NotMine without the magic, Damaged for a truncated header, an impossible page size or
    a kernel running past the end of the file, NotFound for an unsupported header version or an
    image without a kernel (e.g. an init_boot image).
    """
    if not is_boot_image(data):
        raise NotMine("not an Android boot image (no ANDROID! magic)", path=path)
    version = _header_version(data, path)
    page = _page_size(data, path, version)
    kernel_size = _u32(data, KERNEL_SIZE)
    if kernel_size == 0:
        raise NotFound(f"Android boot image (header v{version}) without a kernel", path=path)
    end = page + kernel_size
    if end > len(data):
        raise Damaged(f"Android boot image kernel {page:#x}+{kernel_size:#x} runs past the end "
                      f"of the file ({len(data):#x} bytes): truncated?", offset=len(data), path=path)
    if bytes(data[page : page + len(BOOT_MAGIC)]) == BOOT_MAGIC:
        raise NotFound("the Android boot image's kernel is another boot image", path=path)
    detail = f"header v{version}, page size {page}, kernel {kernel_size} bytes{_header_size_note(data, version)}"
    return Layer(LAYER_FORMAT, page, kernel_size, detail)


def _header_version(data: Buffer, path: str) -> int:
    if len(data) < COMMON_END:
        raise Damaged(f"Android boot image header is truncated ({len(data)} bytes)", offset=len(data), path=path)
    version = _u32(data, HEADER_VERSION)
    fixed = FIXED_SIZES.get(version)
    if fixed is None:
        raise NotFound(f"Android boot image header version {version} is not supported "
                       f"(versions 0-{max(FIXED_SIZES)} are)", path=path)
    if len(data) < fixed:
        raise Damaged(f"Android boot image header v{version} is truncated "
                      f"({len(data)} of {fixed} bytes)", offset=len(data), path=path)
    return version


def _page_size(data: Buffer, path: str, version: int) -> int:
    if version >= 3:
        return V3_PAGE_SIZE
    page = _u32(data, PAGE_SIZE)
    if not PAGE_SIZE_MIN <= page <= PAGE_SIZE_MAX or page & (page - 1):
        raise Damaged(f"Android boot image page size {page} is impossible "
                      f"(a power of two from {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX})", offset=PAGE_SIZE, path=path)
    return page


def _header_size_note(data: Buffer, version: int) -> str:
    """header_size is informational (the kernel's place does not depend on it): only note oddities."""
    if version == 0:
        return ""
    size = _u32(data, V1_HEADER_SIZE if version < 3 else V3_HEADER_SIZE)
    page = V3_PAGE_SIZE if version >= 3 else _u32(data, PAGE_SIZE)
    if FIXED_SIZES[version] <= size <= page:
        return ""
    return f" (implausible header_size {size})"


def _u32(data: Buffer, offset: int) -> int:
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _peel_layer(data: Buffer, path: str) -> Peeled:
    layer = peel(data, path)
    return Peeled((layer,), data=bytes(data[layer.offset : layer.offset + layer.length]), again=True)


FORMAT = Format(LAYER_FORMAT, is_boot_image, _peel_layer)
