"""--debuginfo: an ELF object whose DWARF describes the kernel's types, built from the headers archive.

A crash image with CONFIG_IKHEADERS carries its kernel's headers and, in include/generated/autoconf.h,
its configuration. Compiling one translation unit that includes the headers analysis tools need, the way
kbuild compiles (-nostdinc, the arch include dirs, `-include linux/kconfig.h`, -D__KERNEL__, the arch
flags that fix the ABI), for the image's architecture, gives DWARF whose structure layouts equal the
kernel's own compile for *this* configuration (tests compare task_struct & co. with a kbuild -g object).

The unit also takes the address of well-known globals (init_task, init_uts_ns, modules, ...), so the
object carries a DW_TAG_variable declaration (name and type, no address) for each: a consumer joins
them with the dump's symbol table (kallsyms) to read them by type.

What the archive cannot give: types private to kernel source files (fs/mount.h: struct mount;
kernel/sched/sched.h: struct rq; kernel/printk/printk_ringbuffer.h: the log). `kernel_source` (a
matching kernel source tree) adds those headers.

Results are cached per (archive sha256, configuration, compiler, kernel source) under
~/.cache/extract-ikheaders/types/, so a second build for the same archive is a lookup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import pipeline
from ..archive import unpack
from ..cachekey import producer
from ..errors import ExtractError, NotFound, ToolError
from . import confined_cc
from .confined_cc import Limits

CACHE_ENV = "EXTRACT_IKHEADERS_TYPES_CACHE"
MAX_RETRIES = 8

# The headers analysis tools (drgn helpers, Volatility 3's linux plugins, crash) need types from.
# Config-dependent ones may fail to compile for a given kernel: they are dropped, and reported.
HEADERS = (
    "linux/sched.h", "linux/sched/signal.h", "linux/sched/task.h", "linux/sched/mm.h", "linux/mm_types.h",
    "linux/mm.h", "linux/mmzone.h", "linux/fs.h", "linux/fdtable.h", "linux/fs_struct.h", "linux/dcache.h",
    "linux/mount.h", "linux/namei.h", "linux/path.h", "linux/cred.h", "linux/nsproxy.h",
    "linux/pid_namespace.h", "linux/utsname.h", "linux/user_namespace.h", "linux/ipc_namespace.h",
    "linux/mnt_namespace.h", "linux/proc_ns.h", "linux/module.h", "linux/kallsyms.h", "linux/net.h",
    "linux/socket.h", "linux/netdevice.h", "linux/tcp.h", "linux/udp.h", "linux/un.h", "net/sock.h",
    "net/inet_sock.h", "net/af_unix.h", "net/net_namespace.h", "net/ipv6.h", "net/netlink.h",
    "linux/binfmts.h", "linux/kthread.h", "linux/slab.h", "linux/vmalloc.h", "linux/swap.h",
    "linux/shmem_fs.h", "linux/pipe_fs_i.h", "linux/kobject.h", "linux/kernfs.h", "linux/sysfs.h",
    "linux/cgroup.h", "linux/tty.h", "linux/workqueue.h", "linux/timekeeping.h", "linux/hrtimer.h",
    "linux/interrupt.h", "linux/irq.h", "linux/irqdesc.h", "linux/blkdev.h", "linux/bpf.h",
    "linux/perf_event.h", "linux/ptrace.h", "linux/elf.h", "linux/kmod.h", "linux/seq_file.h",
    "linux/percpu.h", "linux/cpumask.h", "linux/idr.h", "linux/xarray.h", "linux/maple_tree.h",
    "linux/radix-tree.h", "linux/printk.h", "linux/kexec.h", "linux/crash_core.h",
    "linux/sysctl.h", "linux/init_task.h", "linux/console.h", "linux/sched/loadavg.h", "linux/memcontrol.h",
    "linux/page-flags.h", "linux/keyctl.h", "linux/key.h",
    "linux/security.h", "linux/audit.h", "linux/ftrace.h", "linux/tracepoint.h", "linux/eventpoll.h",
    "linux/signalfd.h", "linux/timerfd.h", "linux/io_uring_types.h", "linux/fsnotify_backend.h",
)

# Globals drgn helpers and Volatility plugins read by name, declared by the public headers (when the
# configuration has them). Each gets a DW_TAG_variable declaration and a typedef __kheaders_type_<name>.
GLOBALS = (
    "init_task", "init_pid_ns", "init_uts_ns", "init_user_ns", "init_ipc_ns", "init_nsproxy", "init_cred",
    "init_mm", "init_fs", "init_files", "init_net", "init_struct_pid", "jiffies", "jiffies_64",
    "linux_banner", "saved_command_line", "boot_command_line", "mem_section", "max_pfn",
    "_totalram_pages", "contig_page_data", "node_data", "vm_zone_stat", "vm_node_stat", "nr_cpu_ids",
    "__per_cpu_offset", "__cpu_online_mask", "__cpu_possible_mask", "__cpu_present_mask", "__cpu_active_mask",
    "cpu_number", "current_task", "pcpu_hot", "page_offset_base", "vmemmap_base", "vmalloc_base", "phys_base",
    "memstart_addr", "kimage_voffset", "vabits_actual", "net_namespace_list", "init_css_set", "cgrp_dfl_root",
    "tty_drivers", "swapper_pg_dir", "init_top_pgt", "init_thread_union", "system_state", "panic_cpu",
    "kptr_restrict", "nr_threads", "total_forks", "high_memory", "avenrun", "vmcoreinfo_data",
    "console_drivers",
)
TYPE_PREFIX = "__kheaders_type_"  # typedef __kheaders_type_<global> = the global's type

# Globals the public headers do not declare (defined in a .c file, or declared in a private header):
# their type as the kernel source has it. A declaration that clashes with the headers is dropped.
DECLARATIONS = {
    "modules": "extern struct list_head modules;",
    "slab_caches": "extern struct list_head slab_caches;",
    "super_blocks": "extern struct list_head super_blocks;",
    "file_systems": "extern struct file_system_type *file_systems;",
    "kernel_headers_data": "extern char kernel_headers_data[];",
    "kernel_headers_data_end": "extern char kernel_headers_data_end[];",
    "mount_hashtable": "extern struct hlist_head *mount_hashtable;",
    "mountpoint_hashtable": "extern struct hlist_head *mountpoint_hashtable;",
    "log_buf": "extern char *log_buf;",
    "log_buf_len": "extern u32 log_buf_len;",
    "vmap_area_list": "extern struct list_head vmap_area_list;",
    "console_list": "extern struct hlist_head console_list;",
    "crashing_cpu": "extern int crashing_cpu;",
}

# Private headers from a kernel source tree (kernel_source=DIR), with globals whose type they define
# but whose declaration lives in a .c file.
PRIVATE_HEADERS = ("fs/mount.h", "kernel/sched/sched.h", "kernel/printk/printk_ringbuffer.h",
                   "kernel/printk/internal.h", "mm/slab.h", "kernel/workqueue_internal.h")
PRIVATE_GLOBALS = ("runqueues",)
PRIVATE_DECLARATIONS = {
    "prb": "extern struct printk_ringbuffer *prb;",
    "printk_rb_static": "extern struct printk_ringbuffer printk_rb_static;",
}


class TypesError(ToolError):
    """The types object cannot be built (no compiler for the architecture, the headers do not compile)."""


@dataclass(frozen=True)
class Target:
    """How to compile for the image's architecture."""

    arch: str  # the archive's arch/<arch>/include directory name
    bits: int
    compiler: tuple[str, ...]  # argv prefix, e.g. ("gcc",) or ("clang", "--target=aarch64-linux-gnu")
    flags: tuple[str, ...]

    @property
    def name(self) -> str:
        return {("x86", 64): "x86_64", ("x86", 32): "i386"}.get((self.arch, self.bits), self.arch)


