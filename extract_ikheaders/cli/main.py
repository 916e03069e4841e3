"""Command line. The only module that imports click, prints or exits."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import imagetext, lazy, outfile
from ..analysis import DEFAULT_COMPILE_SECONDS
from ..errors import Damaged, ExtractError, InputError, NotFound, StdoutClosed, ToolError, UsageError
from ..version import __version__
from . import options as choose
from . import records
from .records import failure_line

if TYPE_CHECKING:  # loaded on first use (lazy.py): only the actions that need them pay for them
    from .. import info, model, pipeline
    from ..analysis import btf_headers, confined_cc, debuginfo, isf, kallsyms
    from ..analysis import drgn_session as kdrgn
    from ..archive import unpack
    from ..model import Extracted, Found
else:
    info = lazy.module("extract_ikheaders.info")
    pipeline = lazy.module("extract_ikheaders.pipeline")
    unpack = lazy.module("extract_ikheaders.archive.unpack")
    debuginfo = lazy.module("extract_ikheaders.analysis.debuginfo")
    isf = lazy.module("extract_ikheaders.analysis.isf")
    btf_headers = lazy.module("extract_ikheaders.analysis.btf_headers")
    kallsyms = lazy.module("extract_ikheaders.analysis.kallsyms")
    kdrgn = lazy.module("extract_ikheaders.analysis.drgn_session")
    confined_cc = lazy.module("extract_ikheaders.analysis.confined_cc")
    model = lazy.module("extract_ikheaders.model")  # dataclasses made at import: 6 ms of --version

PROG = "extract-ikheaders"

EPILOG = """\b
Examples:
  extract-ikheaders vmlinux                  unpack into ./kheaders-<release>/
  extract-ikheaders -o /tmp/kh bzImage       unpack into /tmp/kh
  extract-ikheaders -a kheaders.tar.xz kheaders.ko.zst
                                             write the exact embedded archive
  extract-ikheaders -a - vmlinux | sha256sum compare with /sys/kernel/kheaders.tar.xz
  extract-ikheaders -l vmlinux.stripped      list the members, like tar -t
  extract-ikheaders --json -a /dev/null vmlinux
                                             where and how the archive was found
  extract-ikheaders --config .config -a /dev/null bzImage
                                             the kernel's own .config (CONFIG_IKCONFIG)

\b
Exit codes:
  0    headers found (and written)
  1    no kernel headers in IMAGE ("cannot find kernel headers"), or not a kernel image
  2    usage error, IMAGE cannot be read, or a tool the action needs is missing
  3    headers found but damaged (truncated or corrupt), or the archive is unsafe to unpack
  4    internal error (a bug: please report it)
  130  interrupted (Ctrl-C)
  141  stdout was closed before the output was written (a reader such as head exited)
  With several IMAGEs: the highest of their codes.
