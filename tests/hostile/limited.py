"""Run the real CLI in a child process under hard limits set in the child, and see what it touched.

A limit that kills the child is a failing test: the run's signal shows up as a negative exit code,
which no test accepts.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ADDRESS_SPACE = 1 << 30  # peak RSS stays under 512 MiB; the interpreter and lief map more than they use
CPU_SECONDS = 60


@dataclass(frozen=True)
class Limited:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "surrogateescape")

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


def _limits(file_size: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if file_size is not None:  # writes past it fail with EFBIG (Python ignores SIGXFSZ)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return apply


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None,
        file_size: int | None = None) -> Limited:
    proc = subprocess.run([sys.executable, "-m", "extract_ikheaders", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, input=stdin, capture_output=True,
                          preexec_fn=_limits(file_size), timeout=CPU_SECONDS * 3)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode} (a limit was hit): {proc.stderr[-500:]!r}"
    return Limited(proc.returncode, proc.stdout, proc.stderr)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with what it is (file digest, link target, directory)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[rel] = "dir"
    return state


def clean_terminal_text(data: bytes) -> bool:
    """No control byte but the newlines that end lines, nothing that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c == "\n" or c.isprintable() for c in text)
