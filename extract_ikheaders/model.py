"""Frozen value objects passed between the pipeline's stages and returned by the API."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Method(enum.StrEnum):
    """How the archive's bounds were found."""

    SYMBOLS = "symbols"  # kernel_headers_data / kernel_headers_data_end (5.2 and later)
    MARKERS = "markers"  # IKHD_ST ... IKHD_ED (the 2019 seed patch)
    CARVE = "carve"  # xz stream whose content is a tar of ./include/ headers
    PAGEWALK = "pagewalk"  # a loaded module's archive read through a crash dump's page tables
    WHOLE = "whole"  # the input is the archive itself (a copy of /sys/kernel/kheaders.tar.xz)


class Check(enum.StrEnum):
    """How much of an archive has been checked."""

    STRUCTURE = "structure"  # the xz container's sizes and CRC32s and the first tar header (--no-verify)
    CONTENT = "content"  # every block decoded and its check (CRC64) verified


@dataclass(frozen=True)
class Layer:
    """One container peeled on the way to the archive: what it was and where it sat in its parent."""

    format: str
    offset: int
    length: int
    detail: str = ""

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length < 0:
            raise ValueError(f"negative span in layer {self.format}: {self.offset:#x}+{self.length:#x}")

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"format": self.format, "offset": self.offset, "length": self.length}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class Platform:
    """The architecture an image is for (the kernel's name: x86, arm, arm64, riscv, s390, powerpc ...),
    its byte order ("little"/"big", None when unknown), word size, and what said so."""

    arch: str
    endian: str | None
    bits: int | None
    source: str

    def as_dict(self) -> dict[str, object]:
        return {"arch": self.arch, "endian": self.endian, "bits": self.bits, "source": self.source}


# uname -m -> (architecture, byte order, bits): kdump headers and arch.py read the same names
UNAME_MACHINES = {"x86_64": ("x86", "little", 64), "i686": ("x86", "little", 32), "i386": ("x86", "little", 32),
                  "aarch64": ("arm64", "little", 64), "aarch64_be": ("arm64", "big", 64),
                  "s390x": ("s390", "big", 64), "ppc64": ("powerpc", "big", 64), "ppc64le": ("powerpc", "little", 64),
                  "ppc": ("powerpc", "big", 32), "riscv64": ("riscv", "little", 64), "riscv32": ("riscv", "little", 32),
                  "loongarch64": ("loongarch", "little", 64)}


def uname_platform(machine: str, source: str) -> Platform | None:
    """The platform `uname -m` names (armv7l, armv7b ... are 32-bit arm of either byte order)."""
    if machine in UNAME_MACHINES:
        arch, endian, bits = UNAME_MACHINES[machine]
        return Platform(arch, endian, bits, source)
    if machine.startswith("arm"):
        return Platform("arm", "big" if machine.endswith("b") else "little", 32, source)
    return None


@dataclass(frozen=True)
class Found:
    """A headers archive located in an input, with the bytes already sliced out."""

    path: str
    method: Method
    offset: int  # offset of the archive in the innermost layer's data
    archive: bytes = field(repr=False)
    layers: tuple[Layer, ...] = ()
    release: str | None = None
    notes: tuple[str, ...] = ()
    banner: str | None = None  # the `Linux version ...` line, when the image has one
    verified: Check | None = None  # what has been checked of the archive (None: nothing yet)
    platform: Platform | None = None  # from the ELF or image headers; None when they say nothing

    @property
    def size(self) -> int:
        return len(self.archive)

    def read_archive(self) -> bytes:
        return self.archive

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.archive).hexdigest()


@dataclass(frozen=True)
class Member:
    """One archive member as listed or unpacked."""

    name: str  # without the leading "./" the kernel's archives store
    size: int
    kind: str  # "file", "dir", "symlink", ...
    stored: str = ""  # the name as the archive stores it, as `tar -t` prints it (a directory ends in "/")


@dataclass(frozen=True)
class Incident:
    """Something unpacking refused or changed, for the CLI to report."""

    member: str
    problem: str
    action: str  # "skipped", "refused", "mode changed"


@dataclass(frozen=True)
class Extracted:
    """Result of unpacking an archive safely."""

    directory: str
    members: int
    bytes_written: int
    incidents: tuple[Incident, ...] = ()
    lost: str | None = None  # salvage: what a damaged archive could not give
    reused: bool = False  # an earlier run's tree of the same archive, left as it was


@dataclass(frozen=True)
class KernelConfig:
    """The kernel's own .config (CONFIG_IKCONFIG), found beside or instead of the headers."""

    path: str
    method: Method
    offset: int  # of the embedded gzip in the innermost layer's data
    text: bytes = field(repr=False)
    layers: tuple[Layer, ...] = ()