"""


@dataclass(frozen=True)
class Options:
    output: str | None
    force: bool
    symbols: str | None
    archive_out: str | None
    list_only: bool
    config_out: str | None
    as_json: bool
    env: bool
    max_bytes: int | None
    max_members: int | None
    salvage: bool
    verify: bool = True  # --no-verify: -a and --info check the archive's structure only
    btf_from: str = "auto"  # --env: which BTF to export
    compile_timeout: float = DEFAULT_COMPILE_SECONDS
    # this invocation's unpacks, (archive sha256, target) -> result: several images holding one
    # archive unpack it once
    unpacked: dict[tuple[str, str], Extracted] = field(default_factory=dict, compare=False, repr=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.argument("images", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True, path_type=str))
@click.option("-o", "--output", type=click.Path(path_type=str), help="Unpack into DIR instead of ./kheaders-<release>.")
@click.option("--force", is_flag=True,
              help="Replace a non-empty output directory (only once the new tree is complete).")
@click.option("-a", "--archive", "archive_out", type=click.Path(allow_dash=True, path_type=str),
              help="Write the exact embedded .tar.xz to FILE ('-' for stdout) instead of unpacking.")
@click.option("-l", "--list", "list_only", is_flag=True, help="List the archive's members instead of unpacking.")
@click.option("--config", "config_out", type=click.Path(allow_dash=True, path_type=str),
              help="Also write the kernel's own .config (CONFIG_IKCONFIG) to FILE ('-' for stdout). "
                   "Succeeds even when the image has no headers.")
@click.option("--symbols", "symbols_out", type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
              help="Write the kernel's symbol table in System.map format, decoded from kallsyms, to FILE "
                   "('-' for stdout) instead of extracting. Any kernel image (vmlinux, stripped or not, raw, "
                   "compressed, bzImage, zboot) or crash dump: dumps through VMCOREINFO (6.0+) or else by "
                   "finding the tables in memory; addresses as in the crashed kernel, the KASLR offset "
                   "(when VMCOREINFO gives it) and how the table was found in --json.")
@click.option("--debuginfo", "debuginfo_out", type=click.Path(dir_okay=False, path_type=str),
              help="Write an ELF object whose DWARF describes the kernel's types (task_struct, mm, files, "
                   "namespaces, creds, modules, sockets, ...), compiled from the embedded headers with the "
                   "kernel's own configuration for its architecture; for drgn, crash or Volatility when no "
                   "vmlinux debug info exists. Cached per archive.")
@click.option("--isf", "isf_out", type=click.Path(dir_okay=False, path_type=str),
              help="Write a Volatility 3 symbol table (ISF JSON; xz-compressed when FILE ends in .xz) for a "
                   "crash dump of a 6.0+ kernel: the --debuginfo types, kallsyms through VMCOREINFO, the banner. "
                   "Use: vol -s DIR-holding-FILE -f DUMP linux.pslist. Stock Volatility reads 4-level paging "
                   "only (x86_64 kernels booted with no5lvl or without 5-level support).")
@click.option("--btf", "btf_out", type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
              help="Write the kernel's BTF (the format of /sys/kernel/btf/vmlinux) to FILE ('-' for stdout), for "
                   "libbpf CO-RE, bpftool and bpftrace: the kernel's own, exactly, when it was built with "
                   "CONFIG_DEBUG_INFO_BTF (a vmlinux, a raw or compressed image, a crash dump); else generated "
                   "from its headers and configuration (needs pahole; see --btf-from).")
@click.option("--btf-from", "btf_from", type=click.Choice(("auto", "image", "headers")), default="auto",
              show_default=True,
              help="With --btf or --env: the kernel's own BTF (image), BTF generated from its headers "
                   "(headers: the types its headers define, not those private to .c files), or its own when "
                   "it has one (auto).")
@click.option("--kernel-source", type=click.Path(file_okay=False, exists=True, path_type=str),
              help="With --debuginfo or --isf: a matching kernel source tree, for the types the headers archive cannot "
                   "give (fs/mount.h, kernel/sched/sched.h, the printk ring buffer).")
@click.option("--compile-timeout", type=click.FloatRange(min=1), default=DEFAULT_COMPILE_SECONDS, metavar="SECONDS",
              show_default=True,
              help="With --debuginfo or --isf: the wall-clock limit of each compiler step on the image's headers "
                   "(the compiler also runs under memory, CPU and output-size limits).")
@click.option("--info", "info_only", is_flag=True,
              help="Describe IMAGE (release, architecture, headers and .config built in, modular or absent, "
                   "containers, BPF-related CONFIG_ values) without unpacking anything.")
@click.option("--env", "env", is_flag=True,
              help="Unpack (or reuse a tree this tool made) and print shell exports for BCC and bpftrace: "
                   'eval "$(extract-ikheaders --env IMAGE)".')
@click.option("--live", is_flag=True,
              help="Use the running kernel: /sys/kernel/kheaders.tar.xz, else its kheaders.ko, else "
                   "/boot/vmlinuz-$(uname -r). The default when no IMAGE is given.")
@click.option("--root", type=click.Path(file_okay=False, path_type=str), default="/", show_default=True,
              help="Look for the live system's files under DIR.")
@click.option("--system-map", "symbols", type=click.Path(dir_okay=False, path_type=str),
              help="Symbols (System.map or /proc/kallsyms) for an ELF core with virtual segments such as "
                   "/proc/kcore: only the archive's bytes are read. /proc/kcore uses /proc/kallsyms.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report (one line per IMAGE) on stdout.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Work on N images at once.")
@click.option("--salvage", is_flag=True,
              help="When the archive is damaged, unpack the members that decoded completely before the damage "
                   "and say what was lost (still exit 3).")
@click.option("--max-size", type=choose.ByteSize(), default=None, metavar="SIZE",
              help="Refuse to unpack more than SIZE bytes of file data (default 1G; K, M, G, T: powers of 1024).")
@click.option("--max-members", type=click.IntRange(min=1), default=None, metavar="N",
              help="Refuse to unpack more than N members (default 200000).")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="With --archive or --info: check the archive's xz structure (sizes, CRC32s, index, the "
                   "first tar header) instead of decoding all of it; a truncated or shifted archive is still "
                   "caught, a corrupt block is not. For triage of many images. Unpacking and listing always "
                   "decode, so they always verify.")
@click.version_option(__version__, prog_name=PROG)  # not package_name: importlib.metadata costs 20 ms
def command(images: tuple[str, ...], output: str | None, force: bool, archive_out: str | None, list_only: bool,
            config_out: str | None, symbols_out: str | None, debuginfo_out: str | None, isf_out: str | None,
            btf_out: str | None, btf_from: str, kernel_source: str | None, compile_timeout: float,
            info_only: bool, env: bool, live: bool, root: str, symbols: str | None, as_json: bool, jobs: int,
            salvage: bool, max_size: int | None, max_members: int | None, no_verify: bool) -> int:
    """Extract the kernel headers archive (CONFIG_IKHEADERS) from IMAGE.

    IMAGE may be a vmlinux (with or without symbols, any architecture), a raw kernel image, an x86
    or s390 bzImage, an ARM zImage, an arm64 or riscv Image/Image.gz/Image.lzma/EFI zboot image, an
    Android boot.img, a kheaders.ko module (also
    .ko.xz/.ko.zst/.ko.gz), a crash image (ELF vmcore, kdump-compressed, flattened, LiME, raw
    memory) or a copy of /sys/kernel/kheaders.tar.xz. By default the headers are unpacked into
    ./kheaders-<release>/ and that directory is printed on stdout. Several IMAGEs may be given;
    the parts of a makedumpfile --split dump given together, in any order, are one IMAGE.
    """
    ctx = click.get_current_context()
    opts = Options(output, force, symbols, archive_out, list_only, config_out, as_json, env, max_size, max_members,
                   salvage, verify=not no_verify, btf_from=btf_from, compile_timeout=compile_timeout)
    outputs = Analysis(symbols_out, debuginfo_out, isf_out, kernel_source, compile_timeout, btf_out, btf_from)
    action = "unpack"  # what a usage error's records say when the action itself is the error
    try:
        action = choose.action(ctx)
        choose.check_applicable(ctx, action, images)
        images = _grouped(images)
        _check_options(opts, len(images))
        if action == "analysis":
            _check_analysis(outputs, len(images), as_json)
        if kernel_source is not None and debuginfo_out is None and isf_out is None:
            raise UsageError("--kernel-source goes with --debuginfo or --isf")
        if "btf_from" in choose.given(ctx) and btf_out is None and not env:
            raise UsageError("--btf-from goes with --btf or --env")
    except (UsageError, Damaged) as exc:  # Damaged: a split part's header, read to group the inputs
        if as_json:  # a record for every input all the same, so a batch report has one per input
            for image in images or ("-",):
                click.echo(records.error_record(action, image, exc))
        raise
    try:
        return _dispatch(action, images, jobs, opts, outputs, live, root)
    except BrokenPipeError:
        raise StdoutClosed("stdout was closed") from None  # not an OSError: click would make that exit 1


def _grouped(images: tuple[str, ...]) -> tuple[str, ...]:
    """The parts of a makedumpfile --split dump given together are one IMAGE (stdin never is a part)."""
    return pipeline.group_inputs(images) if len(images) > 1 else images


def _dispatch(action: str, images: tuple[str, ...], jobs: int, opts: Options, outputs: Analysis, live: bool,
              root: str) -> int:
    if live or not images:
        images = (_live_source(root),)
    with _stdin_spooled(images) as (paths, shown_as):
        return _run_action(action, paths, jobs, opts, outputs, shown_as)


def _run_action(action: str, images: tuple[str, ...], jobs: int, opts: Options, outputs: Analysis,
                shown_as: dict[str, str]) -> int:
    as_json = opts.as_json
    work: Callable[[str], list[tuple[bool, str]]] = {
        "analysis": lambda image: _analysis(image, outputs, as_json),
        "info": lambda image: _info(image, as_json, opts.verify),
        "config": lambda image: _config_only(image, opts),
    }.get(action, lambda image: _one(image, opts))
    if shown_as:  # the spooled stdin: every line says "-", never the temporary file's name
        work = _renamed(work, shown_as)
    return _run_all(images, 1 if action == "analysis" else jobs, work, as_json and _json_action(action, opts),
                    shown_as)


def _json_action(action: str, opts: Options) -> str:
    return _unpack_action(opts) if action == "unpack" else action


@contextmanager
def _stdin_spooled(images: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    """IMAGE `-` is stdin (`adb exec-out cat /dev/block/by-name/boot | extract-ikheaders -`), copied
    to a private temporary file first: the readers map and seek their input."""
    if "-" not in images:
        yield images, {}
        return
    if images.count("-") > 1:
        raise UsageError("- (stdin) can be given once")
    if sys.stdin.isatty():
        raise UsageError("- reads the image from stdin, which is a terminal; pipe or redirect the image into it")
    with tempfile.TemporaryDirectory(prefix="extract-ikheaders-stdin-") as tmp:
        spool = os.path.join(tmp, "stdin")
        try:
            with open(spool, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        except OSError as exc:
            raise UsageError(f"cannot copy stdin to {tmp}: {exc.strerror or exc}") from None
        yield tuple(spool if image == "-" else image for image in images), {spool: "-"}


def _renamed(work: Callable[[str], list[tuple[bool, str]]],
             shown_as: dict[str, str]) -> Callable[[str], list[tuple[bool, str]]]:
    """`work`, with the spooled file's name shown as the user gave it."""

    def renamed(image: str) -> list[tuple[bool, str]]:
        lines = work(image)
        for real, shown in shown_as.items():
            lines = [(err, line.replace(real, shown)) for err, line in lines]
        return lines

    return renamed


