"""Command line. The only module that imports click, prints or exits."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click

from . import api
from .errors import ExtractError, NotFound, UsageError
from .model import Extracted, Found

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
  0  headers found (and written)
  1  no kernel headers in IMAGE ("Cannot find kernel headers")
  2  usage error, or IMAGE cannot be read
  3  headers found but damaged (truncated or corrupt), or the archive is unsafe to unpack
  4  internal error (a bug: please report it)
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.argument("image", type=click.Path(dir_okay=True, allow_dash=False, path_type=str))
@click.option("-o", "--output", type=click.Path(path_type=str), help="Unpack into DIR instead of ./kheaders-<release>.")
@click.option("--force", is_flag=True,
              help="Replace a non-empty output directory (only once the new tree is complete).")
@click.option("-a", "--archive", "archive_out", type=click.Path(allow_dash=True, path_type=str),
              help="Write the exact embedded .tar.xz to FILE ('-' for stdout) instead of unpacking.")
@click.option("-l", "--list", "list_only", is_flag=True, help="List the archive's members instead of unpacking.")
@click.option("--config", "config_out", type=click.Path(allow_dash=True, path_type=str),
              help="Also write the kernel's own .config (CONFIG_IKCONFIG) to FILE ('-' for stdout). "
                   "Succeeds even when the image has no headers.")
@click.option("--info", "info_only", is_flag=True,
              help="Describe IMAGE (release, architecture, headers and .config built in, modular or absent, "
                   "containers, BPF-related CONFIG_ values) without unpacking anything.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
@click.option("--max-size", type=int, default=None, metavar="BYTES",
              help="Refuse to unpack more than BYTES of file data (default 1 GiB).")
@click.option("--max-members", type=int, default=None, metavar="N",
              help="Refuse to unpack more than N members (default 200000).")
@click.version_option(package_name="extract-ikheaders", prog_name=PROG)
def command(image: str, output: str | None, force: bool, archive_out: str | None, list_only: bool,
            config_out: str | None, info_only: bool, as_json: bool, max_size: int | None,
            max_members: int | None) -> None:
    """Extract the kernel headers archive (CONFIG_IKHEADERS) from IMAGE.

    IMAGE may be a vmlinux (with or without symbols), a raw kernel image, a bzImage, a
    kheaders.ko module (also .ko.xz/.ko.zst/.ko.gz), or a copy of /sys/kernel/kheaders.tar.xz.
    By default the headers are unpacked into ./kheaders-<release>/ and that directory is
    printed on stdout.
    """
    if info_only:
        _info(image, as_json)
        return
    if archive_out is not None and list_only:
        raise UsageError("--archive and --list cannot be combined")
    if archive_out is not None and output is not None:
        raise UsageError("--archive and --output cannot be combined")
    if archive_out == "-" and as_json:
        raise UsageError("--archive - and --json both want stdout")
    if archive_out == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a binary archive to a terminal; redirect stdout or give a file")
    if config_out == "-" and (as_json or archive_out == "-" or list_only or archive_out is None):
        raise UsageError("--config - needs stdout to itself: use it with --archive FILE, or give a file")
    config_report = _write_config(image, config_out) if config_out is not None else None
    try:
        found = api.find(image)
    except NotFound as exc:
        if config_report is None:
            raise
        click.echo(f"{PROG}: {exc}; wrote only the .config", err=True)
        if as_json:
            click.echo(json.dumps({"input": image, "config": config_report, "archive": None}, sort_keys=True))
        return
    report = _report(found)
    if config_report is not None:
        report["config"] = config_report
    if archive_out is not None:
        _write_archive(found.archive, archive_out)
        report["output"] = {"archive": archive_out}
    elif list_only:
        members = _list(found, as_json)
        report["members"] = members
    else:
        limits = {k: v for k, v in (("max_bytes", max_size), ("max_members", max_members)) if v is not None}
        _, extracted = _unpack(found, output, force, limits)
        report["members"] = extracted.members
        report["output"] = {"directory": extracted.directory, "bytes": extracted.bytes_written}
        report["incidents"] = [vars(i) for i in extracted.incidents]
        if not as_json:
            click.echo(extracted.directory)
        _summary(found, extracted)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))


def _info(image: str, as_json: bool) -> None:
    from . import info

    report = info.describe(image)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    headers, config = report["headers"], report["config"]
    lines = [f"image:    {image}", f"release:  {report.get('release') or 'unknown'}",
             f"arch:     {report.get('arch') or 'unknown'}"]
    if report.get("banner"):
        lines.append(f"banner:   {report['banner']}")
    chain = " -> ".join(f"{layer['format']}@{layer['offset']:#x}" for layer in report.get("layers", []))
    lines.append(f"layers:   {chain or '(none)'}")
    if headers["status"] == "present":
        lines.append(f"headers:  built in ({headers['method']}, {headers['size']:,} bytes at {headers['offset']:#x}, "
                     f"sha256 {headers['sha256']})")
    else:
        lines.append(f"headers:  {headers['status']}: {headers.get('hint') or headers['reason']}")
    lines.append(f"config:   {config['status']}" + (f" ({config['method']})" if config["status"] == "present" else ""))
    options = report["options"]
    if options:
        lines.append("options:  " + " ".join(f"{k}={v}" for k, v in options.items()))
    click.echo("\n".join(lines))


def _write_config(image: str, dest: str) -> dict[str, Any]:
    import hashlib

    config = api.find_config(image)
    _write_archive(config.text, dest)
    return {"offset": config.offset, "size": len(config.text), "method": str(config.method),
            "sha256": hashlib.sha256(config.text).hexdigest(), "output": dest,
            "layers": [layer.as_dict() for layer in config.layers]}


def _list(found: Found, as_json: bool) -> int:
    from . import unpack as extract

    members = extract.list_members(found.archive)
    if not as_json:
        out = click.get_text_stream("stdout")
        for m in members:
            out.write(_printable(m.name) + ("/" if m.kind == "dir" else "") + "\n")
    return len(members)


def _printable(name: str) -> str:
    """A hostile member name must not drive the terminal: escape control characters."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _unpack(found: Found, output: str | None, force: bool, limits: dict[str, int]) -> tuple[Found, Extracted]:
    from . import unpack as extract

    target = Path(output) if output is not None else Path(api.default_directory(found))
    result = extract.extract(found.archive, target, force=force, **limits)
    for incident in result.incidents:
        click.echo(f"{PROG}: {incident.member}: {incident.problem} ({incident.action})", err=True)
    return found, result


