"""A stand-in VMCOREINFO for x86_64 dumps without one, so --isf and drgn read them like a kdump.

QEMU's dump-guest-memory writes VMCOREINFO only when the guest runs with `-device vmcoreinfo`
(and CONFIG_FW_CFG_SYSFS). Without it, the dump itself still gives what readers need:

- every symbol: kallsyms located by its shape (kallsyms.symbols_in_memory), KASLR applied with the
  offset the kernel's own .config gives (x86_64, CONFIG_IKCONFIG) -> KERNELOFFSET, SYMBOL(_stext);
- the page tables: CR3 (and LA57) from QEMU's per-CPU note -> NUMBER(pgtable_l5_enabled);
- NUMBER(phys_base): where those tables map _stext;
- SYMBOL(init_top_pgt) = swapper_pg_dir: the page in the kernel image whose kernel half (entries
  256..511, which every process's top table copies from it) equals CR3's;
- OSRELEASE: the dump header's release, else the kernel image's banner.
"""

from __future__ import annotations

from dataclasses import replace

from ..buffer import Buffer
from ..dumps import pagewalk
from ..dumps.paging import PageTables
from ..dumps.paging_x86_64 import PAGE, START_KERNEL_MAP, qemu_cr3_tables
from ..dumps.physical import PhysicalMemory
from ..dumps.search import banner_release
from ..errors import NotFound
from . import kallsyms as ksyms
from .kallsyms import Kallsyms
from .kernel_globals import IMAGE_SPAN

_HALF = 2048  # the kernel half of a 4 KiB top-level table: entries 256..511


def kallsyms(mem: PhysicalMemory, buf: Buffer, path: str) -> Kallsyms:
    """The dump's kallsyms through VMCOREINFO; without one, located, and `mem` given a stand-in."""

    if mem.info.vmcoreinfo:
        return ksyms.read_memory(mem, path)
    table = ksyms.symbols_in_memory(mem, path, buf)
    if not table.kaslr_known:
        raise NotFound("the dump has no VMCOREINFO and the kernel's KASLR offset is unknown "
                       "(known only for x86_64 kernels with CONFIG_IKCONFIG)", path=path)
    mem.info = replace(mem.info, vmcoreinfo=_vmcoreinfo(mem, buf, table, path))
    return table


def _vmcoreinfo(mem: PhysicalMemory, buf: Buffer, table: Kallsyms, path: str) -> dict[str, str]:
    tops = qemu_cr3_tables(pagewalk.dump_notes(mem, buf))
    if not tops:
        raise NotFound("the dump has neither VMCOREINFO nor a QEMU CPU note (CR3) to find the "
                       "page tables by", path=path)
    stext = table.symbols.address_of("_stext")
    paddr = PageTables(mem, tops[0]).translate(stext) if stext is not None else None
    if stext is None or not isinstance(paddr, int):
        raise NotFound("no VMCOREINFO, and the page tables of QEMU's CR3 do not map _stext", path=path)
    phys_base = paddr - (stext - START_KERNEL_MAP)
    pgd = _init_top_pgt(mem, tops[0].paddr, paddr)
    release = mem.info.release or _release(mem, paddr)
    if pgd is None or release is None:
        missing = "init_top_pgt (no page in the kernel image matches CR3's)" if pgd is None else "a banner"
        raise NotFound(f"no VMCOREINFO, and the kernel image holds no {missing}", path=path)
    swapper = f"{pgd + START_KERNEL_MAP - phys_base:x}"
    return {"OSRELEASE": release, "PAGESIZE": str(PAGE), "SYMBOL(_stext)": f"{stext:x}",
            "SYMBOL(init_top_pgt)": swapper, "SYMBOL(swapper_pg_dir)": swapper,
            "NUMBER(phys_base)": str(phys_base), "KERNELOFFSET": f"{table.kaslr_offset:x}",
            "NUMBER(pgtable_l5_enabled)": "1" if tops[0].levels == 5 else "0"}


def _init_top_pgt(mem: PhysicalMemory, cr3: int, image: int) -> int | None:
    """Physical address of the image's page whose kernel half is CR3's."""
    half = mem.read_some(cr3 + _HALF, _HALF)
    if len(half) < _HALF or not any(half):
        return None
    at = mem.find(half, image, image + IMAGE_SPAN)
    while at != -1 and (at - _HALF) % 4096:
        at = mem.find(half, at + 1, image + IMAGE_SPAN)
    return None if at == -1 else at - _HALF


def _release(mem: PhysicalMemory, image: int) -> str | None:
    banner = banner_release(mem, image, image + IMAGE_SPAN)
    return banner[0] if banner else None


def text(info: dict[str, str]) -> str:
    """VMCOREINFO as the kernel writes it (for drgn)."""
    return "".join(f"{key}={value}\n" for key, value in info.items())