def _check_options(opts: Options, count: int) -> None:
    """What options.py's table cannot say: who gets stdout, and options that take one IMAGE. (Two
    actions, or an option the action ignores, options.check_applicable has refused already.)"""
    if opts.archive_out == "-" and opts.as_json:
        raise UsageError("--archive - and --json both want stdout")
    if opts.archive_out == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a binary archive to a terminal; redirect stdout or give a file")
    if opts.config_out == "-" and (opts.as_json or opts.archive_out in ("-", None) or opts.list_only):
        raise UsageError("--config - needs stdout to itself: use it with --archive FILE, or give a file")
    if count > 1 and any(x is not None for x in (opts.output, opts.archive_out, opts.config_out)):
        raise UsageError("--output, --archive and --config take one IMAGE")


def _unpack_action(opts: Options) -> str:
    return "archive" if opts.archive_out is not None else "list" if opts.list_only else "unpack"


def _run_all(images: tuple[str, ...], jobs: int, work: Callable[[str], list[tuple[bool, str]]],
             json_action: str | bool = False, shown_as: dict[str, str] | None = None) -> int:
    """Run `work` on every image (N at a time), print each one's lines in input order, and
    return the worst exit code. With `json_action`, a failed image gets its JSON record too."""

    def guarded(image: str) -> tuple[int, list[tuple[bool, str]]]:
        try:
            return 0, work(image)
        except ExtractError as exc:
            shown = (shown_as or {}).get(image, image)
            if exc.path == image:
                exc.path = shown
            code, line = failure_line(exc, shown)
            lines = [(True, f"{PROG}: {line}")]
            if isinstance(json_action, str):
                lines.append((False, records.error_record(json_action, shown, exc)))
            return code, lines

    if jobs > 1 and len(images) > 1:
        results = _in_workers(guarded, images, jobs)
    else:
        results = [guarded(image) for image in images]
    for _, lines in results:
        for to_stderr, line in lines:
            _echo(line, err=to_stderr)
    return max(code for code, _ in results)