def _summary(found: Found, extracted: Extracted) -> None:
    release = found.release or "unknown release"
    click.echo(f"{PROG}: {release}: {extracted.members} members, {extracted.bytes_written:,} bytes "
               f"from {found.path} ({found.method}, archive at {found.offset:#x}, {found.size:,} bytes)", err=True)


def _write_archive(data: bytes, dest: str) -> None:
    if dest == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(dest)
    if target.is_dir():
        raise UsageError(f"{dest}: is a directory")
    if target.exists() and not target.is_file():
        # /dev/null and friends: write straight through.
        with target.open("wb") as f:
            f.write(data)
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary name only
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _report(found: Found) -> dict[str, Any]:
    return {
        "input": found.path,
        "release": found.release,
        "layers": [layer.as_dict() for layer in found.layers],
        "archive": {"offset": found.offset, "size": found.size, "sha256": found.sha256,
                    "method": str(found.method)},
        "notes": list(found.notes),
    }


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"{PROG}: {message}", err=True)
    sys.exit(code)


def _with_input(message: str, argv: list[str] | None) -> str:
    """Every failure line names the input file."""
    args = sys.argv[1:] if argv is None else argv
    image = next((a for a in reversed(args) if not a.startswith("-")), None)
    return message if image is None or message.startswith(image) else f"{image}: {message}"


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except ExtractError as exc:
        fail(_with_input(str(exc), argv), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # never a traceback: the one line says what and where
        fail(f"internal error ({type(exc).__name__}: {exc}); please report it", 4)
    sys.exit(0)
