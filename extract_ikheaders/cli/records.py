"""--json: one record per input, in input order, for failures too (docs/json.md).

Every record has `schema` (this module's SCHEMA_VERSION), `input`, `action` and `error` (null, or
what went wrong); the rest depends on the action. The JSON Schema every record follows ships in
the package (`report.schema.json`, read with `schema()`); an added field bumps the minor version,
any other change the major, and CHANGELOG.md records both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import imagetext, lazy
from ..errors import Damaged, ExtractError, InputError, NotFound, StdoutClosed, ToolError, UnsafeArchive, UsageError

if TYPE_CHECKING:
    from .. import pipeline
else:
    pipeline = lazy.module("extract_ikheaders.pipeline")  # loaded already by whatever made the record

SCHEMA_VERSION = "1.3"

# The exit code and the JSON `kind` of each kind of failure (the Exit codes in --help and the man
# page); the first class an error is an instance of wins. Anything else, ParserSignal included, is
# a bug: 4.
EXIT_CODES: tuple[tuple[type[ExtractError], int, str], ...] = (
    (NotFound, 1, "not-found"), (UsageError, 2, "usage"), (InputError, 2, "input"), (ToolError, 2, "tool"),
    (Damaged, 3, "damaged"), (UnsafeArchive, 3, "unsafe"), (StdoutClosed, 141, "stdout-closed"),
)
INTERNAL = 4


def exit_code(exc: ExtractError) -> int:
    return _classify(exc)[0]


def _classify(exc: ExtractError) -> tuple[int, str]:
    return next(((code, kind) for cls, code, kind in EXIT_CODES if isinstance(exc, cls)), (INTERNAL, "internal"))


def failure_line(exc: ExtractError, image: str | None) -> tuple[int, str]:
    """The exit code and the one line for an error about `image` (named when the error did not)."""
    exc.located(path=image)
    code = exit_code(exc)
    if code == INTERNAL:
        return code, f"internal error ({type(exc).__name__}: {exc}); please report it"
    return code, str(exc)


def record(action: str, image: str, report: dict[str, Any] | None = None) -> str:
    """A success record: the action's report with the keys every record has."""
    return _dumps({**(report or {}), **_parts(image), "schema": SCHEMA_VERSION, "input": image, "action": action,
                   "error": None})


def error_record(action: str, image: str, exc: ExtractError, report: dict[str, Any] | None = None) -> str:
    """A failure record: what failed (kind, message as on stderr, exit code, offset and layer when
    known), with whatever the action got done before it failed."""
    code, line = failure_line(exc, image)
    kind = _classify(exc)[1]
    error = {"kind": kind, "message": line, "exit": code, "offset": exc.offset, "layer": exc.layer}
    return _dumps({**(report or {}), **_parts(image), "schema": SCHEMA_VERSION, "input": image, "action": action,
                   "error": error})


def _parts(image: str) -> dict[str, Any]:
    """`parts`: the files of a makedumpfile --split dump read as this one input."""
    parts = pipeline.set_parts(image)
    return {"parts": list(parts)} if parts is not None else {}


def schema() -> dict[str, Any]:
    """The JSON Schema of a record, as shipped in the package."""
    from importlib import resources  # only here: it loads zipfile and more, which no record needs

    text = resources.files(__package__).joinpath("report.schema.json").read_text()
    import json  # only with --json: 3 ms of every other start

    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _dumps(report: dict[str, Any]) -> str:
    """One line, with every string in it escaped as text lines are (imagetext.shown)."""
    import json

    return json.dumps(imagetext.shown_json(report), sort_keys=True)
