"""Generate the man page from the CLI itself: python -m extract_ikheaders.cli.manpage > extract-ikheaders.1"""

from __future__ import annotations

import datetime
import inspect
import sys

import click

from ..version import __version__
from .main import PROG, command


def _roff(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("-", "\\-").replace("'", "\\(aq")
    # A line starting with "." or "'" would be read as a roff request.
    return "\n".join("\\&" + line if line.startswith((".", "\\(aq")) else line for line in escaped.split("\n"))


def render() -> str:
    ctx = click.Context(command, info_name=PROG)
    date = datetime.date.today().isoformat()
    lines = [f'.TH {PROG.upper()} 1 "{date}" "{PROG} {__version__}" "User Commands"',
             ".SH NAME", f"{_roff(PROG)} \\- extract the kernel headers archive (CONFIG_IKHEADERS) from a kernel",
             ".SH SYNOPSIS", f".B {_roff(PROG)}", "[\\fIOPTIONS\\fR] [\\fIIMAGE\\fR...]",
             ".SH DESCRIPTION", _roff(inspect.cleandoc(command.help or "")).replace("\n\n", "\n.PP\n"), ".SH OPTIONS"]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f".B {_roff(names)}", _roff(help_text)]
    epilog = (command.epilog or "").replace("\b\n", "")
    for title, body in _sections(epilog):
        lines += [f".SH {title.upper()}", ".nf", _roff(body), ".fi"]
    return "\n".join(lines) + "\n"


def _sections(epilog: str) -> list[tuple[str, str]]:
    sections: list[tuple[str, str]] = []
    for block in epilog.strip().split("\n\n"):
        title, _, body = block.strip().partition("\n")
        sections.append((title.rstrip(":"), body))
    return sections


if __name__ == "__main__":
    sys.stdout.write(render())
