"""One exception tree. The CLI maps each class to a documented exit code; the library never exits."""

from __future__ import annotations


class ExtractError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = 2


class UsageError(ExtractError):
    """The caller asked for something impossible (bad option mix, existing output, ...)."""

    exit_code = 2


class InputError(ExtractError):
    """The input cannot be read at all (missing, a directory, permission denied)."""

    exit_code = 2


class NotFound(ExtractError):
    """The input is readable but holds no kernel headers archive."""

    exit_code = 1


class Damaged(ExtractError):
    """A headers archive was found but is damaged: truncated, corrupt or incomplete."""

    exit_code = 3

    def __init__(self, message: str, offset: int | None = None, data: bytes | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.data = data  # the damaged archive's bytes as far as they go, for salvage


class UnsafeArchive(ExtractError):
    """The archive asks for something unpacking must never do (escape the target, ...)."""

    exit_code = 3


class NotMine(Exception):
    """A container parser's way of saying "this input is not my format". Never escapes the API."""
