"""Class 2: --debuginfo compiles the image's headers, so the headers are the attacker's.

Every test builds a small archive that compiles (x86_64, a kconfig.h, a compiler_types.h and an
autoconf.h) with one hostile header, and runs the real CLI under hard limits. A secret file made for
the test must never reach the output object or the types cache.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import headers_archive

from hostile.limited import run, snapshot

pytestmark = pytest.mark.skipif(not any(Path(d, "gcc").exists() for d in os.environ["PATH"].split(":")),
                                reason="no gcc on PATH")

BASE = {
    "./include/linux/kconfig.h": b"#include <generated/autoconf.h>\n",
    "./include/linux/compiler_types.h": b"#define __user\n",
    "./include/generated/autoconf.h": b"#define CONFIG_X86_64 1\n#define CONFIG_64BIT 1\n",
    "./include/generated/utsrelease.h": b'#define UTS_RELEASE "6.1.0-hostile"\n',
    "./arch/x86/include/asm/types.h": b"typedef unsigned long u64;\n",
    "./include/linux/types.h": b"#include <asm/types.h>\nstruct list_head { struct list_head *next, *prev; };\n",
}


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    value = secrets.token_hex(24).encode()
    path = tmp_path / "secret.txt"
    path.write_bytes(value)
    return path, value


def debuginfo(tmp_path: Path, sched_h: bytes, *extra: str) -> tuple[int, str, Path]:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(headers_archive({**BASE, "./include/linux/sched.h": sched_h}))
    out = tmp_path / "types.o"
    result = run("--debuginfo", out, *extra, image, cwd=tmp_path,
                 env={"EXTRACT_IKHEADERS_TYPES_CACHE": str(tmp_path / "cache")})
    return result.code, result.err, out


def leaked(tmp_path: Path, value: bytes) -> list[str]:
    """Files under tmp_path (outputs, the types cache) holding the secret, besides the secret itself."""
    return [str(p) for p in tmp_path.rglob("*") if p.is_file() and p.name != "secret.txt" and value in p.read_bytes()]


def test_the_small_archive_compiles(tmp_path: Path) -> None:
    code, err, out = debuginfo(tmp_path, b"#include <linux/types.h>\nstruct task_struct { int pid; };\n")
    assert code == 0, err
    assert out.read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize("line", [
    b'#include "{secret}"', b"#include <{secret}>", b'#include_next "{secret}"',
    b'#if __has_include("{secret}")\n#endif', b'asm(".incbin \\"{secret}\\"");', b'#include "/dev/zero"',
    b'#include "../../../../../../../../../../{secret}"',
])
def test_a_header_naming_a_file_outside_is_refused(tmp_path: Path, secret: tuple[Path, bytes], line: bytes) -> None:
    path, value = secret
    code, err, out = debuginfo(tmp_path, line.replace(b"{secret}", str(path).encode()) + b"\n")
    assert code == 3, err
    assert err.count("\n") == 1 and "include/linux/sched.h" in err and "outside the headers archive" in err
    assert not out.exists() and leaked(tmp_path, value) == []


def test_a_computed_include_is_caught_by_what_the_preprocessor_opened(tmp_path: Path,
                                                                     secret: tuple[Path, bytes]) -> None:
    path, value = secret
    code, err, out = debuginfo(tmp_path, b'#define WHERE "' + str(path).encode() + b'"\n#include WHERE\n')
    assert code == 3, err
    assert "computed include" in err and str(path) in err
    assert not out.exists() and leaked(tmp_path, value) == []


def test_assembly_built_from_pieces_never_reaches_the_assembler(tmp_path: Path, secret: tuple[Path, bytes]) -> None:
    """String pieces the scan cannot see join into `.incbin "secret"`; the header's own assembly is
    cut from the compiler's output before assembling, so the object holds none of it."""
    path, value = secret
    code, err, out = debuginfo(tmp_path, b'#include <linux/types.h>\nasm(".inc" "bin \\"' + str(path).encode()
                               + b'\\"");\nstruct task_struct { int pid; };\n')
    assert code == 0, err
    assert out.read_bytes()[:4] == b"\x7fELF"
    assert leaked(tmp_path, value) == []


def test_a_computed_include_of_dev_zero_hits_the_limits(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    code, err, out = debuginfo(tmp_path, b'#define Z "/dev/zero"\n#include Z\n', "--compile-timeout", "5")
    assert code == 2, err
    assert err.count("\n") == 1 and ("MiB of memory" in err or "longer than 5 s" in err or "signal" in err), err
    assert not out.exists()
    assert {k for k in snapshot(tmp_path).keys() - before.keys() if not k.startswith("cache")} == {"image.tar.xz"}


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux's script provides the terminal")
def test_the_slow_step_shows_a_status_line_on_a_terminal_only(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(headers_archive({**BASE, "./include/linux/sched.h": b"struct task_struct { int pid; };\n"}))
    env = {**os.environ, "EXTRACT_IKHEADERS_TYPES_CACHE": str(tmp_path / "cache")}
    command = f"{sys.executable} -m extract_ikheaders --debuginfo {tmp_path / 'a.o'} {image}"
    on_tty = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, env=env, cwd=tmp_path)
    assert on_tty.returncode == 0, on_tty.stdout
    assert b"image.tar.xz: building the kernel's types from its headers" in on_tty.stdout
    assert b"\r\x1b[K" in on_tty.stdout  # erased once done
    piped = run("--debuginfo", tmp_path / "b.o", image, cwd=tmp_path, env={"EXTRACT_IKHEADERS_TYPES_CACHE":
                                                                             str(tmp_path / "cache")})
    assert piped.code == 0 and "building" not in piped.err and piped.err.count("\n") == 1