_WORK: Callable[[str], tuple[int, list[tuple[bool, str]]]] | None = None


def _in_workers(work: Callable[[str], tuple[int, list[tuple[bool, str]]]], images: tuple[str, ...],
                jobs: int) -> list[tuple[int, list[tuple[bool, str]]]]:
    """`work` on every image in `jobs` forked processes, results in input order. Processes, not
    threads: carving and tar walking are Python loops that hold the GIL (threads gave 1.6x on 2
    cores). Forked, so a worker has the parent's modules and `work` without pickling it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _WORK
    _WORK = work
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_work_in_child, images, chunksize=1))
    finally:
        _WORK = None


def _work_in_child(image: str) -> tuple[int, list[tuple[bool, str]]]:
    assert _WORK is not None  # set by _in_workers before the fork
    return _WORK(image)


def _echo(line: str, err: bool = False) -> None:
    """Every line this tool prints: whatever an image put in it (a release, a banner, a member name)
    reaches the terminal escaped (imagetext.shown), so it can neither split the line nor drive it."""
    click.echo(imagetext.shown(line), err=err)


def _one(image: str, opts: Options) -> list[tuple[bool, str]]:
    """Everything asked for one image; returns the lines to print as (to_stderr, text)."""
    out: list[tuple[bool, str]] = []
    config_report = _write_config(image, opts.config_out) if opts.config_out is not None else None
    try:
        with _progress_bar(image) as progress:
            # Unpacking and listing decode it all, which verifies it: no decode before them.
            found = pipeline.find(image, symbols=opts.symbols, progress=progress,
                                  verify=opts.verify and opts.archive_out is not None)
    except Damaged as exc:
        if not opts.salvage or exc.data is None or opts.archive_out is not None or opts.list_only:
            raise
        _salvage(image, exc, opts)
    except NotFound as exc:
        if config_report is None:
            raise info.explained(exc, image) from None
        out.append((True, f"{PROG}: {exc}; wrote only the .config"))
        if opts.as_json:
            out.append((False, records.record(_unpack_action(opts), image, {"config": config_report, "archive": None})))
        return out
    # Without --json nothing reads the report: no sha256 of the archive to compute (7 ms of -a).
    report = _report(found) if opts.as_json else {"archive": {}, "notes": []}
    if config_report is not None:
        report["config"] = config_report
    if opts.archive_out is not None:
        _write_archive(found.archive, opts.archive_out)
        report["output"] = {"archive": opts.archive_out}
    elif opts.list_only:
        names, report["members"] = _member_lines(found, opts)
        report["archive"]["verified"] = str(model.Check.CONTENT)
        if not opts.as_json:
            out.extend((False, name) for name in names)
    else:
        extracted, name_note = _unpack(found, opts)
        if name_note is not None:
            report["notes"].append(name_note)
            out.append((True, f"{PROG}: {image}: {name_note}"))
        if extracted.lost is not None:  # the xz stream was whole but the tar in it was not
            raise Damaged(f"the headers archive is damaged; salvaged {extracted.members} members "
                          f"into {extracted.directory}; lost: {extracted.lost}", path=found.path)
        report["members"] = extracted.members
        report["archive"]["verified"] = str(model.Check.CONTENT)  # decoded whole now, or when the reused tree was made
        report["output"] = {"directory": extracted.directory, "bytes": extracted.bytes_written,
                            "reused": extracted.reused}
        report["incidents"] = [vars(i) for i in extracted.incidents]
        out.extend((True, f"{PROG}: {i.member}: {i.problem} ({i.action})") for i in extracted.incidents)
        if opts.env:
            out.extend((False, line) for line in _env_lines(extracted.directory))
            out.extend(_env_btf(image, opts))
        elif not opts.as_json:
            out.append((False, extracted.directory))
        out.append((True, _summary(found, extracted)))
    if opts.as_json:
        platform = pipeline.platform_of(found)
        report["platform"] = platform.as_dict() if platform is not None else None
        out.append((False, records.record(_unpack_action(opts), image, report)))
    return out


def _config_only(image: str, opts: Options) -> list[tuple[bool, str]]:
    """--config FILE IMAGE on its own: the kernel's .config and nothing else."""
    assert opts.config_out is not None and opts.config_out != "-"  # _check_options: stdout needs -a FILE
    report = _write_config(image, opts.config_out)
    if opts.as_json:
        return [(False, records.record("config", image, {"config": report}))]
    return [(True, f"{PROG}: {image}: .config ({report['size']:,} bytes, {report['method']}) "
                   f"written to {opts.config_out}")]


@contextmanager
def _progress_bar(image: str) -> Iterator[Callable[[int, int], None] | None]:
    """A bar on stderr while a crash image is searched, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=1, label=f"searching {os.path.basename(image)}", file=sys.stderr,
                           show_percent=True) as bar:

        def update(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        yield update


@contextmanager
def _status(image: str, doing: str) -> Iterator[None]:
    """A line on stderr while a slow step runs (compiling the types, starting drgn), erased when it
    ends; only when stderr is a terminal, so that scripts' stderr stays clean."""
    if not sys.stderr.isatty():
        yield
        return
    click.echo(f"{PROG}: {os.path.basename(image)}: {doing}...", err=True, nl=False)
    try:
        yield
    finally:
        click.echo("\r\x1b[K", err=True, nl=False)


TYPES_STEP = "building the kernel's types from its headers (a first run for an archive takes 10-40 s)"
BTF_STEP = "finding the kernel's BTF, or generating it from its headers (a first run for an archive takes 15-40 s)"


