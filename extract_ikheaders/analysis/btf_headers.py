"""--btf-from headers: BTF for a kernel built without CONFIG_DEBUG_INFO_BTF, from its own headers.

The headers archive and the kernel's configuration give the layout of every type its headers define
(analysis.debuginfo compiles them the way kbuild does). Here every header of the archive that compiles
for the image's configuration goes into one translation unit; its DWARF goes through pahole's BTF
encoder (Debian's pahole, the kernel's own tool for this: `--btf_encode_detached`), whose
deduplicated output is what /sys/kernel/btf/vmlinux would serve for those types.

Which headers: include/ and arch/<arch>/include/asm, kbuild's core headers first (the types of
the configuration's own choosing are defined before any alternative can claim the name), then the
rest. Dropped, each with its reason (the JSON record lists them):
- directories that are not headers of the kernel's C types (uapi/ comes in through its wrappers,
  dt-bindings/ holds device-tree macros, trace/ event templates, asm-generic/ is reached through asm/);
- headers without an include guard: templates written to be included inside a macro context;
- headers for subsystems the kernel does not build: they declare functions, and the kernel's symbol
  table has none of them. Their types are not the kernel's, and a name they define can be one a
  built .c file defines differently (include/net/slhc_vj.h's `struct cstate`, 192 bytes, against
  lib/decompress_unlzma.c's 20-byte one in a kernel without SLIP/PPP);
- headers that do not compile after the ones before them for this configuration: found in rounds,
  each round dropping every header the compiler's diagnostics are charged to (one compile of the
  whole unit per round, never one per header). An include of a file the archive lacks does not stop
  the compiler: it finds a stub whose #error is charged to the header that included it.

What headers cannot give: types private to .c files and private headers, and the functions and
variables a kernel's own BTF describes. Results are cached per (archive, configuration, symbols,
compiler, pahole) next to the --debuginfo objects.
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import pipeline
from ..archive import unpack
from ..cachekey import producer
from ..errors import ExtractError, NotFound, ToolError
from . import btf, confined_cc, debuginfo, kallsyms
from .confined_cc import Limits
from .debuginfo import Target, TypesError

PAHOLE_ENV = "EXTRACT_IKHEADERS_PAHOLE"
MAX_ROUNDS = 32
WHERE = "generated from the headers archive"

# include/<dir>: why its headers are not units of their own
SKIPPED_DIRS = {
    "uapi": "user-space API: included through the kernel headers that wrap it",
    "dt-bindings": "device-tree binding constants, no C types",
    "trace": "trace event templates, included in a macro context",
    "asm-generic": "reached through the architecture's asm/ headers",
    "generated": "kbuild's generated configuration, included by the others",
    "vdso": "the vDSO's user-space code",
    "math-emu": "floating-point emulator internals",
}
NO_GUARD = "no include guard: a template meant to be included in a macro context"

_GUARD = re.compile(rb"\A(?:\s|/\*.*?\*/|//[^\n]*\n)*#\s*(?:ifndef\s+(\w+)\s*\n\s*#\s*define\s+\1\b|"
                    rb"if\s+!\s*defined\s*\(?\s*(\w+)\s*\)?\s*\n\s*#\s*define\s+\2\b|pragma\s+once)", re.S)
_COMMENT = re.compile(rb"/\*.*?\*/|//[^\n]*", re.S)
# A function declared at file scope: `[extern] type name(args);` on lines not starting a macro, a
# typedef or a static (inline) definition. Enough to tell which subsystem a header serves.
_PROTOTYPE = re.compile(rb"^(?![ \t]*(?:static|#|typedef|return|\}))[ \t]*(?:extern[ \t]+)?[A-Za-z_][\w \t*]*?"
                        rb"\b([A-Za-z_]\w*)[ \t]*\([^;{}()]*(?:\([^;{}()]*\)[^;{}()]*)*\)[\w \t()]*;", re.M)


@dataclass(frozen=True)
class Dropped:
    header: str
    reason: str
    kind: str  # "directory", "template", "unbuilt subsystem" or "does not compile"


@dataclass(frozen=True)
class Generated:
    """A BTF blob generated from a kernel's headers (or found in the cache)."""

    path: Path  # the cached blob
    blob: btf.Btf
    release: str | None
    arch: str
    compiled: tuple[str, ...]  # the headers of the unit, in order
    dropped: tuple[Dropped, ...]
    symbols: int  # the kernel symbols headers were checked against (0: none, no header dropped as unbuilt)
    pahole: str
    cached: bool
    configuration: str = ""

    def as_dict(self) -> dict[str, object]:
        reasons: dict[str, int] = {}
        for item in self.dropped:
            reasons[item.kind] = reasons.get(item.kind, 0) + 1
        return {**self.blob.as_dict(), "source": "headers", "release": self.release, "arch": self.arch,
                "configuration": self.configuration, "headers_compiled": len(self.compiled),
                "headers_dropped": len(self.dropped), "dropped_by_reason": reasons,
                "dropped": [{"header": d.header, "reason": d.reason} for d in self.dropped],
                "symbols_checked": self.symbols, "pahole": self.pahole, "cached": self.cached,
                "cache": str(self.path)}


