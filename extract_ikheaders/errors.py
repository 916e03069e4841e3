"""One exception tree, rooted at ExtractError.

Every error carries what was wrong (`reason`) and, as fields rather than text, where: `path` (the
input it concerns), `offset` (in the data of the layer it was found in) and `layer` (that layer's
format, e.g. "bzimage"). Whoever knows a field and finds it unset fills it in on the way up
(`located`), so a parser deep in the pipeline need not know the file's name.

The public branches say what kind of failure it is; the CLI maps each to an exit code
(cli/main.py EXIT_CODES). ParserSignal is the private branch: a parser telling its caller that a
structure is not its format or not usable, always caught inside the package.
"""

from __future__ import annotations

from typing import Self


class ExtractError(Exception):
    """Root of every error this package raises on purpose."""

    def __init__(self, reason: str, *, path: str | None = None, offset: int | None = None,
                 layer: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.offset = offset
        self.layer = layer

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason

    def located(self, *, path: str | None = None, layer: str | None = None) -> Self:
        """Fill in the fields a caller knows and the raiser did not; returns self to re-raise."""
        if self.path is None:
            self.path = path
        if self.layer is None:
            self.layer = layer
        return self


class UsageError(ExtractError):
    """The caller asked for something impossible (bad option mix, existing output, ...)."""


class InputError(ExtractError):
    """The input cannot be read at all (missing, a directory, permission denied)."""


class NotFound(ExtractError):
    """The input is readable but holds no kernel headers archive (or no other thing asked for)."""


class Damaged(ExtractError):
    """A headers archive (or a table) was found but is damaged: truncated, corrupt or incomplete."""

    def __init__(self, reason: str, *, path: str | None = None, offset: int | None = None,
                 layer: str | None = None, data: bytes | None = None) -> None:
        super().__init__(reason, path=path, offset=offset, layer=layer)
        self.data = data  # the damaged archive's bytes as far as they go, for salvage


class UnsafeArchive(ExtractError):
    """The archive asks for something unpacking must never do (escape the target, ...)."""


class ToolError(ExtractError):
    """A program or library this action needs (a compiler, drgn) is missing or cannot do the job."""


class StdoutClosed(ExtractError):
    """The reader of stdout went away (`| head`): the run ends quietly, as a shell reports SIGPIPE."""


class ParserSignal(ExtractError):
    """Private branch: raised by a parser and caught by its caller. One that escapes is a bug."""


class NotMine(ParserSignal):
    """A container parser's way of saying "this input is not my format"."""