def _check_analysis(outputs: Analysis, count: int, as_json: bool) -> None:
    if count > 1:
        raise UsageError("--symbols, --debuginfo, --isf and --btf take one IMAGE")
    if outputs.isf_out == "-":
        raise UsageError("--isf needs a file, not stdout (Volatility reads it from a directory)")
    if outputs.symbols_out == "-" and as_json:
        raise UsageError("--symbols - and --json both want stdout")
    if outputs.btf_out == "-" and (as_json or outputs.symbols_out == "-"):
        raise UsageError("--btf - and " + ("--json" if as_json else "--symbols -") + " both want stdout")
    if outputs.debuginfo_out == "-":
        raise UsageError("--debuginfo needs a file, not stdout")


@dataclass(frozen=True)
class Analysis:
    """The outputs asked of a crash image for analysis tools."""

    symbols_out: str | None
    debuginfo_out: str | None
    isf_out: str | None
    kernel_source: str | None
    compile_timeout: float = DEFAULT_COMPILE_SECONDS
    btf_out: str | None = None
    btf_from: str = "auto"

    def limits(self) -> confined_cc.Limits:
        return confined_cc.Limits(seconds=self.compile_timeout)


def _analysis(image: str, outputs: Analysis, as_json: bool) -> list[tuple[bool, str]]:
    """--symbols, --debuginfo and/or --isf: what a debugger needs from a crash image, one JSON report."""
    symbols_out, debuginfo_out, kernel_source = outputs.symbols_out, outputs.debuginfo_out, outputs.kernel_source
    report: dict[str, Any] = {"input": image}
    lines: list[tuple[bool, str]] = []
    if outputs.isf_out is not None:
        report["isf"] = _isf(image, outputs.isf_out, kernel_source, outputs.limits())
        lines.extend(_isf_lines(image, report["isf"]))
    if debuginfo_out is not None:
        report["debuginfo"] = _debuginfo(image, debuginfo_out, kernel_source, outputs.limits())
        info = report["debuginfo"]
        lines.append((True, f"{PROG}: {image}: types of {info['release'] or 'the kernel'} ({info['arch']}, "
                            f"{info['globals']} globals typed{', cached' if info['cached'] else ''}) "
                            f"written to {debuginfo_out}"))
    if symbols_out is not None:
        report["symbols"] = _symbols(image, symbols_out)
        lines.append((True, _symbols_line(image, report["symbols"])))
    if outputs.btf_out is not None:
        with _status(image, BTF_STEP):
            report["btf"] = _btf(image, outputs.btf_out, outputs.btf_from, outputs.limits())
        lines.append((True, _btf_line(image, report["btf"])))
    return [(False, records.record("analysis", image, report))] if as_json else lines


def _symbols(image: str, dest: str) -> dict[str, Any]:
    """--symbols: the kernel's kallsyms as System.map lines, sorted by address."""
    table = kallsyms.find_symbols(image)
    _write_archive(table.system_map(), dest)
    return {**table.as_dict(), "output": dest}


def _symbols_line(image: str, report: dict[str, Any]) -> str:
    layers = report["layers"]
    how = ("through VMCOREINFO" if report["method"] == "vmcoreinfo"
           else f"located at {report['offset']:#x} in {layers[-1]['format'] if layers else 'the file'}")
    kaslr = f", KASLR offset {report['kaslr_offset']:#x}" if report["kaslr_offset"] is not None else ""
    return f"{PROG}: {image}: {report['count']} symbols ({how}{kaslr}) written to {report['output']}"


def _btf(image: str, dest: str, source: str, limits: confined_cc.Limits) -> dict[str, Any]:
    """--btf: the kernel's own BTF, exactly, or one generated from its headers."""
    found = btf_headers.for_kernel(image, source, limits=limits)
    blob = found.blob if isinstance(found, btf_headers.Generated) else found
    _write_archive(blob.data, dest)
    return {**found.as_dict(), "output": dest}


def _btf_line(image: str, report: dict[str, Any]) -> str:
    size = f"{report['types']:,} types, {report['named_structs']:,} named structs and unions, {report['bytes']:,} bytes"
    if report["source"] == "image":
        return f"{PROG}: {image}: the kernel's own BTF ({size}, {report['where']}) written to {report['output']}"
    cached = ", cached" if report["cached"] else ""
    return (f"{PROG}: {image}: BTF generated from the kernel's headers ({size}; {report['headers_compiled']:,} "
            f"headers compiled, {report['headers_dropped']:,} left out, --json lists them{cached}) "
            f"written to {report['output']}")


def _isf(image: str, dest: str, kernel_source: str | None, limits: confined_cc.Limits) -> dict[str, Any]:
    """--isf: a Volatility 3 symbol table for a crash dump."""

    with _status(image, TYPES_STEP):
        return isf.make_isf(image, dest, kernel_source=kernel_source, limits=limits).as_dict()


def _isf_lines(image: str, report: dict[str, Any]) -> list[tuple[bool, str]]:
    lines = [(True, f"{PROG}: {image}: Volatility 3 symbol table ({report['user_types']} types, "
                    f"{report['symbols']} symbols{', cached types' if report['types_cached'] else ''}) "
                    f"written to {report['output']}")]
    if report["recovered"]:
        lines.append((True, f"{PROG}: {image}: kallsyms has no data symbols (no CONFIG_KALLSYMS_ALL); found "
                            f"{', '.join(report['recovered'])} in the kernel image"))
    lines.extend((True, f"{PROG}: {image}: warning: {warning}") for warning in report["warnings"])
    if report["missing_types"]:
        lines.append((True, f"{PROG}: {image}: warning: the types lack {', '.join(report['missing_types'])}, "
                            "which Volatility 3 requires"))
    return lines