def generate(image: str | os.PathLike[str], *, limits: Limits | None = None, cache: Path | None = None) -> Generated:
    """BTF for the kernel in `image` (any input find() takes), from its headers, configuration and
    (when it can be read) its kallsyms, which tells the subsystems it builds."""
    pahole = pahole_command()  # before any work: without it nothing can be generated
    found = pipeline.find(image, verify=False)
    config = debuginfo.config_or_none(image)
    return generate_from(found.archive, config, _symbol_names(image), limits=limits, cache=cache, pahole=pahole)


def _symbol_names(image: str | os.PathLike[str]) -> frozenset[str] | None:
    try:
        table = kallsyms.find_symbols(image)
    except ExtractError:
        return None  # no kallsyms: no header is dropped as unbuilt
    return frozenset(name for _, _, name in table.symbols)


def generate_from(archive: bytes, config: bytes | None, symbols: frozenset[str] | None, *,
                  limits: Limits | None = None, cache: Path | None = None,
                  pahole: tuple[str, str] | None = None) -> Generated:
    """BTF from a headers archive (the .tar.xz bytes), the kernel's .config and symbol names."""
    sha = hashlib.sha256(archive).hexdigest()
    members = pipeline.archive_members(archive, (pipeline.AUTOCONF_H, pipeline.UTSRELEASE_H))
    autoconf, configuration = debuginfo.autoconf_for(members.get(pipeline.AUTOCONF_H), config)
    release = pipeline.release_from_archive(archive, members.get(pipeline.UTSRELEASE_H, b""))
    target = debuginfo.target_for(archive, autoconf, release)
    pahole = pahole or pahole_command()
    key = _cache_key(sha, autoconf, target, pahole, symbols)
    out_dir = (cache or debuginfo.cache_root()) / key
    if (out_dir / "btf.json").is_file() and (out_dir / "vmlinux.btf").is_file():
        return _loaded(out_dir, True, configuration)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix=f".{key}.", dir=out_dir.parent) as staging,
          tempfile.TemporaryDirectory(prefix="extract-ikheaders-btf-", dir=debuginfo.scratch_root()) as tmp):
        tree = Path(tmp) / "headers"
        unpack.extract(archive, tree)
        (tree / "include" / "generated" / "autoconf.h").write_bytes(autoconf)
        staged = Path(staging) / "out"
        staged.mkdir()
        compiled, dropped = _build(tree, Path(tmp), target, pahole, symbols, staged / "vmlinux.btf",
                                   limits or Limits())
        meta = {"release": release, "arch": target.name, "archive_sha256": sha, "compiled": list(compiled),
                "dropped": [[d.header, d.reason, d.kind] for d in dropped], "symbols": len(symbols or ()),
                "pahole": pahole[1]}
        (staged / "btf.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        try:
            staged.rename(out_dir)
        except OSError:  # another process finished the same build first: use theirs
            if not (out_dir / "btf.json").is_file():
                raise
    return _loaded(out_dir, False, configuration)


def _loaded(out_dir: Path, cached: bool, configuration: str) -> Generated:
    meta = json.loads((out_dir / "btf.json").read_text())
    path = out_dir / "vmlinux.btf"
    blob = btf.parse(path.read_bytes(), WHERE)
    if blob is None:
        raise TypesError(f"{path}: the cached BTF does not check out; remove {out_dir}")
    return Generated(path, blob, meta["release"], meta["arch"], tuple(meta["compiled"]),
                     tuple(Dropped(*item) for item in meta["dropped"]), int(meta["symbols"]), str(meta["pahole"]),
                     cached, configuration)


def _cache_key(sha: str, autoconf: bytes, target: Target, pahole: tuple[str, str],
               symbols: frozenset[str] | None) -> str:
    names = hashlib.sha256("\n".join(sorted(symbols)).encode()).hexdigest() if symbols is not None else None
    identity = {"producer": producer(sys.modules[__name__], debuginfo, confined_cc), "archive": sha,
                "autoconf": hashlib.sha256(autoconf).hexdigest(), "compiler": list(target.compiler),
                "version": debuginfo.compiler_version(target.compiler), "flags": list(target.flags),
                "pahole": list(pahole), "symbols": names}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"btf-{sha[:16]}-{digest[:16]}"


# --- pahole ----------------------------------------------------------------------------------------


def pahole_command() -> tuple[str, str]:
    """(pahole's path, its version): $EXTRACT_IKHEADERS_PAHOLE, else pahole on PATH."""
    path = os.environ.get(PAHOLE_ENV) or shutil.which("pahole")
    if not path:
        raise ToolError("generating BTF needs pahole, the kernel's BTF encoder: install it (Debian and Ubuntu: "
                        f"apt install pahole; Fedora: dnf install dwarves) or set {PAHOLE_ENV}")
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"cannot run pahole ({path}): {getattr(exc, 'strerror', None) or exc}") from None
    version = proc.stdout.strip()
    if proc.returncode != 0 or not re.fullmatch(r"v?\d+\.\d+.*", version):
        raise ToolError(f"{path} does not answer --version as pahole does")
    return path, version


