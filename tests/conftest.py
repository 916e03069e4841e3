"""Shared fixtures: the real-kernel corpus (built by fixtures/corpus.py) and the CLI runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_builder  # noqa: E402  (fixtures/corpus.py, on the path above)
from builders_bzimage import CODECS, require  # noqa: E402  (needs the path above)

# The compiled-types cache of the tests is their own, never the user's (in-process and child runs
# alike); its entries are keyed by the code that built them, so it persists across sessions safely.
TYPES_CACHE_ENV = "EXTRACT_IKHEADERS_TYPES_CACHE"
os.environ.setdefault(TYPES_CACHE_ENV, str(corpus_builder.CACHE / "tests" / "types"))


@dataclass(frozen=True)
class Corpus:
    root: Path
    manifest: dict[str, Any]

    def stage(self, name: str) -> Path:
        return self.root / self.manifest["recipe"][name]["dir"]

    def file(self, stage: str, name: str) -> Path:
        path = self.stage(stage) / name
        assert path.is_file(), f"corpus file missing: {path}"
        return path

    def truth(self, kernel: str) -> dict[str, Any]:
        truth: dict[str, Any] = self.manifest["kernels"][kernel]["ground_truth"]
        return truth

    def build(self, kernel: str) -> dict[str, Any]:
        build: dict[str, Any] = self.manifest["kernels"][kernel]["build"]
        return build

    def kernel_source(self, version: str) -> Path:
        """Debian's linux-source-<version> tree the corpus was built from, where fixtures/corpus.py
        keeps it (under $EXTRACT_IKHEADERS_CACHE, for the installed package's version)."""
        return Path(corpus_builder.source_tree(version))

    def release(self, kernel: str) -> str:
        """The kernel's release as its build recorded it (Debian's source decides, not the tests)."""
        return str(self.build(kernel)["release"])


def _find_corpus() -> Corpus | str:
    override = os.environ.get("EXTRACT_IKHEADERS_CORPUS")  # a specific corpus directory
    if override:
        return Corpus(Path(override), json.loads((Path(override) / "manifest.json").read_text()))
    try:
        root = corpus_builder.corpus_dir()
    # the recipe asks dpkg and the tools for their versions: on a machine without them, no corpus
    except (OSError, subprocess.SubprocessError, LookupError, ValueError) as exc:
        return f"kernel corpus unavailable ({type(exc).__name__}: {exc})"
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return f"kernel corpus not built ({root}); run: python fixtures/corpus.py build"
    return Corpus(root, json.loads(manifest.read_text()))


_CORPUS = _find_corpus()


def corpus_params(cases: Callable[[Corpus], Iterable[tuple[str, Any]]]) -> list[Any]:
    """One pytest.param per corpus case `(id, value)`, read from the corpus's records at collection.
    Without a corpus, one case whose test then asks for the `corpus` fixture: it skips with the
    reason, or fails when the corpus is required."""
    if isinstance(_CORPUS, str):
        return [pytest.param(None, id="corpus-unavailable")]
    return [pytest.param(value, id=ident) for ident, value in cases(_CORPUS)]


_PS_ROW = re.compile(r"^(\d+)\s+(\S+)\s+(.*)$")


def ps_rows(lines: list[str]) -> list[tuple[int, str, str]]:
    """(pid, comm, args) from a guest's recorded `ps -o pid,comm,args`. The serial console carries
    the kernel's own messages too, and one may land between two rows ("input: Power Button as ...",
    as a fresh corpus build showed): only rows that start with a pid are rows."""
    return [(int(m.group(1)), m.group(2), m.group(3)) for line in lines if (m := _PS_ROW.match(line.strip()))]


REQUIRE_CORPUS = "EXTRACT_IKHEADERS_REQUIRE_CORPUS"  # set by .ci/run: a missing corpus fails, never skips


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    if isinstance(_CORPUS, str):
        if os.environ.get(REQUIRE_CORPUS):
            pytest.fail(f"{_CORPUS} (and {REQUIRE_CORPUS} is set)")
        pytest.skip(_CORPUS)
    return _CORPUS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the corpus, directly or through another fixture, is marked `corpus`,
    so that `pytest -m "not corpus"` runs without a kernel."""
    for item in items:
        if "corpus" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.corpus)


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> str:
    """Each kernel compressor whose command-line tool is installed (the test builders use them)."""
    name: str = request.param
    require(name)
    return name


@pytest.fixture
def vmlinux(tmp_path: Path) -> Path:
    """A small synthetic vmlinux (mainline layout) holding builders.headers_archive()."""
    from builders import headers_archive, incbin_object

    build = tmp_path / "build"
    build.mkdir()
    return incbin_object(build, headers_archive())


@dataclass(frozen=True)
class Run:
    code: int
    stdout: bytes
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str | Path, cwd: Path | None = None, stdin: bytes | None = None) -> Run:
    """Run the tool's entry point (cli.main.main: the same parsing, error lines and exit codes as the
    installed command) in this process, its stdin empty and stdout/stderr captured by click's runner.
    A process per run cost most of the suite's time; run_cli_process keeps true end-to-end runs."""
    from click.testing import CliRunner

    from extract_ikheaders.cli.main import main

    before = os.getcwd()
    with CliRunner().isolation(input=stdin) as (stdout, stderr, _):
        try:
            if cwd is not None:
                os.chdir(cwd)
            main([str(arg) for arg in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(before)
        run = Run(code, stdout.getvalue(), stderr.getvalue().decode(errors="replace"))
    if "--json" in map(str, args):
        check_records(run.stdout)
    return run


_SCHEMA_VALIDATOR: Any = None


def check_records(stdout: bytes) -> list[dict[str, Any]]:
    """Every line of a --json run's stdout is a record the package's JSON Schema accepts."""
    global _SCHEMA_VALIDATOR
    if _SCHEMA_VALIDATOR is None:
        import jsonschema

        from extract_ikheaders.cli import records

        _SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(records.schema())
    parsed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for record in parsed:
        errors = sorted(_SCHEMA_VALIDATOR.iter_errors(record), key=str)
        assert not errors, f"record breaks report.schema.json: {errors[0].message} at {list(errors[0].absolute_path)}"
    return parsed


def run_cli_process(*args: str | Path, cwd: Path | None = None) -> Run:
    """Run the tool as a user would: a separate process, `python -m extract_ikheaders`."""
    proc = subprocess.run([sys.executable, "-m", "extract_ikheaders", *map(str, args)], cwd=cwd,
                          capture_output=True, timeout=600)
    if "--json" in map(str, args):
        check_records(proc.stdout)
    return Run(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


@pytest.fixture
def cli() -> Any:
    return run_cli