@dataclass(frozen=True)
class Types:
    """A built (or cached) types object."""

    path: Path
    arch: str
    release: str | None
    archive_sha256: str
    cached: bool
    headers: tuple[str, ...]  # the headers the unit includes
    skipped: tuple[str, ...]  # headers or globals dropped because they did not compile for this config
    globals: tuple[str, ...]  # names with a DW_TAG_variable declaration
    kernel_source: str | None
    configuration: str = ""  # where autoconf.h came from, and whether the .config agreed

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "arch": self.arch, "release": self.release,
                "configuration": self.configuration,
                "archive_sha256": self.archive_sha256, "cached": self.cached, "headers": len(self.headers),
                "skipped": list(self.skipped), "globals": len(self.globals), "kernel_source": self.kernel_source}


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return Path.home() / ".cache" / "extract-ikheaders" / "types"


def build_types(image: str | os.PathLike[str], *, kernel_source: str | os.PathLike[str] | None = None,
                cache: Path | None = None, limits: Limits | None = None) -> Types:
    """The types object for the kernel in `image` (any input find() takes), built once per archive;
    `limits` bound each compiler step (confined_cc: 60 s of wall clock by default)."""

    # Structure only: a build decodes the whole archive as it unpacks it, and a cached build was made
    # from the same bytes (its key holds their sha256), decoded then.
    found = pipeline.find(image, verify=False)
    config = config_or_none(image)
    return build_types_from(found.archive, config, kernel_source=kernel_source, cache=cache, limits=limits)