def _encode(pahole: tuple[str, str], obj: Path, dest: Path, limits: Limits) -> None:
    proc = confined_cc.run_tool([pahole[0], f"--btf_encode_detached={dest}", str(obj)], obj.parent, limits)
    if proc.returncode != 0 or not dest.is_file():
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise TypesError(f"pahole {pahole[1]} could not encode the types: {detail[-1] if detail else 'no output'}")
    if btf.parse(dest.read_bytes(), WHERE) is None:
        raise TypesError(f"pahole {pahole[1]} wrote a BTF blob that does not check out")


# --- the unit --------------------------------------------------------------------------------------


def _build(tree: Path, work: Path, target: Target, pahole: tuple[str, str], symbols: frozenset[str] | None,
           dest: Path, limits: Limits) -> tuple[tuple[str, ...], tuple[Dropped, ...]]:
    headers, dropped = compile_types(tree, work, target, symbols, limits)
    _encode(pahole, work / "btf.o", dest, limits)
    return headers, dropped


def compile_types(tree: Path, work: Path, target: Target, symbols: frozenset[str] | None,
                  limits: Limits) -> tuple[tuple[str, ...], tuple[Dropped, ...]]:
    """work/btf.o: the DWARF of every header that compiles (see the module); the headers of its unit
    and those left out."""
    flags = _flags(tree, target, work / "stubs")
    include_dirs = [Path(f[2:]) for f in flags if f.startswith("-I")]
    confined_cc.check_tree(tree, include_dirs)
    stub_missing_includes(tree, include_dirs, work / "stubs")
    headers, dropped = candidates(tree, target.arch, symbols)
    cc_dir = work / "cc"
    cc_dir.mkdir()
    unit = cc_dir / "btf.c"
    allowed = [tree, work / "stubs"]
    headers, failed = _compiling(target.compiler, flags, headers, unit, allowed, limits)
    proc = confined_cc.compile_unit(target.compiler, [*flags, "-g", "-gdwarf-4",
                                                      "-fno-eliminate-unused-debug-types"],
                                    unit, work / "btf.o", allowed, limits)
    if proc.returncode != 0:
        raise TypesError(f"the headers that passed the checks do not compile with debug info: "
                         f"{debuginfo.first_error(proc.stderr)}")
    return tuple(headers), (*dropped, *failed)


