"""The kernel's well-known globals a crash dump's kallsyms lacks: one source for --isf and drgn.

Without CONFIG_KALLSYMS_ALL (tinyconfig and many embedded kernels) kallsyms lists functions only.
`well_known` gives each missing global's address and where it came from: VMCOREINFO's SYMBOL()
entries, else the kernel image (physically contiguous, mapped linearly), found by what its static
initializer makes unmistakable, using member offsets from the types object:

- init_task: a task named "swapper" or "swapper/0" whose real_parent is itself (INIT_TASK);
- init_files, init_fs, init_cred, init_user_ns, init_nsproxy, init_uts_ns, init_ipc_ns, init_net,
  init_struct_pid, init_pid_ns: init_task's own pointers (INIT_TASK and the init_* initializers set
  them, the idle task never changes them);
- init_mm: the mm_struct whose pgd is swapper_pg_dir and whose mmlist points at itself;
- modules: a list_head near init_task whose entries (module space, read through the page tables,
  x86_64) are struct modules linked back to it; an empty list cannot be recognised;
- linux_banner: the last "Linux version <release> ..." in the image ending in init_uts_ns's version,
  a newline and a NUL (init/version.c compiles a second, weak banner, the same text when the build
  pins its version and time; the log's copies have no newline).

Addresses are the running kernel's (KASLR applied), like kallsyms'.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..dumps import pagewalk
from ..dumps.paging import Miss, PageTables
from ..dumps.physical import PhysicalMemory
from .kallsyms import memory_translation

Offsets = Callable[[str, str], int | None]  # (struct, member) -> byte offset, or None

IMAGE_SPAN = 256 << 20  # bytes of the kernel image searched from _stext (text, data and bss)
_SWAPPER = (b"swapper/0\0", b"swapper\0")
_NEAR_SPAN = 8 << 20  # bytes either side of init_task searched for `modules` (both in .data)
# x86_64's module space (MODULES_VADDR..MODULES_END, above the 1 GiB KASLR image space); arm64's
# VMCOREINFO gives its own
_X86_64_MODULES = (0xFFFFFFFFC0000000, 0xFFFFFFFFFF000000)
_MODULE_NAME = re.compile(rb"[A-Za-z0-9_-]{1,55}\0")
_UTS_LEN = 65  # __NEW_UTS_LEN + 1: struct new_utsname is six of these
_BANNER_MAX = 1024
VMCOREINFO = "VMCOREINFO"
IMAGE = "kernel image"
# Globals init_task leads to: name -> pointers read in turn from init_task, each at `struct.member`
# (summed with "+": pid.numbers[0].ns).
_FROM_INIT_TASK = {
    "init_files": ("task_struct.files",),
    "init_fs": ("task_struct.fs",),
    "init_cred": ("task_struct.real_cred",),
    "init_user_ns": ("task_struct.real_cred", "cred.user_ns"),
    "init_nsproxy": ("task_struct.nsproxy",),
    "init_uts_ns": ("task_struct.nsproxy", "nsproxy.uts_ns"),
    "init_ipc_ns": ("task_struct.nsproxy", "nsproxy.ipc_ns"),
    "init_net": ("task_struct.nsproxy", "nsproxy.net_ns"),
    "init_struct_pid": ("task_struct.thread_pid",),
    "init_pid_ns": ("task_struct.thread_pid", "pid.numbers+upid.ns"),
}


@dataclass(frozen=True)
class Global:
    address: int
    source: str  # VMCOREINFO or IMAGE


@dataclass(frozen=True)
class _Image:
    """The kernel image in physical memory: where it starts and how virtual maps to physical."""

    mem: PhysicalMemory
    start: int  # physical address of _stext
    delta: int  # physical = virtual - delta
    pointer: str  # struct format of a pointer

    def virt(self, paddr: int) -> int:  # the image is mapped linearly
        return paddr + self.delta

    def word(self, paddr: int) -> int | None:
        data = self.mem.read_some(paddr, struct.calcsize(self.pointer))
        return struct.unpack(self.pointer, data)[0] if len(data) == struct.calcsize(self.pointer) else None

    def in_image(self, vaddr: int) -> bool:
        return self.start <= vaddr - self.delta < self.start + IMAGE_SPAN

    def hits(self, pattern: bytes) -> Iterator[int]:
        at, end = self.start, self.start + IMAGE_SPAN
        while (at := self.mem.find(pattern, at, end)) != -1:
            yield at
            at += 1


def well_known(mem: PhysicalMemory, offsets: Offsets, pointer_size: int, endian: str, known: set[str],
               path: str) -> dict[str, Global]:
    """Runtime addresses of the globals not in `known` (kallsyms): VMCOREINFO's, then the image's."""
    out = {name: Global(addr, VMCOREINFO) for name, addr in vmcoreinfo_symbols(mem.info.vmcoreinfo).items()
           if name not in known}
    found = _from_image(mem, offsets, pointer_size, endian, known | set(out), path)
    out.update((name, Global(addr, IMAGE)) for name, addr in found.items())
    return out


def vmcoreinfo_symbols(info: dict[str, str]) -> dict[str, int]:
    """VMCOREINFO's SYMBOL(name) entries that are addresses in the kernel image.

    Some are values instead (SPARSEMEM_EXTREME's mem_section is the array the pointer points at, in
    the direct map): only addresses from _stext on, within the image, are symbols.
    """
    try:
        stext = int(info["SYMBOL(_stext)"], 16)
    except (KeyError, ValueError):
        return {}
    out: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("SYMBOL(") and key.endswith(")"):
            try:
                address = int(value, 16)
            except ValueError:
                continue
            if stext <= address < stext + IMAGE_SPAN:
                out[key[len("SYMBOL("):-1]] = address
    return out


def _from_image(mem: PhysicalMemory, offsets: Offsets, pointer_size: int, endian: str, known: set[str],
                path: str) -> dict[str, int]:
    """The globals not in `known` that the kernel image gives; needs VMCOREINFO's _stext."""

    info = mem.info.vmcoreinfo
    if "SYMBOL(_stext)" not in info:
        return {}
    translate = memory_translation(mem, path)
    pointer = ("<" if endian == "little" else ">") + ("Q" if pointer_size == 8 else "I")
    image = _Image(mem, translate(int(info["SYMBOL(_stext)"], 16)), translate.delta, pointer)
    found: dict[str, int] = {}
    task = _init_task(image, offsets) if {"init_task", "modules", *_FROM_INIT_TASK} - known else None
    if task is not None:
        found["init_task"] = task
        found.update(_pointed_at(image, offsets, task))
    pgd = info.get("SYMBOL(swapper_pg_dir)") or info.get("SYMBOL(init_top_pgt)")
    mm = _init_mm(image, offsets, int(pgd, 16)) if pgd and "init_mm" not in known else None
    if mm is not None:
        found["init_mm"] = mm
    if task is not None and "modules" not in known:
        modules = _modules(image, offsets, info, task)
        if modules is not None:
            found["modules"] = modules
    uts = int(info["SYMBOL(init_uts_ns)"], 16) if "SYMBOL(init_uts_ns)" in info else found.get("init_uts_ns")
    banner = _banner_at(image, info, uts, offsets) if "linux_banner" not in known else None
    if banner is not None:
        found["linux_banner"] = banner
    return {name: addr for name, addr in found.items() if name not in known}