def _debuginfo(image: str, dest: str, kernel_source: str | None, limits: confined_cc.Limits) -> dict[str, Any]:
    """--debuginfo: the types object (built, or from the cache) copied to `dest`."""

    with _status(image, TYPES_STEP):
        types = debuginfo.build_types(image, kernel_source=kernel_source, limits=limits)
    _write_archive(types.path.read_bytes(), dest)
    return {**types.as_dict(), "output": dest, "cache": str(types.path)}


def _info(image: str, as_json: bool, verify: bool) -> list[tuple[bool, str]]:
    report = info.describe(image, verify=verify)
    if as_json:
        return [(False, records.record("info", image, report))]
    headers, config = report["headers"], report["config"]
    lines = [f"image:    {image}", f"release:  {report.get('release') or 'unknown'}",
             f"arch:     {_arch_line(report)}"]
    if report.get("banner"):
        lines.append(f"banner:   {report['banner']}")
    chain = " -> ".join(f"{layer['format']}@{layer['offset']:#x}" for layer in report.get("layers", []))
    lines.append(f"layers:   {chain or '(none)'}")
    if report.get("split"):
        lines.append(f"split:    {_split_line(report['split'])}")
    if headers["status"] == "present":
        where = {"kernel": "built in", "module": "in this module", "dump": "in the dump's memory",
                 "archive": "the input is the archive"}[headers["in"]]
        checked = "; xz structure checked, not decoded" if headers.get("verified") == "structure" else ""
        lines.append(f"headers:  {where} ({headers['method']}, {headers['size']:,} bytes at {headers['offset']:#x}, "
                     f"sha256 {headers['sha256']}{checked})")
    else:
        lines.append(f"headers:  {headers['status']}: {headers.get('hint') or headers['reason']}")
    lines.append(f"config:   {config['status']}" + (f" ({config['method']})" if config["status"] == "present" else ""))
    options = report["options"]
    if options:
        lines.append("options:  " + " ".join(f"{k}={v}" for k, v in options.items()))
    return [(False, line) for line in lines]


def _arch_line(report: dict[str, Any]) -> str:
    """'powerpc, 64-bit big-endian (ELF header)'; only what is known."""
    if not report.get("arch"):
        return "unknown"
    platform = report.get("platform") or {}
    size = f"{platform['bits']}-bit " if platform.get("bits") else ""
    order = f"{report['endian']}-endian" if report.get("endian") else "byte order unknown"
    source = f" ({platform['source']})" if platform.get("source") else ""
    return f"{report['arch']}, {size}{order}{source}"


def _split_line(split: dict[str, Any]) -> str:
    """'3 parts of a makedumpfile --split dump, whole (pfns 0x0-0x17fd9)', or what is missing."""
    parts, last = split["parts"], split["max_mapnr"] - 1
    what = f"{len(parts)} parts of a makedumpfile --split dump" if len(parts) > 1 else \
        "one part of a makedumpfile --split dump"
    if not split["missing"]:
        return f"{what}, whole (pfns 0x0-{last:#x})"
    missing = ", ".join(f"{m['start_pfn']:#x}-{m['end_pfn'] - 1:#x}" for m in split["missing"])
    return f"{what}; pfns {missing} (of 0x0-{last:#x}) are in parts not given, which are needed for the rest"


def _write_config(image: str, dest: str) -> dict[str, Any]:
    import hashlib

    config = pipeline.find_config(image)
    _write_archive(config.text, dest)
    return {"offset": config.offset, "size": len(config.text), "method": str(config.method),
            "sha256": hashlib.sha256(config.text).hexdigest(), "output": dest,
            "layers": [layer.as_dict() for layer in config.layers]}


def _salvage(image: str, damage: Damaged, opts: Options) -> NoReturn:
    """Unpack what a damaged archive still gives, then report the damage (exit 3)."""
    assert damage.data is not None
    found = model.Found(path=image, method=model.Method.CARVE, offset=damage.offset or 0, archive=damage.data)
    extracted, _ = _unpack(found, opts)
    lost = extracted.lost or "nothing (the damage lies after the last member)"
    raise Damaged(f"{damage}; salvaged {extracted.members} members into {extracted.directory}; lost: {lost}",
                  offset=damage.offset)


def _member_lines(found: Found, opts: Options) -> tuple[list[str], int]:
    """What `tar -t` prints for the archive (the root "./" included), and the count of members
    without the root (the JSON `members`)."""
    members = unpack.list_members(found.archive, base_offset=found.offset,
                                  max_bytes=opts.max_bytes or unpack.DEFAULT_MAX_BYTES,
                                  max_members=opts.max_members or unpack.DEFAULT_MAX_MEMBERS, root=True)
    return [m.stored for m in members], sum(1 for m in members if m.name)