def _flags(tree: Path, target: Target, stubs: Path) -> list[str]:
    """debuginfo's kbuild-like flags, optimising as kbuild does (at -O0 a file-scope BUILD_BUG_ON in a
    header is a syntax error), and the stub directory searched last."""
    flags = [f for f in debuginfo.compile_flags(tree, target)
             if f not in ("-O0", "-g", "-gdwarf-4", "-fno-eliminate-unused-debug-types")]
    return [*flags, "-O2", f"-idirafter{stubs}"]


def _compiling(compiler: Sequence[str], flags: Sequence[str], headers: list[str], unit: Path,
               allowed: Sequence[Path], limits: Limits) -> tuple[list[str], list[Dropped]]:
    """The headers left once every header the compiler charges an error to is dropped, round by round."""
    failed: list[Dropped] = []
    for _ in range(MAX_ROUNDS):
        unit.write_text("".join(f"#include <{h}>\n" for h in headers))
        proc = confined_cc.check_unit(compiler, flags, unit, allowed, limits)
        if proc.returncode == 0:
            return headers, failed
        errors = debuginfo.charged_errors(proc.stderr, unit.name)
        bad = {headers[n - 1]: message for n, message in errors.items() if 0 < n <= len(headers)}
        if not bad:
            raise TypesError(f"the headers do not compile: {debuginfo.first_error(proc.stderr)}")
        failed += [Dropped(h, f"does not compile after the headers before it: {m}", "does not compile")
                   for h, m in bad.items()]
        headers = [h for h in headers if h not in bad]
    raise TypesError(f"the headers still do not compile after {MAX_ROUNDS} rounds of dropping the failing ones")


# --- the headers -----------------------------------------------------------------------------------


def candidates(tree: Path, arch: str, symbols: frozenset[str] | None) -> tuple[list[str], list[Dropped]]:
    """The unit's headers in order, and those left out with their reasons."""
    include = tree / "include"
    core = [h for h in dict.fromkeys(debuginfo.HEADERS) if (include / h).is_file()]
    dropped: list[Dropped] = []
    rest: list[str] = []
    for name, path in _headers(include, tree / "arch" / arch / "include"):
        if name in core:
            continue
        top = name.split("/", 1)[0]
        if top in SKIPPED_DIRS:
            continue  # whole directories: reported once each, below
        text = path.read_bytes()
        unsuitable = _unsuitable(text, symbols)
        if unsuitable:
            dropped.append(Dropped(name, *unsuitable))
        else:
            rest.append(name)
    dropped += [Dropped(f"include/{d}/", f"in include/{d}/: {why}", "directory") for d, why in SKIPPED_DIRS.items()
                if (include / d).is_dir()]
    rest.sort(key=lambda h: (not h.startswith("linux/"), h.startswith("asm/"), h.count("/"), h))
    return [*core, *rest], dropped