def _pointed_at(image: _Image, offsets: Offsets, init_task: int) -> dict[str, int]:
    """The globals init_task's pointers lead to, where this configuration has the members and the
    pointer lands in the image (init_nsproxy.ipc_ns is NULL without SYSVIPC and POSIX_MQUEUE)."""
    out = {}
    for name, hops in _FROM_INIT_TASK.items():
        address: int | None = init_task
        for hop in hops:
            parts = [offsets(*member.split(".")) for member in hop.split("+")]
            if address is None or not image.in_image(address) or None in parts:
                address = None
                break
            address = image.word(address - image.delta + sum(int(part or 0) for part in parts))
        if address is not None and image.in_image(address):
            out[name] = address
    return out


def _init_task(image: _Image, offsets: Offsets) -> int | None:
    """init_task: a task named swapper whose real_parent is itself (INIT_TASK sets .real_parent = &tsk)."""
    comm = offsets("task_struct", "comm")
    parent = offsets("task_struct", "real_parent")
    if comm is None or parent is None:
        return None
    for pattern in _SWAPPER:
        for hit in image.hits(pattern):
            task = hit - comm
            if image.word(task + parent) == image.virt(task):
                return image.virt(task)
    return None


def _init_mm(image: _Image, offsets: Offsets, pgd: int) -> int | None:
    """init_mm: the mm_struct whose pgd is swapper_pg_dir and whose mmlist is empty (points at itself)."""
    pgd_off = offsets("mm_struct", "pgd")
    mmlist = offsets("mm_struct", "mmlist")
    if pgd_off is None or mmlist is None:
        return None
    for hit in image.hits(struct.pack(image.pointer, pgd)):
        mm = hit - pgd_off
        if image.word(mm + mmlist) == image.virt(mm + mmlist):
            return image.virt(mm)
    return None