def _unpack(found: Found, opts: Options) -> tuple[Extracted, str | None]:
    """The unpacked tree, and a note when the directory is not ./kheaders-<release>.

    A rerun is a success: a tree this tool made from the same archive, that only we can write, is
    reused as it is. Under the default name, another archive's tree (or anything else) stays, and
    this archive goes to kheaders-<release>-<its sha256's first 12 hex digits>. Runs into one
    parent directory take turns (a lock on it), so two at once cannot unpack over each other."""
    name_note = None
    if opts.output is not None:
        target = Path(opts.output)
    else:
        name, name_note = pipeline.default_directory(found)
        target = Path(name)
    if opts.force and _inside(found.path, target):
        raise UsageError(f"{found.path} lies inside {target}, which --force would replace; "
                         "move the image or choose another directory")
    with _locked_parent(target):
        key = (found.sha256, str(target))
        if key in opts.unpacked:
            return opts.unpacked[key], name_note
        if not opts.force:
            reused = _reusable(target, found)
            if reused is None and opts.output is None and _taken(target):
                other = target.with_name(f"{target.name}-{found.sha256[:12]}")
                name_note = f"{target} holds another archive's tree: unpacked into {other}"
                target = other
                reused = _reusable(target, found)
            if reused is not None:
                opts.unpacked[key] = reused
                return reused, name_note
        result = unpack.extract(found.archive, target, force=opts.force, salvage=opts.salvage, base_offset=found.offset,
                                max_bytes=opts.max_bytes or unpack.DEFAULT_MAX_BYTES,
                                max_members=opts.max_members or unpack.DEFAULT_MAX_MEMBERS)
        opts.unpacked[key] = result
    return result, name_note


@contextmanager
def _locked_parent(target: Path) -> Iterator[None]:
    """An exclusive flock on the target's parent directory (when it exists: else unpack says why)."""
    try:
        fd = os.open(target.parent if str(target.parent) else ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _taken(target: Path) -> bool:
    """Whether something other than an empty directory is at `target`."""
    if not target.exists() and not target.is_symlink():
        return False
    try:
        return target.is_symlink() or not target.is_dir() or any(target.iterdir())
    except OSError:
        return True


def _inside(path: str, directory: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, top]) == top


def _reusable(target: Path, found: Found) -> Extracted | None:
    """A complete tree this tool made from the same archive, unchanged since (its stamp's digest),
    in which every entry is ours and writable by us alone; None when there is none or it holds
    something else."""
    if not target.is_dir() or target.is_symlink():
        return None
    stamp = unpack.read_stamp(target)
    if stamp.get("sha256") != found.sha256 or stamp.get("complete") is False:
        return None
    try:
        untrusted = unpack.untrusted_entry(target)
    except OSError as exc:
        raise UsageError(f"cannot check {target}: {exc.strerror or exc}") from None
    if untrusted is not None:
        raise UsageError(f"{target}: exists but is not a tree of ours that only we can write ({untrusted}); "
                         f"remove it or use --force")
    if stamp.get("tree") != unpack.tree_digest(target):
        return None  # changed since it was unpacked: not the archive's tree any more
    members = stamp.get("members")
    return model.Extracted(directory=str(target), members=members if isinstance(members, int) else 0, bytes_written=0,
                     reused=True)


def _env_lines(directory: str) -> list[str]:
    import shlex

    path = shlex.quote(os.path.abspath(directory))
    return [f"export BCC_KERNEL_SOURCE={path}", f"export BPFTRACE_KERNEL_SOURCE={path}",
            f"export BPFTRACE_KERNEL_BUILD={path}"]


def _env_btf(image: str, opts: Options) -> list[tuple[bool, str]]:
    """--env: the path of the kernel's BTF (its own, else generated) for the tools that take one; a
    kernel that has none and a machine without pahole still get the headers' exports."""
    import shlex

    try:
        with _status(image, BTF_STEP):
            limits = confined_cc.Limits(seconds=opts.compile_timeout)
            found = btf_headers.for_kernel(image, opts.btf_from, limits=limits)
        path = shlex.quote(str(btf_headers.stored(found)))
    except (NotFound, ToolError, Damaged) as exc:  # the headers' exports stand without it
        return [(True, f"{PROG}: {image}: no BTF to export: {exc}")]
    return [(False, f"export BPFTRACE_BTF={path}"), (False, f"export EXTRACT_IKHEADERS_BTF={path}")]


def _live_source(root: str) -> str:
    """The running kernel's headers: sysfs, else its kheaders.ko, else its /boot image."""
    base = Path(root)
    release = _live_release(base)
    modules = base / "lib" / "modules" / release
    candidates = [base / "sys/kernel/kheaders.tar.xz",
                  *(sorted(modules.glob("**/kheaders.ko*")) if modules.is_dir() else []),
                  base / "boot" / f"vmlinuz-{release}"]
    for candidate in candidates:
        if candidate.is_file():
            _echo(f"{PROG}: live system {release}: using {candidate}", err=True)
            return str(candidate)
    raise NotFound(f"no kernel headers for the running kernel {release}: no /sys/kernel/kheaders.tar.xz "
                   f"(CONFIG_IKHEADERS=y, or `modprobe kheaders`), no kheaders.ko under {modules}, "
                   f"no {base / 'boot' / f'vmlinuz-{release}'}; give an IMAGE instead")


def _live_release(base: Path) -> str:
    """The release, from --root's proc/sys/kernel/osrelease (another system's word, so it must be a
    plain file-name part before it names a directory to search), else this kernel's."""
    osrelease = base / "proc/sys/kernel/osrelease"
    if str(base) == "/" or not osrelease.is_file():
        return os.uname().release
    text = imagetext.decode(osrelease.read_bytes()[: imagetext.MAX_NAME_PART + 2]).strip()
    release = imagetext.name_part(text)
    if release is None:
        raise InputError(f"{osrelease}: \"{imagetext.shown(text)}\" is not a kernel release (at most "
                         f"{imagetext.MAX_NAME_PART} printable characters, no '/', not '.' or '..')")
    return release


