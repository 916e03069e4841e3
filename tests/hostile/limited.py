"""Run the real CLI in a child process under hard limits set in the child, and see what it touched.

A limit that kills the child is a failing test: the run's signal shows up as a negative exit code,
which no test accepts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
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
    peak_rss: int  # bytes, the child's own (wait4), not the largest of all children so far

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
    # pipes, not files, for the output: the file size limit would cut files short
    proc = subprocess.Popen([sys.executable, "-m", "extract_ikheaders", *map(str, args)], cwd=cwd,
                            env={**os.environ, **(env or {})}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_limits(file_size))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    output: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda name=name, pipe=pipe: output.__setitem__(name, pipe.read()))
               for name, pipe in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(stdin or b"")
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    code, usage = _wait(proc.pid, CPU_SECONDS * 3)
    proc.returncode = code  # reaped here: wait4 gives this child's own peak RSS
    for reader in readers:
        reader.join()
    proc.stdout.close()
    proc.stderr.close()
    assert code >= 0, f"killed by signal {-code} (a limit was hit): {output['err'][-500:]!r}"
    return Limited(code, output["out"], output["err"], usage.ru_maxrss * 1024)


def _wait(pid: int, timeout: float) -> tuple[int, resource.struct_rusage]:
    """The child's exit code and its own resource usage; killed after `timeout` seconds of wall time."""
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


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