def _modules(image: _Image, offsets: Offsets, info: dict[str, str], init_task: int) -> int | None:
    """`modules`: a list_head in the kernel's data near init_task whose entries (module space,
    read through the page tables) are struct modules linked back to it. 64-bit little-endian kernels
    whose VMCOREINFO names the top table (x86_64, arm64); an empty list cannot be recognised."""

    members = [offsets("module", name) for name in ("list", "state", "name")]
    top = pagewalk.vmcoreinfo_table(info)
    if top is None or None in members or image.pointer != "<Q":
        return None
    list_off, state_off, name_off = (int(off or 0) for off in members)
    tables = PageTables(image.mem, top)

    def read(vaddr: int, size: int) -> bytes:
        paddr = tables.translate(vaddr)
        if isinstance(paddr, Miss) or (vaddr % tables.paging.page) + size > tables.paging.page:
            return b""
        return image.mem.read_some(paddr, size)

    def is_module(entry: int, head: int, link: int) -> bool:
        """entry: the struct module; its list's `link` (0 next, 8 prev) must point at head."""
        if struct.unpack("<Q", read(entry + list_off + link, 8) or bytes(8))[0] != head:
            return False
        state = int.from_bytes(read(entry + state_off, 4) or b"\xff" * 4, "little")
        return state <= 3 and _MODULE_NAME.match(read(entry + name_off, 56)) is not None

    lo, hi = _module_space(info, top.paging.arch)
    if lo >= hi:
        return None  # no module space known for this machine
    center = init_task - image.delta
    ram_start = [start for start, end in image.mem.ranges() if start <= center < end]
    start = max([center - _NEAR_SPAN, *ram_start])  # RAM need not start at 0 (arm64 virt: 1 GiB)
    data = image.mem.read_some(start, center + _NEAR_SPAN - start)
    for match in _pointer_pairs(lo, hi).finditer(data):
        if match.start() % 8:
            continue
        head = image.virt(start + match.start())
        first, last = struct.unpack("<QQ", match.group(1))
        if lo <= first < hi and lo <= last < hi and is_module(first - list_off, head, 8) \
                and is_module(last - list_off, head, 0):
            return head
    return None


def _module_space(info: dict[str, str], arch: str) -> tuple[int, int]:
    """[start, end) of module space: VMCOREINFO's MODULES_VADDR/MODULES_END (arm64), else x86_64's."""
    try:
        return int(info["NUMBER(MODULES_VADDR)"], 16), int(info["NUMBER(MODULES_END)"], 16)
    except (KeyError, ValueError):
        return _X86_64_MODULES if arch == "x86_64" else (0, 0)


def _pointer_pairs(lo: int, hi: int) -> re.Pattern[bytes]:
    """Two little-endian words (a list_head's next and prev) whose high bytes are those every address
    in [lo, hi) shares: a cheap filter, the range itself is checked on each match."""
    first, last = lo.to_bytes(8, "big"), max(lo, hi - 1).to_bytes(8, "big")
    shared = next((i for i in range(8) if first[i] != last[i]), 8)
    word = b".{%d}" % (8 - shared) + re.escape(first[:shared][::-1])
    return re.compile(rb"(?s)(?=(" + word + word + rb"))")  # overlapping


def _banner_at(image: _Image, info: dict[str, str], uts: int | None, offsets: Offsets) -> int | None:
    """linux_banner: 'Linux version <release> ...' ending in init_uts_ns's version, a newline and a NUL.

    init/version.c compiles a second, weak banner with a placeholder version; the kernel log's copies
    have no newline. A kernel built with KBUILD_BUILD_VERSION and KBUILD_BUILD_TIMESTAMP set (Debian's,
    reproducible builds) has no placeholder: both banners read the same, and the real one is the last,
    as link-vmlinux.sh links init/version-timestamp.o after everything else.
    """
    release = info.get("OSRELEASE", "")
    ending = b"\n\0"
    if uts is not None:
        name = uts - image.delta + (offsets("uts_namespace", "name") or 0)
        version = image.mem.read_some(name + 3 * _UTS_LEN, _UTS_LEN).split(b"\0")[0]
        ending = b" " + version + ending if version else ending
    last = None
    for hit in image.hits(f"Linux version {release} ".encode()):
        data = image.mem.read_some(hit, _BANNER_MAX)
        end = data.find(b"\0")
        if end > 0 and data[: end + 1].endswith(ending):
            last = hit
    return image.virt(last) if last is not None else None
