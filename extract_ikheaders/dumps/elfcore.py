"""ELF cores as physical memory: kdump's /proc/vmcore copy, QEMU dump-guest-memory, makedumpfile -E.

PT_LOAD segments carry physical memory at p_paddr: p_filesz bytes at p_offset; a p_memsz beyond
p_filesz is memory the dump left out (makedumpfile's excluded pages), not zeros. PT_NOTE holds
VMCOREINFO (kdump; QEMU too when the guest registered it through -device vmcoreinfo).
"""

from __future__ import annotations

import bisect
from array import array

from ..buffer import Buffer
from ..elf.reader import ELF_MAGIC, MACHINES, PT_LOAD, CorruptElf, ElfImage, ElfType, SegmentTable
from ..errors import Damaged, NotMine
from ..model import Platform
from .physical import DumpInfo, ExtentTable, Gap, MappedMemory, parse_vmcoreinfo


def open_memory(buf: Buffer) -> MappedMemory:
    """The core's physical memory; NotMine unless `buf` is an ELF ET_CORE."""
    if len(buf) < 64 or bytes(buf[:4]) != ELF_MAGIC:
        raise NotMine("not ELF")
    try:
        elf = ElfImage(buf)
    except CorruptElf:
        raise NotMine("not a usable ELF header") from None  # the caller's raw search may still help
    if elf.type != ElfType.CORE:
        raise NotMine("ELF, but not a core")
    try:
        table = elf.segment_table()
    except CorruptElf as exc:
        raise Damaged(f"the ELF core's program headers are unusable: {exc}") from None
    try:
        notes = elf.notes()
    except CorruptElf:
        notes = ()  # VMCOREINFO is only a hint (search order, release): do without it
    vmcoreinfo = next((parse_vmcoreinfo(n.desc) for n in notes if n.name == "VMCOREINFO"), {})
    loads = _Loads(table, len(buf))
    info = DumpInfo("elf-core", _detail(elf, len(loads), {n.name for n in notes}, vmcoreinfo), vmcoreinfo,
                    platform=_platform(elf))
    return MappedMemory(buf, loads.extents(), info, loads.explain)


def _platform(elf: ElfImage) -> Platform:
    """The dumped machine: a core has the class, byte order and e_machine of the kernel it holds."""
    known = MACHINES.get(elf.machine)
    return Platform(known[1] if known else f"machine {elf.machine}", elf.byte_order, elf.bits, "ELF core header")


def _detail(elf: ElfImage, loads: int, note_names: set[str], vmcoreinfo: dict[str, str]) -> str:
    origin = "QEMU dump-guest-memory, " if "QEMU" in note_names else ""
    extra = "VMCOREINFO" if vmcoreinfo else "no VMCOREINFO"
    return f"{origin}{elf.describe()}, {loads} PT_LOAD, {extra}"


class _Loads:
    """The PT_LOAD segments, in columns sorted by physical address (a core may have a million)."""

    def __init__(self, table: SegmentTable, file_size: int) -> None:
        indices = sorted(table.indices_of(PT_LOAD), key=table.paddr.__getitem__)
        self.paddr, self.offset = array("Q"), array("Q")
        self.filesz, self.memsz = array("Q"), array("Q")
        for i in indices:
            self.paddr.append(table.paddr[i])
            self.offset.append(table.offset[i])
            self.filesz.append(table.filesz[i])
            self.memsz.append(table.memsz[i])
        self._file_size = file_size

    def __len__(self) -> int:
        return len(self.paddr)

    def extents(self) -> ExtentTable:
        extents = ExtentTable()
        for i in range(len(self.paddr)):
            extents.append(self.paddr[i], self._present(i), self.offset[i])
        return extents

    def _present(self, i: int) -> int:
        """Bytes of the segment that are really in the file (a truncated dump ends early)."""
        if self.offset[i] >= self._file_size:
            return 0
        filesz = self.filesz[i]
        return max(0, min(filesz, self.memsz[i] or filesz, self._file_size - self.offset[i]))

    def explain(self, paddr: int) -> Gap:
        """Why a physical address is absent: the message names the segment and the cause."""
        i = bisect.bisect_right(self.paddr, paddr) - 1
        start = self.paddr[i] if i >= 0 else 0
        if i >= 0 and paddr < start + max(self.memsz[i], self.filesz[i]):
            filesz = self.filesz[i]
            if self.offset[i] + filesz > self._file_size and paddr < start + filesz:
                return Gap(paddr, start + filesz,
                           f"the file ends at {self._file_size:#x}, inside the PT_LOAD for "
                           f"{start:#x}-{start + filesz - 1:#x}: the dump is truncated")
            return Gap(paddr, start + self.memsz[i],
                       f"beyond p_filesz of the PT_LOAD at {start:#x}: pages the dump excluded")
        following = self.paddr[i + 1] if i + 1 < len(self.paddr) else None
        return Gap(paddr, following, "no PT_LOAD covers it")