def config_or_none(image: str | os.PathLike[str]) -> bytes | None:
    try:
        return pipeline.find_config(image).text
    except ExtractError:
        return None  # the archive's own autoconf.h is enough


def build_types_from(archive: bytes, config: bytes | None = None, *,
                     kernel_source: str | os.PathLike[str] | None = None, cache: Path | None = None,
                     limits: Limits | None = None) -> Types:
    """The types object for a headers archive (the .tar.xz bytes); `config` is the kernel's .config
    when known (checked against, or standing in for, the archive's autoconf.h)."""

    sha = hashlib.sha256(archive).hexdigest()
    members = pipeline.archive_members(archive, (pipeline.AUTOCONF_H, pipeline.UTSRELEASE_H))  # one walk
    autoconf, configuration = autoconf_for(members.get(pipeline.AUTOCONF_H), config)
    release = pipeline.release_from_archive(archive, members.get(pipeline.UTSRELEASE_H, b""))
    target = target_for(archive, autoconf, release)
    source = _kernel_source(kernel_source)
    key = _cache_key(sha, autoconf, target, source)
    out_dir = (cache or cache_root()) / key
    meta_path = out_dir / "types.json"
    if meta_path.is_file() and (out_dir / "types.o").is_file():
        return _types_from_meta(out_dir, json.loads(meta_path.read_text()), True, configuration)
    shutil.rmtree(out_dir, ignore_errors=True)  # an incomplete entry (files removed by hand): build anew
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix=f".{key}.", dir=out_dir.parent) as staging,
          tempfile.TemporaryDirectory(prefix="extract-ikheaders-types-", dir=scratch_root()) as tmp):
        tree = Path(tmp) / "headers"
        unpack.extract(archive, tree)
        (tree / "include" / "generated" / "autoconf.h").write_bytes(autoconf)
        result = _compile(tree, Path(tmp), target, source, limits or Limits())
        staged = Path(staging) / "out"
        staged.mkdir()
        shutil.move(str(result.obj), staged / "types.o")
        (staged / "types.c").write_text(result.unit)
        meta = {"arch": target.name, "release": release, "archive_sha256": sha,
                "headers": list(result.headers), "skipped": list(result.skipped), "globals": list(result.globals),
                "kernel_source": str(source) if source else None, "compiler": list(target.compiler),
                "flags": list(target.flags)}
        (staged / "types.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        try:
            staged.rename(out_dir)
        except OSError:  # another process finished the same build first: use theirs
            if not meta_path.is_file():
                raise
    return _types_from_meta(out_dir, json.loads(meta_path.read_text()), False, configuration)


_SCRATCH = "/dev/shm"
_SCRATCH_FREE = 512 << 20  # the tree (~30 MB unpacked) and the compiler's files, with room to spare


def scratch_root() -> str | None:
    """Where the headers tree and the compiler's files go: a RAM file system when one is there with
    room, since creating the archive's ~6,000 files on a disk costs seconds of a cold build (5.1 s
    against 1.1 s on a busy machine); else the system's temporary directory (None)."""
    try:
        fs = os.statvfs(_SCRATCH)
    except OSError:
        return None
    roomy = fs.f_bavail * fs.f_frsize >= _SCRATCH_FREE
    return _SCRATCH if roomy and os.access(_SCRATCH, os.W_OK | os.X_OK) else None


def _types_from_meta(out_dir: Path, meta: dict[str, object], cached: bool, configuration: str) -> Types:
    def strings(key: str) -> tuple[str, ...]:
        value = meta.get(key) or []
        assert isinstance(value, list)
        return tuple(str(v) for v in value)

    release, source = meta.get("release"), meta.get("kernel_source")
    return Types(path=out_dir / "types.o", arch=str(meta["arch"]), release=str(release) if release else None,
                 archive_sha256=str(meta["archive_sha256"]), cached=cached, headers=strings("headers"),
                 skipped=strings("skipped"), globals=strings("globals"),
                 kernel_source=str(source) if source else None, configuration=configuration)


def _cache_key(sha: str, autoconf: bytes, target: Target, source: Path | None) -> str:
    unit = [HEADERS, GLOBALS, DECLARATIONS, PRIVATE_HEADERS, PRIVATE_GLOBALS, PRIVATE_DECLARATIONS]
    identity = {"producer": producer(sys.modules[__name__], confined_cc), "unit": unit, "archive": sha,
                "autoconf": hashlib.sha256(autoconf).hexdigest(),
                "compiler": list(target.compiler), "version": compiler_version(target.compiler),
                "flags": list(target.flags), "source": str(source) if source else None,
                "source_headers": _source_digest(source)}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{sha[:16]}-{digest[:16]}"


def _source_digest(source: Path | None) -> str | None:
    if source is None:
        return None
    h = hashlib.sha256()
    for rel in PRIVATE_HEADERS:
        path = source / rel
        h.update(path.read_bytes() if path.is_file() else b"-")
    return h.hexdigest()


def compiler_version(compiler: tuple[str, ...]) -> str:
    try:
        proc = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise TypesError(f"cannot run the compiler {compiler[0]}: {exc.strerror}") from None
    return proc.stdout.splitlines()[0] if proc.stdout else ""


def _kernel_source(path: str | os.PathLike[str] | None) -> Path | None:
    if path is None:
        return None
    source = Path(path).resolve()
    missing = [rel for rel in PRIVATE_HEADERS if not (source / rel).is_file()]
    if len(missing) == len(PRIVATE_HEADERS):
        raise TypesError(f"{path}: not a kernel source tree (none of {', '.join(PRIVATE_HEADERS)} in it)")
    return source


# --- configuration ---------------------------------------------------------------------------------

_MS_EXTENSIONS = re.compile(rb"^#define CONFIG_CC_MS_EXTENSIONS ", re.M)  # kbuild's CC_FLAGS_DIALECT
_DEFINE = re.compile(rb"^#define (CONFIG_[A-Za-z0-9_]+) (.*)$", re.M)
_CONFIG_LINE = re.compile(rb"^(CONFIG_[A-Za-z0-9_]+)=(.*)$", re.M)


def autoconf_for(packed: bytes | None, config: bytes | None) -> tuple[bytes, str]:
    """include/generated/autoconf.h: the archive's own (`packed`: gen_kheaders.sh packs it) when it
    agrees with the .config, else one generated from the .config as kconfig writes it; and which it was."""
    if config is not None and packed is None:
        return autoconf_from(config), "generated from the .config (the archive has no autoconf.h)"
    if config is not None and autoconf_values(packed or b"") != autoconf_values(autoconf_from(config)):
        return autoconf_from(config), "generated from the .config (the archive's autoconf.h differs)"
    if packed is None:
        raise NotFound("the headers archive has no include/generated/autoconf.h and the image no .config "
                       "(CONFIG_IKCONFIG): the kernel's configuration is unknown")
    return packed, "the archive's autoconf.h" + (", equal to the .config" if config is not None else "")


def autoconf_values(autoconf: bytes) -> dict[bytes, bytes]:
    return dict(_DEFINE.findall(autoconf))


def autoconf_from(config: bytes) -> bytes:
    """autoconf.h from a .config: y -> 1, m -> CONFIG_X_MODULE 1, strings and numbers as they are."""
    lines = [b"/* generated by extract-ikheaders from the kernel's .config */"]
    for name, value in _CONFIG_LINE.findall(config):
        if value == b"y":
            lines.append(b"#define " + name + b" 1")
        elif value == b"m":
            lines.append(b"#define " + name + b"_MODULE 1")
        elif value and value != b"n":
            lines.append(b"#define " + name + b" " + value)
    return b"\n".join(lines) + b"\n"


def _enabled(autoconf: bytes, option: str) -> bool:
    return autoconf_values(autoconf).get(option.encode()) == b"1"


# --- target ----------------------------------------------------------------------------------------

# (arch dir, bits, big endian) -> target triples, the Debian cross gcc names first
_TRIPLES: dict[tuple[str, int, bool], tuple[str, ...]] = {
    ("x86", 64, False): ("x86_64-linux-gnu",),
    ("x86", 32, False): ("i686-linux-gnu",),
    ("arm64", 64, False): ("aarch64-linux-gnu",),
    ("arm64", 64, True): ("aarch64_be-linux-gnu",),
    ("arm", 32, False): ("arm-linux-gnueabihf", "arm-linux-gnueabi"),
    ("riscv", 64, False): ("riscv64-linux-gnu",),
    ("riscv", 32, False): ("riscv32-linux-gnu",),
    ("powerpc", 64, True): ("powerpc64-linux-gnu",),
    ("powerpc", 64, False): ("powerpc64le-linux-gnu",),
    ("powerpc", 32, True): ("powerpc-linux-gnu",),
    ("s390", 64, True): ("s390x-linux-gnu",),
    ("loongarch", 64, False): ("loongarch64-linux-gnu",),
    ("mips", 64, False): ("mips64el-linux-gnuabi64",),
    ("mips", 32, False): ("mipsel-linux-gnu",),
    ("mips", 32, True): ("mips-linux-gnu",),
}
# Flags kbuild's arch Makefiles pass that the headers or the ABI depend on.
_ARCH_FLAGS: dict[tuple[str, int], tuple[str, ...]] = {
    ("x86", 64): ("-m64", "-mno-sse", "-mno-mmx", "-mno-sse2", "-mno-3dnow", "-mno-avx", "-mno-80387",
                  "-mno-fp-ret-in-387", "-mno-red-zone", "-mcmodel=kernel"),
    ("x86", 32): ("-m32", "-msoft-float", "-mregparm=3", "-freg-struct-return", "-mno-sse", "-mno-mmx"),
    ("arm64", 64): ("-mgeneral-regs-only", "-mabi=lp64", "-DARM64_ASM_ARCH=\"armv8-a\"",
                    "-DCONFIG_CC_HAS_K_CONSTRAINT=1", "-DKASAN_SHADOW_SCALE_SHIFT="),
    ("riscv", 64): ("-mcmodel=medany", "-mabi=lp64"),
}


def target_for(archive: bytes, autoconf: bytes, release: str | None = None) -> Target:
    platform = pipeline.archive_platform(archive, autoconf)
    if platform is None:
        raise NotFound("the headers archive has no arch/<arch>/include directory: unknown architecture")
    arch, bits, big = platform.arch, platform.bits or 32, platform.endian == "big"
    flags = list(_ARCH_FLAGS.get((arch, bits), ()))
    if arch == "arm64":
        flags.insert(0, "-mbig-endian" if big else "-mlittle-endian")
    if arch == "arm":
        flags += _arm_flags(autoconf, big)
    if _version(release) >= (6, 2):
        flags.append("-funsigned-char")  # kbuild's since 6.2: `char` is unsigned on every architecture
    if _MS_EXTENSIONS.search(autoconf):  # 7.x headers include tagged structs anonymously (struct filename)
        flags.append("-fms-extensions")
    return Target(arch, bits, _compiler_for(arch, bits, big), tuple(flags))


def _arm_flags(autoconf: bytes, big: bool) -> list[str]:
    """32-bit arm: the headers choose fields by __LINUX_ARM_ARCH__ (arch/arm/Makefile derives it from
    CONFIG_CPU_32v*), and the EABI aligns 64-bit members to 8 where the old ABI does not."""
    version = next((v for v in (7, 6, 5, 4) if any(_enabled(autoconf, f"CONFIG_CPU_32v{v}{suffix}")
                                                    for suffix in ("", "K", "T"))), 4)
    abi = "-mabi=aapcs-linux" if _enabled(autoconf, "CONFIG_AEABI") else "-mabi=apcs-gnu"
    return [f"-D__LINUX_ARM_ARCH__={version}", abi, "-msoft-float", "-mbig-endian" if big else "-mlittle-endian",
            "-Uarm"]


def _version(release: str | None) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _compiler_for(arch: str, bits: int, big: bool) -> tuple[str, ...]:
    """gcc for the host's own architecture, a Debian cross gcc when installed, else clang --target
    (the kernel is built with gcc, whose layout rules clang follows)."""
    import platform

    host = {"x86_64": ("x86", 64), "aarch64": ("arm64", 64)}.get(platform.machine())
    if host == (arch, bits) and not big and shutil.which("gcc"):
        return ("gcc",)
    triples = _TRIPLES.get((arch, bits, big))
    if triples is None:
        raise TypesError(f"no compiler known for {bits}-bit {'big' if big else 'little'}-endian {arch}")
    for triple in triples:
        if shutil.which(f"{triple}-gcc"):
            return (f"{triple}-gcc",)
    if shutil.which("clang"):
        return ("clang", f"--target={triples[0]}")
    raise TypesError(f"no compiler for {arch}: install gcc-{triples[0]} or clang")


# --- the translation unit --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    obj: Path
    unit: str
    headers: tuple[str, ...]
    skipped: tuple[str, ...]
    globals: tuple[str, ...]


def compile_flags(tree: Path, target: Target) -> list[str]:
    """kbuild's way to compile against the headers, minus warnings and code generation options."""
    arch = tree / "arch" / target.arch / "include"
    includes = [arch, arch / "generated", tree / "include", arch / "uapi", arch / "generated" / "uapi",
                tree / "include" / "uapi", tree / "include" / "generated" / "uapi"]
    return ["-nostdinc", *(f"-I{p}" for p in includes),
            "-include", str(tree / "include/linux/kconfig.h"),
            "-include", str(tree / "include/linux/compiler_types.h"),
            "-D__KERNEL__", "-DKBUILD_MODNAME=\"kheaders_types\"", "-DKBUILD_BASENAME=\"kheaders_types\"",
            "-std=gnu11", "-fshort-wchar", "-fno-common", "-fno-PIE", "-fno-strict-aliasing", *target.flags,
            "-O0", "-g", "-gdwarf-4", "-fno-eliminate-unused-debug-types", "-w"]


def _unit(headers: Sequence[str], private: Sequence[Path], declarations: Sequence[str], globals_: Sequence[str]) -> str:
    """One line per header, declaration or global, so a compile error's line number says what to drop."""
    lines = ["/* extract-ikheaders: the kernel's types for debuggers; one item per line */"]
    lines += [f"#include <{h}>" for h in headers]
    lines += [f'#include "{p}"' for p in private]
    lines += list(declarations)
    # Taking the address makes gcc emit the variable's declaration; the typedef names its type.
    lines += [f"typedef __typeof__({g}) {TYPE_PREFIX}{g}; "
              f"void *const __kheaders_use_{g} __attribute__((used)) = (void *)&{g};" for g in globals_]
    return "\n".join(lines) + "\n"


def _compile(tree: Path, work: Path, target: Target, source: Path | None, limits: Limits) -> _Result:
    headers = [h for h in dict.fromkeys(HEADERS) if (tree / "include" / h).is_file()]
    private = [source / rel for rel in PRIVATE_HEADERS if source and (source / rel).is_file()]
    extra = {**DECLARATIONS, **(PRIVATE_DECLARATIONS if private else {})}
    declarations = list(extra.values())
    globals_ = list(dict.fromkeys((*GLOBALS, *extra, *(PRIVATE_GLOBALS if private else ()))))
    skipped: list[str] = []
    cc_dir = work / "cc"  # the compiler's own empty working directory
    cc_dir.mkdir()
    unit_path, obj = cc_dir / "types.c", work / "types.o"
    flags = compile_flags(tree, target)
    confined_cc.check_tree(tree, [Path(f[2:]) for f in flags if f.startswith("-I")])
    allowed = [tree, *([source] if source else [])]
    for _ in range(MAX_RETRIES):
        unit = _unit(headers, private, declarations, globals_)
        unit_path.write_text(unit)
        proc = _run(target.compiler, flags, unit_path, obj, allowed, limits)
        if proc.returncode == 0:
            return _Result(obj, unit, (*headers, *map(str, private)), tuple(skipped), tuple(globals_))
        items = unit.splitlines()
        dropped = [items[n - 1] for n in _failing_lines(proc.stderr, unit_path.name) if 0 < n <= len(items)]
        if not dropped:
            break
        for line in dropped:
            skipped.append(_what(line))
        headers = [h for h in headers if f"#include <{h}>" not in dropped]
        private = [p for p in private if f'#include "{p}"' not in dropped]
        declarations = [d for d in declarations if d not in dropped]
        globals_ = [g for g in globals_ if not any(f" {TYPE_PREFIX}{g};" in line for line in dropped)]
    raise TypesError(f"the kernel's headers do not compile for {target.name} with {' '.join(target.compiler)}: "
                     f"{first_error(proc.stderr)}")


def _what(line: str) -> str:
    """A dropped line's subject: the header, the declaration or the global."""
    include = re.match(r'#include [<"](.*)[>"]$', line)
    if include:
        return include.group(1)
    use = re.match(rf"typedef __typeof__\((\w+)\) {TYPE_PREFIX}", line)
    return use.group(1) if use else line


def _failing_lines(stderr: str, unit_name: str) -> list[int]:
    """The unit's lines that errors come from: an error in the unit itself, or in a header it includes."""
    return sorted(charged_errors(stderr, unit_name))


_LOCATED_ERROR = re.compile(r"^(\S+?):(\d+):\d+: (?:fatal )?error: (.*)$")


def charged_errors(stderr: str, unit_name: str) -> dict[int, str]:
    """The unit's lines errors are charged to, each with its first error ("file:line: message"): an
    error in the unit itself, or in a header it includes, charged to the unit line of the include
    chain gcc prints once for a run of errors in one header."""
    name = re.escape(unit_name)
    charged: dict[int, str] = {}
    context: int | None = None
    for text in stderr.splitlines():
        included = re.search(rf"(?:In file included from|from) \S*{name}:(\d+)", text)
        if included:
            context = int(included.group(1))
            continue
        direct = re.match(rf"\S*{name}:(\d+):\d+: (?:fatal )?error", text)
        line = int(direct.group(1)) if direct else context if re.search(r": (?:fatal )?error:", text) else None
        if line is not None:
            charged.setdefault(line, _error_message(text))
    return charged


def _error_message(text: str) -> str:
    located = _LOCATED_ERROR.match(text)
    message = f"{Path(located.group(1)).name}:{located.group(2)}: {located.group(3)}" if located else text.strip()
    return message[:200]


def first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "error" in line:
            return line.strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "no diagnostics"


def _run(compiler: Sequence[str], flags: Sequence[str], unit: Path, obj: Path, allowed: Sequence[Path],
         limits: Limits) -> subprocess.CompletedProcess[str]:
    try:
        return confined_cc.compile_unit(compiler, flags, unit, obj, allowed, limits)
    except OSError as exc:
        raise TypesError(f"cannot run {compiler[0]}: {exc.strerror}") from None
    except confined_cc.LimitExceeded as exc:
        raise TypesError(f"compiling the types unit: {exc} (a hostile header? "
                         "--compile-timeout raises the time limit)") from None