def _headers(include: Path, arch_include: Path) -> Iterator[tuple[str, Path]]:
    """(the name a unit includes it by, its path): include/**.h, then arch/<arch>/include/asm/**.h."""
    for base, prefix in ((include, ""), (arch_include / "asm", "asm/")):
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.h")):
            relative = path.relative_to(base).as_posix()
            if path.is_file() and not path.is_symlink() and (prefix or "/" in relative):
                yield prefix + relative, path


def _unsuitable(text: bytes, symbols: frozenset[str] | None) -> tuple[str, str] | None:
    """(reason, kind) when the header is no unit of its own."""
    if not _GUARD.match(text):
        return NO_GUARD, "template"
    if symbols is None:
        return None
    declared = sorted({n.decode() for n in _PROTOTYPE.findall(_COMMENT.sub(b"", text))
                       if not n.startswith(b"__")})
    if declared and not symbols.intersection(declared):
        shown = ", ".join(declared[:3]) + (", ..." if len(declared) > 3 else "")
        return (f"declares {len(declared)} function{'s' if len(declared) > 1 else ''} ({shown}), none in the "
                "kernel's symbol table: a subsystem this kernel does not build", "unbuilt subsystem")
    return None


def stub_missing_includes(tree: Path, include_dirs: Sequence[Path], stubs: Path) -> int:
    """For every file a header includes that the archive lacks, a stub whose #error the compiler
    charges to the including header (a missing include would stop the whole compile). Angle names
    go to `stubs` (searched last); quoted ones where their name points, when that is inside the tree."""
    made = 0
    bases = [str(d) for d in include_dirs]
    for path, quote, name in _includes(tree):
        here = str(path.parent)
        if _resolves(name, [here, *bases] if quote == '"' else bases):
            continue
        base = here if quote == '"' and not _resolves(name, [str(stubs)]) else str(stubs)
        root = str(tree) if base == here else str(stubs)
        stub = os.path.normpath(os.path.join(base, name))
        if not stub.startswith(root + os.sep) or os.path.exists(stub):
            continue
        os.makedirs(os.path.dirname(stub), exist_ok=True)
        Path(stub).write_text(f'#error "{_c_string(name)}: not in the headers archive"\n')
        made += 1
    return made


def _includes(tree: Path) -> Iterator[tuple[Path, str, str]]:
    pattern = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]*)[>"]', re.M)
    for path in tree.rglob("*.h"):
        for quote, name in pattern.findall(path.read_bytes()):
            yield path, quote.decode(), name.decode("utf-8", "replace")


def _resolves(name: str, bases: Iterable[str]) -> bool:
    return any(os.path.isfile(os.path.join(base, name)) for base in bases)


def _c_string(name: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in name)


# --- which BTF ---------------------------------------------------------------------------------------

SOURCES = ("auto", "image", "headers")


def for_kernel(image: str | os.PathLike[str], source: str = "auto", *, limits: Limits | None = None,
               cache: Path | None = None) -> btf.Btf | Generated:
    """The kernel's BTF: its own (`image`), generated from its headers (`headers`), or its own when
    it has one and else generated (`auto`). NotFound from `image` when the kernel has none."""
    if source not in SOURCES:
        raise ValueError(f"BTF source {source!r} is not one of {', '.join(SOURCES)}")
    if source != "headers":
        try:
            return btf.kernel_btf(image)
        except NotFound:
            if source == "image":
                raise
    return generate(image, limits=limits, cache=cache)


def stored(found: btf.Btf | Generated, cache: Path | None = None) -> Path:
    """A file holding the blob, for tools that take a path: a generated blob's cache entry, or a copy of
    the kernel's own BTF in the cache, named by its sha256."""
    if isinstance(found, Generated):
        return found.path
    digest = hashlib.sha256(found.data).hexdigest()
    path = (cache or debuginfo.cache_root()) / f"btf-own-{digest[:32]}" / "vmlinux.btf"
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".vmlinux.btf.", delete=False) as tmp:
            tmp.write(found.data)
        os.replace(tmp.name, path)
    return path
