"""Class 1: strings from an image used as paths or printed.

The release (the archive's UTS_RELEASE, a banner, VMCOREINFO's OSRELEASE, --root's osrelease) names
./kheaders-<release>; the release and banner are printed by the default action, --info, --env and
--json. An image decides none of: where the tool writes, what reaches the terminal, what the shell
runs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from builders import HEADERS, headers_archive
from dump_builders import PAGE, Seg, elf_core, memory_image, vmcoreinfo

from hostile.limited import clean_terminal_text, run, snapshot


def archive_with_release(release: bytes) -> bytes:
    return headers_archive({**HEADERS, "./include/generated/utsrelease.h": b'#define UTS_RELEASE "' + release + b'"\n'})


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(the sandbox, the working directory two levels inside it)."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (tmp_path / "victim").write_text("must not change\n")
    return tmp_path, work


UNNAMEABLE = {
    "parent": b"../../escape",
    "slash": b"6.1/../../x",
    "dot": b".",
    "dotdot": b"..",
    "too long": b"6." + b"1" * 63,
    "space": b"6.1 x",
    "escape": b"6.1\x1b[2J",
    "newline": b"6.1\nkheaders-evil",
    "not utf-8": b"6.1\xff\xfe",
}


@pytest.mark.parametrize("release", UNNAMEABLE.values(), ids=UNNAMEABLE.keys())
def test_a_release_that_cannot_be_a_name_gives_the_archives_hash(sandbox: tuple[Path, Path], release: bytes) -> None:
    root, work = sandbox
    archive = archive_with_release(release)
    image = root / "image.tar.xz"
    image.write_bytes(archive)
    before = snapshot(root)
    result = run(image, cwd=work)
    assert result.code == 0, result.err
    name = f"kheaders-unnamed-{hashlib.sha256(archive).hexdigest()[:12]}"
    assert result.out == name + "\n"
    assert "cannot be a file name" in result.err and name in result.err
    assert clean_terminal_text(result.stdout) and clean_terminal_text(result.stderr)
    after = snapshot(root)
    created = {k for k in after.keys() - before.keys()}
    assert created and all(k.startswith(f"a/b/{name}") for k in created), created
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_plain_release_still_names_the_directory(sandbox: tuple[Path, Path]) -> None:
    root, work = sandbox
    (root / "image.tar.xz").write_bytes(archive_with_release(b"6.1.7-rc1+"))
    result = run(root / "image.tar.xz", cwd=work)
    assert (result.code, result.out) == (0, "kheaders-6.1.7-rc1+\n")
    assert (work / "kheaders-6.1.7-rc1+" / "include" / "linux" / "types.h").is_file()


HOSTILE_TEXT = b"6.1\x1b]0;owned\x07\x1b[31m\r\x00\xff"


@pytest.mark.parametrize("action", [[], ["--info"], ["--json"], ["--json", "--info"], ["-l"], ["--env"]])
def test_control_bytes_never_reach_the_terminal(sandbox: tuple[Path, Path], action: list[str]) -> None:
    root, work = sandbox
    (root / "image.tar.xz").write_bytes(archive_with_release(HOSTILE_TEXT + b"\nsecond line"))
    result = run(*action, root / "image.tar.xz", cwd=work)
    assert result.code == 0, result.err
    assert clean_terminal_text(result.stdout), result.stdout
    assert clean_terminal_text(result.stderr), result.stderr
    if "--json" in action:
        report = json.loads(result.out)
        release = report.get("release") or report.get("info", {}).get("release")
        assert release is None or "\\x1b" in release


def test_a_banner_with_escapes_is_shown_escaped_by_info(sandbox: tuple[Path, Path]) -> None:
    root, work = sandbox
    banner = b"Linux version 6.1.5\x1b[2J (evil\x1b]0;t\x07@host) (gcc) #1 SMP\n"
    image = root / "blob.bin"
    image.write_bytes(b"\0" * 512 + banner + b"\0" * 512 + headers_archive())
    result = run("--info", image, cwd=work)
    assert result.code == 0, result.err
    assert clean_terminal_text(result.stdout)
    banner_line = next(line for line in result.out.splitlines() if line.startswith("banner:"))
    assert "\\x1b]0;t\\x07@host" in banner_line


def test_env_output_is_valid_shell_whatever_the_release(sandbox: tuple[Path, Path]) -> None:
    """A release of printable characters is a fine name, quotes and $() included; --env's lines
    quote it, so the shell sets the variable and runs nothing."""
    root, work = sandbox
    release = b"6.1'$(touch${IFS}PWNED)'`touch${IFS}PWNED2`;x"
    (root / "image.tar.xz").write_bytes(archive_with_release(release))
    result = run("--env", root / "image.tar.xz", cwd=work)
    assert result.code == 0, result.err
    shell = subprocess.run(["sh", "-c", 'eval "$1"; printf %s "$BCC_KERNEL_SOURCE"', "sh", result.out],
                           cwd=work, capture_output=True, check=True)
    assert shell.stdout.decode() == str(work / f"kheaders-{release.decode()}")
    assert not list(root.rglob("PWNED*"))


def test_env_with_an_unnameable_release_points_at_the_hashed_directory(sandbox: tuple[Path, Path]) -> None:
    root, work = sandbox
    archive = archive_with_release(b"../../../tmp/x")
    (root / "image.tar.xz").write_bytes(archive)
    result = run("--env", root / "image.tar.xz", cwd=work)
    assert result.code == 0, result.err
    name = f"kheaders-unnamed-{hashlib.sha256(archive).hexdigest()[:12]}"
    assert f"export BCC_KERNEL_SOURCE={work / name}\n" in result.out


def test_vmcoreinfo_osrelease_cannot_name_a_path(sandbox: tuple[Path, Path]) -> None:
    root, work = sandbox
    archive = headers_archive()
    core = elf_core([Seg(0, memory_image(8 * PAGE, {5000: archive}))],
                    notes=[("VMCOREINFO", 0, vmcoreinfo("../../../owned"))])
    (root / "vmcore").write_bytes(core)
    before = snapshot(root)
    result = run(root / "vmcore", cwd=work)
    assert result.code == 0, result.err
    name = f"kheaders-unnamed-{hashlib.sha256(archive).hexdigest()[:12]}"
    assert result.out == name + "\n"
    assert all(k.startswith(f"a/b/{name}") for k in snapshot(root).keys() - before.keys())


@pytest.mark.parametrize("osrelease", [b"../../../etc\n", b"6.1\x1b[2J\n", b"x" * 200])
def test_live_root_refuses_an_osrelease_that_is_no_release(sandbox: tuple[Path, Path], osrelease: bytes) -> None:
    root, work = sandbox
    system = root / "system"
    (system / "proc/sys/kernel").mkdir(parents=True)
    (system / "proc/sys/kernel/osrelease").write_bytes(osrelease)
    result = run("--live", "--root", system, cwd=work)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and "osrelease" in result.err and "is not a kernel release" in result.err
    assert clean_terminal_text(result.stderr)
