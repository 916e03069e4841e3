"""Which action a command line asks for, and the options that cannot apply to it.

An option given on the command line that the chosen action would ignore is a usage error naming
both, never silently dropped: one table (APPLIES) says where each option has an effect.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import click
from click.core import ParameterSource

from ..errors import UsageError

# The options that choose the action, in the order their names appear in messages.
ACTION_OPTIONS = {"info_only": "info", "list_only": "list", "archive_out": "archive", "env": "env",
                  "symbols_out": "analysis", "debuginfo_out": "analysis", "isf_out": "analysis",
                  "btf_out": "analysis"}

# Where each other option has an effect. "config" is --config on its own: write the .config only.
APPLIES: dict[str, frozenset[str]] = {
    "output": frozenset({"unpack", "env"}),
    "force": frozenset({"unpack", "env"}),
    "salvage": frozenset({"unpack", "env"}),
    "max_size": frozenset({"unpack", "env", "list"}),
    "max_members": frozenset({"unpack", "env", "list"}),
    "config_out": frozenset({"unpack", "archive", "list", "config"}),
    "symbols": frozenset({"unpack", "archive", "list", "env"}),  # --system-map
    "kernel_source": frozenset({"analysis"}),
    "compile_timeout": frozenset({"analysis", "env"}),
    "btf_from": frozenset({"analysis", "env"}),
    "jobs": frozenset({"unpack", "archive", "list", "config", "info"}),
    "as_json": frozenset({"unpack", "archive", "list", "config", "info", "analysis"}),
    "no_verify": frozenset({"archive", "info"}),  # unpacking and listing decode it all: they always verify
}
# Options that ask for an unpack when no action option is given (--config alone does not).
_UNPACK_OPTIONS = ("output", "force", "salvage", "max_size", "max_members")


def given(ctx: click.Context) -> list[str]:
    """The parameters the user set (command line or environment), in declaration order."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return [p.name for p in ctx.command.params if p.name and ctx.get_parameter_source(p.name) in sources]


def action(ctx: click.Context) -> str:
    """unpack, archive, list, config, info, env or analysis; two action options is a usage error."""
    chosen = [name for name in given(ctx) if name in ACTION_OPTIONS and _is_set(ctx, name)]
    kinds = {ACTION_OPTIONS[name] for name in chosen}
    if len(kinds) > 1:
        first = chosen[0]
        second = next(name for name in chosen if ACTION_OPTIONS[name] != ACTION_OPTIONS[first])
        raise UsageError(f"{flag(ctx, first)} and {flag(ctx, second)} cannot be combined")
    if kinds:
        return kinds.pop()
    if _is_set(ctx, "config_out") and not any(_is_set(ctx, name) for name in _UNPACK_OPTIONS):
        return "config"
    return "unpack"


def check_applicable(ctx: click.Context, chosen: str, images: tuple[str, ...]) -> None:
    """Every option given has an effect on `chosen`; --live and --root only without IMAGE."""
    names = given(ctx)
    for name in ("live", "root"):
        if name in names and images:
            raise UsageError(f"{flag(ctx, name)} reads the running system; it cannot be combined with IMAGE")
    chooser = next((name for name in names if name in ACTION_OPTIONS), "config_out" if chosen == "config" else None)
    for name in names:
        if name in APPLIES and chosen not in APPLIES[name] and _is_set(ctx, name):
            if chooser is None:
                raise UsageError(f"{flag(ctx, name)} goes with {_where(ctx, name)}")
            raise UsageError(f"{flag(ctx, chooser)} and {flag(ctx, name)} cannot be combined")


def flag(ctx: click.Context, name: str) -> str:
    """The option's long name as the user knows it (--archive for archive_out)."""
    param = next(p for p in ctx.command.params if p.name == name)
    return max(param.opts, key=len)


def _is_set(ctx: click.Context, name: str) -> bool:
    value = ctx.params.get(name)
    return value is not None and value is not False


def _where(ctx: click.Context, name: str) -> str:
    """The options that make `name` apply, for a message: "--debuginfo or --isf"."""
    if name in ("kernel_source", "compile_timeout"):
        return "--debuginfo or --isf"
    owners = {"info": "info_only", "list": "list_only", "archive": "archive_out", "env": "env",
              "analysis": "symbols_out"}
    flags = [flag(ctx, owners[a]) for a in sorted(APPLIES[name]) if a in owners]
    return " or ".join(flags) if flags else "another action"


class ByteSize(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A number of bytes as a user types it: 1073741824, 1G, 512M, 64KiB (powers of 1024)."""

    name = "size"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    _FORM: ClassVar[re.Pattern[str]] = re.compile(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = self._FORM.fullmatch(str(value))
        if match is None:
            self.fail(f"{value!r} is not a size: a number of bytes, or one with K, M, G or T", param, ctx)
        size = int(match.group(1)) * self._UNITS[match.group(2).upper()]
        if size < 1:
            self.fail(f"{value!r} is not a size of at least 1 byte", param, ctx)
        return size
