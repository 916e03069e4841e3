"""Compiling an image's headers without letting them reach the rest of the machine.

The headers come from the image, so they are the attacker's. A header can `#include` (or
`#include_next`, `__has_include`) any file, `.incbin` or `.include` one from inline assembly, or
include /dev/zero and grow the compiler without bound. The compile is therefore split so that each
step can only see what was checked before it:

1. Every header in the tree is scanned: an include that is absolute or resolves outside the tree,
   or an assembler `.incbin`/`.include` naming a file outside it, refuses the input (UnsafeHeaders,
   naming the header).
2. The preprocessor runs alone (`-E -H`); every file it opened must lie under the allowed roots
   (computed includes get past step 1; -H lists what was really opened).
3. The compiler proper reads only that preprocessed unit (`-S`), and every inline-assembly region of
   its output (`#APP` .. `#NO_APP`, the header's own assembly) is cut before the assembler runs:
   the types come from the compiler's DWARF, never from a header's assembly.
4. Each step runs in an empty working directory under resource limits set in the child (address
   space, CPU seconds, output file size) and a wall-clock limit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParserSignal, UnsafeArchive
from ..imagetext import decode, shown
from . import DEFAULT_COMPILE_SECONDS

if TYPE_CHECKING:
    import subprocess

DEFAULT_SECONDS = DEFAULT_COMPILE_SECONDS


@dataclass(frozen=True)
class Limits:
    """What one compiler step may use. The kernel headers' types unit needs about 300 MB and a few
    seconds; the bounds leave room for slow machines and big configurations, not for a hostile file."""

    seconds: float = DEFAULT_SECONDS  # wall clock, per step (--compile-timeout)
    cpu_seconds: int = 300
    address_space: int = 4 << 30
    file_size: int = 512 << 20


class UnsafeHeaders(UnsafeArchive):
    """A header in the archive reaches outside it (absolute or escaping include, .incbin)."""


class LimitExceeded(ParserSignal):
    """A compiler step ran out of its time or resources (reported by the caller)."""


# --- 1. the tree, scanned --------------------------------------------------------------------------

_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include(?:_next)?[ \t]*([<"])([^>"\n]*)[>"]', re.M)
_HAS_INCLUDE = re.compile(rb'__has_include(?:_next)?[ \t]*\([ \t]*([<"])([^>"\n]*)[>"]')
_ASM_FILE = re.compile(rb'\.(incbin|include)[ \t]+\\?"([^"\\\n]*)')


def check_tree(tree: Path, include_dirs: Sequence[Path]) -> None:
    """Refuse the tree if a header names a file outside it (UnsafeHeaders, naming the header)."""
    root = os.path.realpath(tree)
    system = [os.path.realpath(base) for base in include_dirs]
    for here, path in _files(tree):
        text = path.read_bytes()
        if b"include" not in text and b"incbin" not in text:
            continue
        for quote, name in (*_INCLUDE.findall(text), *_HAS_INCLUDE.findall(text)):
            _check_name(path, tree, root, name, here if quote == b'"' else system)
        for directive, name in _ASM_FILE.findall(text):
            if name.startswith(b"/") or b".." in name.split(b"/"):
                raise UnsafeHeaders(f"{path.relative_to(tree)}: assembler .{directive.decode()} of "
                                    f"{_shown(name)}, outside the headers archive")


def _check_name(header: Path, tree: Path, root: str, name: bytes, bases: Sequence[str]) -> None:
    """An absolute name, or one that leaves the tree from wherever it is looked up first (the
    including file's directory for "...", every include directory for <...>). The search past the
    first place (gcc tries the include directories after a "..." name's own directory) is for the
    preprocessor check: kernel headers such as trace/events/sof.h name "../../../sound/..." files
    the archive does not have. `bases` are real paths (resolved once per header, not per name)."""
    text = name.decode("utf-8", "surrogateescape")
    escapes = text.startswith("/") or all(
        not _within(os.path.normpath(os.path.join(base, text)), root) for base in bases)
    if escapes:
        raise UnsafeHeaders(f"{header.relative_to(tree)}: includes {_shown(name)}, outside the headers archive")


def _files(tree: Path) -> Iterator[tuple[list[str], Path]]:
    """Every file, with its directory's real path (in a list: the bases of a "..." include)."""
    for dirpath, _, filenames in os.walk(tree):
        here = [os.path.realpath(dirpath)]
        for filename in filenames:
            yield here, Path(dirpath) / filename


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _shown(name: bytes) -> str:
    return f'"{shown(decode(name))}"'


# --- 2-4. the compiler, one step at a time --------------------------------------------------------

_PREPROCESSOR_FLAG = re.compile(r"^-(I|D|U|nostdinc|idirafter)")
_OPENED = re.compile(r"^\.+ (.+)$")
_ASM_REGION = re.compile(r"^\s*(?:#|@|//|;|!)\s*APP\s*$.*?^\s*(?:#|@|//|;|!)\s*NO_APP\s*$\n?", re.M | re.S)


def compile_unit(compiler: Sequence[str], flags: Sequence[str], unit: Path, obj: Path,
                 allowed: Sequence[Path], limits: Limits) -> subprocess.CompletedProcess[str]:
    """Compile `unit` to `obj` in steps (see the module); the first step that fails is returned
    (its stderr carries the compiler's diagnostics), else the assembler's result.

    Raises UnsafeHeaders when the preprocessor opened a file outside `allowed`, LimitExceeded
    when a step ran out of time or resources."""
    work = unit.parent
    preprocessed, assembly = work / f"{unit.stem}.i", work / f"{unit.stem}.s"
    proc = _preprocess(compiler, flags, unit, preprocessed, allowed, limits)
    if proc.returncode != 0:
        return proc
    codegen = _without_preprocessor_flags(flags)
    proc = _step([*compiler, *codegen, "-S", str(preprocessed), "-o", str(assembly)], work, limits)
    if proc.returncode != 0:
        return proc
    assembly.write_text(_ASM_REGION.sub("", assembly.read_text(errors="surrogateescape")),
                        errors="surrogateescape")
    return _step([*compiler, *codegen, "-c", str(assembly), "-o", str(obj)], work, limits)


def check_unit(compiler: Sequence[str], flags: Sequence[str], unit: Path, allowed: Sequence[Path],
               limits: Limits) -> subprocess.CompletedProcess[str]:
    """Preprocess `unit` (checked as compile_unit does) and only check the result's syntax and types:
    no code, no assembler. The diagnostics of the preprocessed file point at the headers' own lines,
    a macro's error at the line that expanded it, with the include chain from the unit's line."""
    work = unit.parent
    preprocessed = work / f"{unit.stem}.i"
    proc = _preprocess(compiler, flags, unit, preprocessed, allowed, limits)
    if proc.returncode != 0:
        return proc
    return _step([*compiler, *_without_preprocessor_flags(flags), "-fsyntax-only", str(preprocessed)], work, limits)


def run_tool(argv: list[str], cwd: Path, limits: Limits) -> subprocess.CompletedProcess[str]:
    """A program run on the compiler's output (pahole on the types object), under the same limits."""
    return _step(argv, cwd, limits)


def _preprocess(compiler: Sequence[str], flags: Sequence[str], unit: Path, out: Path, allowed: Sequence[Path],
                limits: Limits) -> subprocess.CompletedProcess[str]:
    proc = _step([*compiler, *flags, "-E", "-H", str(unit), "-o", str(out)], unit.parent, limits)
    _check_opened(proc.stderr, allowed)
    return proc


def _without_preprocessor_flags(flags: Sequence[str]) -> list[str]:
    kept: list[str] = []
    skip_next = False
    for flag in flags:
        if skip_next:
            skip_next = False
        elif flag == "-include":
            skip_next = True
        elif not _PREPROCESSOR_FLAG.match(flag):
            kept.append(flag)
    return kept


def _check_opened(stderr: str, allowed: Sequence[Path]) -> None:
    """Every header the preprocessor opened (-H prints them, one dot per nesting level) lies under
    an allowed root."""
    roots = [os.path.realpath(root) for root in allowed]
    for line in stderr.splitlines():
        match = _OPENED.match(line)
        if match is None:
            continue
        opened = os.path.realpath(match.group(1))
        if not any(_within(opened, root) for root in roots):
            raise UnsafeHeaders(f"the preprocessor was led to {_shown(match.group(1).encode())}, "
                                "outside the headers archive (a computed include)")


def _step(argv: list[str], cwd: Path, limits: Limits) -> subprocess.CompletedProcess[str]:
    import subprocess

    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                              timeout=limits.seconds, preexec_fn=_apply(limits), stdin=subprocess.DEVNULL,
                              env={**os.environ, "LC_ALL": "C"})  # diagnostics in ASCII, whatever the locale
    except subprocess.TimeoutExpired:
        raise LimitExceeded(f"{argv[0]} ran longer than {limits.seconds:g} s") from None
    if proc.returncode < 0:
        raise LimitExceeded(f"{argv[0]} was stopped by signal {-proc.returncode} (its CPU, memory or "
                            f"output limit: {limits.cpu_seconds} s, {limits.address_space >> 20} MiB, "
                            f"{limits.file_size >> 20} MiB)")
    if "out of memory" in proc.stderr or "virtual memory exhausted" in proc.stderr:
        raise LimitExceeded(f"{argv[0]} ran out of its {limits.address_space >> 20} MiB of memory")
    return proc


def _apply(limits: Limits) -> Callable[[], None]:
    import resource

    def lower(which: int, value: int) -> None:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # never above what we have
        resource.setrlimit(which, (value, value))

    def apply() -> None:
        lower(resource.RLIMIT_AS, limits.address_space)
        lower(resource.RLIMIT_CPU, limits.cpu_seconds)
        lower(resource.RLIMIT_FSIZE, limits.file_size)
        lower(resource.RLIMIT_CORE, 0)
    return apply