def _summary(found: Found, extracted: Extracted) -> str:
    release = found.release or "unknown release"
    if extracted.reused:
        return f"{PROG}: {release}: reusing {extracted.directory} (same archive, sha256 {found.sha256[:16]}...)"
    return (f"{PROG}: {release}: {extracted.members} members, {extracted.bytes_written:,} bytes "
            f"from {found.path} ({found.method}, archive at {found.offset:#x}, {found.size:,} bytes)")


def _write_archive(data: bytes | Iterable[bytes], dest: str) -> None:
    if dest == "-":
        outfile.write_chunks(sys.stdout.buffer, data)
        sys.stdout.buffer.flush()
        return
    outfile.write_file(data, dest)


def _report(found: Found) -> dict[str, Any]:
    return {
        "input": found.path,
        "release": found.release,
        "layers": [layer.as_dict() for layer in found.layers],
        "archive": {"offset": found.offset, "size": found.size, "sha256": found.sha256,
                    "method": str(found.method), "verified": str(found.verified)},
        "notes": list(found.notes),
    }


def _stdout_closed() -> NoReturn:
    """The reader of stdout went away (`| head`): end quietly, as a shell reports SIGPIPE (141),
    with stdout pointed at /dev/null so that the interpreter's last flush cannot complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


def fail(message: str, code: int) -> NoReturn:
    _echo(f"{PROG}: {message}", err=True)
    sys.exit(code)


def _last_input(argv: list[str] | None) -> str | None:
    """The input a failure outside any one image's work is about: the last non-option argument."""
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in reversed(args) if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> NoReturn:
    _run(command, PROG, argv, _last_input(argv))


def _run(cmd: click.Command, prog_name: str, argv: list[str] | None, image: str | None) -> NoReturn:
    """Run a click command; every failure is one line on stderr and a documented exit code."""
    try:
        code = cmd.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except (StdoutClosed, BrokenPipeError):
        _stdout_closed()
    except ExtractError as exc:
        code, line = failure_line(exc, image)
        fail(line, code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # never a traceback: the one line says what and where
        fail(f"internal error ({type(exc).__name__}: {exc}); please report it", 4)
    sys.exit(code if isinstance(code, int) else 0)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "allow_interspersed_args": False})
@click.argument("dump", type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("script", required=False, type=click.Path(exists=True, dir_okay=False, path_type=str))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("-e", "--exec", "code", help="Run this Python code with drgn's globals (prog, helpers), then exit "
              "(drgn's own -e). drgn's -c (core) and -s (symbols) have no equivalent here: DUMP is the core.")
@click.option("--system-map", "system_map", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="A System.map (the build's, relocated by the dump's KASLR offset) instead of the dump's kallsyms.")
@click.option("--kernel-source", type=click.Path(file_okay=False, exists=True, path_type=str),
              help="A matching kernel source tree: adds struct mount, struct rq and the printk ring buffer's types.")
@click.option("--compile-timeout", type=click.FloatRange(min=1), default=DEFAULT_COMPILE_SECONDS, metavar="SECONDS",
              show_default=True, help="The wall-clock limit of each compiler step on the dump's headers.")
@click.option("-q", "--quiet", is_flag=True, help="No banner or summary line.")
def drgn_command(dump: str, script: str | None, args: tuple[str, ...], code: str | None, system_map: str | None,
                 kernel_source: str | None, compile_timeout: float, quiet: bool) -> int:
    """drgn on DUMP with no vmlinux: the kernel's types from its embedded headers (--debuginfo) and its
    symbols from kallsyms (--symbols), so drgn's helpers work (for_each_task, cmdline, for_each_module...).

    Starts drgn's interactive shell, or runs SCRIPT [ARGS] or -e CODE with drgn's usual globals.

    \b
    Without the kernel's debug info, what works is what these types and symbols carry:
    for_each_task, find_task, cmdline, for_each_module, d_path, the task and mm structures; with
    --kernel-source also get_dmesg and for_each_mount. stack_trace needs `runqueues` (a per-cpu
    variable: CONFIG_KALLSYMS_ALL or --system-map) and the unwinder's data; prog.crashed_thread()
    needs the dump's crash_notes (a kdump, not a QEMU capture).
    """

    if script is not None and code is not None:
        raise UsageError("give either -e CODE or SCRIPT, not both")
    with _status(dump, f"{TYPES_STEP}, then starting drgn"):
        opened = kdrgn.open_program(dump, symbols=system_map, kernel_source=kernel_source,
                                    limits=confined_cc.Limits(seconds=compile_timeout))
    if not quiet:
        types = opened.types
        _echo(f"{PROG}: {dump}: types of {types.release or 'the kernel'} ({types.arch}"
              f"{', cached' if types.cached else ''}) from {types.path}; {opened.symbols} symbols from "
              f"{opened.symbols_from}", err=True)
    import drgn.cli

    if code is None and script is None:
        drgn.cli.run_interactive(opened.prog, quiet=quiet)
        return 0
    namespace = drgn.cli.default_globals(opened.prog)
    try:
        if code is not None:
            sys.argv = ["-e", *args]  # as `python -c`; -e and SCRIPT exclude each other (checked above)
            exec(compile(code, "<command>", "exec"), namespace)
        else:
            import runpy

            assert script is not None
            sys.argv = [script, *args]
            runpy.run_path(script, init_globals=namespace, run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # the user's own code: show its traceback, as drgn does
        import traceback

        traceback.print_exc()
        return 1
    return 0


def drgn_main(argv: list[str] | None = None) -> NoReturn:
    """`extract-ikheaders-drgn`: errors as one line, like the main command. (The error
    messages of open_program already name the dump.)"""
    _run(drgn_command, f"{PROG}-drgn", argv, None)
