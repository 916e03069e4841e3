"""Workflow fit: shell hand-off for BCC/bpftrace, the live system under a fake root, batches."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import headers_archive, incbin_object
from conftest import Corpus, run_cli

ARCHIVE = headers_archive()


def test_env_output_evaluated_in_a_shell_points_at_a_tree_with_kconfig_h(vmlinux: Path, tmp_path: Path) -> None:
    script = f'eval "$({sys.executable} -m extract_ikheaders --env {vmlinux})" && ' \
             'test -f "$BCC_KERNEL_SOURCE/include/linux/kconfig.h" && ' \
             'test "$BPFTRACE_KERNEL_SOURCE" = "$BCC_KERNEL_SOURCE" && echo "$BPFTRACE_KERNEL_BUILD"'
    result = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "kheaders-6.1.0-synthetic")


def test_env_reuses_its_own_tree_but_not_a_foreign_or_writable_one(vmlinux: Path, tmp_path: Path) -> None:
    first = run_cli("--env", vmlinux, cwd=tmp_path)
    assert first.code == 0, first.stderr
    second = run_cli("--env", vmlinux, cwd=tmp_path)
    assert second.code == 0 and "reusing" in second.stderr and second.stdout == first.stdout
    tree = tmp_path / "kheaders-6.1.0-synthetic"
    tree.chmod(0o777)  # group/world-writable: someone else may have planted files
    third = run_cli("--env", vmlinux, cwd=tmp_path)
    assert third.code == 2 and "only we can write" in third.stderr


def fake_root(tmp_path: Path, release: str = "6.1.0-fake") -> Path:
    root = tmp_path / "root"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    return root


def test_live_prefers_sysfs_then_module_then_boot_image(vmlinux: Path, tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    none = run_cli("--live", "--root", root, "-a", tmp_path / "a")
    assert none.code == 1 and "6.1.0-fake" in none.stderr and "give an IMAGE" in none.stderr
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1.0-fake").write_bytes(vmlinux.read_bytes())
    boot = run_cli("--live", "--root", root, "-a", tmp_path / "a")
    assert boot.code == 0 and "boot/vmlinuz-6.1.0-fake" in boot.stderr
    module_dir = root / "lib/modules/6.1.0-fake/kernel/kernel"
    module_dir.mkdir(parents=True)
    obj = incbin_object(tmp_path / "build", ARCHIVE, link=False)
    (module_dir / "kheaders.ko").write_bytes(obj.read_bytes())
    module = run_cli("--live", "--root", root, "-a", tmp_path / "a")
    assert module.code == 0 and "kheaders.ko" in module.stderr
    (root / "sys/kernel").mkdir(parents=True)
    (root / "sys/kernel/kheaders.tar.xz").write_bytes(ARCHIVE)
    sysfs = run_cli("--root", root, "-a", tmp_path / "a")  # no IMAGE: live is the default
    assert sysfs.code == 0 and "sys/kernel/kheaders.tar.xz" in sysfs.stderr
    assert (tmp_path / "a").read_bytes() == ARCHIVE


def test_batch_of_twenty_gives_a_json_line_each_and_the_worst_exit_code(vmlinux: Path, tmp_path: Path) -> None:
    inputs = []
    for i in range(20):
        path = tmp_path / f"img{i}"
        path.write_bytes(vmlinux.read_bytes() if i % 5 else b"not a kernel" * (i + 1))
        inputs.append(path)
    run = run_cli("--json", "-j", "4", *inputs, cwd=tmp_path)
    assert run.code == 1  # the worst: some inputs have no headers
    reports = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [r["input"] for r in reports] == [str(p) for p in inputs]  # one record per input, in input order
    good = [r for r in reports if r["error"] is None]
    assert [r["input"] for r in good] == [str(p) for p in inputs if int(p.name[3:]) % 5]
    assert {r["archive"]["sha256"] for r in good} == {hashlib.sha256(ARCHIVE).hexdigest()}
    assert len({r["output"]["directory"] for r in good}) == 1  # identical archives unpacked once
    failed = [r for r in reports if r["error"] is not None]
    assert [(r["error"]["kind"], r["error"]["exit"], r["action"]) for r in failed] == [("not-found", 1, "unpack")] * 4
    assert all(r["error"]["message"].startswith(f"{r['input']}: cannot find kernel headers") for r in failed)
    assert run.stderr.count("cannot find kernel headers") == 4


def test_batch_exit_code_is_the_worst_damaged_beats_not_found(vmlinux: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    build = tmp_path / "b2"
    build.mkdir()
    damaged.write_bytes(incbin_object(build, ARCHIVE[: len(ARCHIVE) // 2]).read_bytes())
    text = tmp_path / "text"
    text.write_text("hello")
    run = run_cli("-l", vmlinux, text, damaged, cwd=tmp_path)
    assert run.code == 3
    assert "include/linux/types.h" in run.stdout.decode()  # the good input was still listed


def test_progress_bar_only_on_a_terminal(corpus: Corpus, tmp_path: Path) -> None:
    """A dump search shows a click progress bar on stderr when it is a terminal, and nothing
    when it is not (the scripted runs of every other test)."""
    if shutil.which("script") is None:
        pytest.skip("util-linux's script provides the terminal")
    vmcore = corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore"
    command = f"{sys.executable} -m extract_ikheaders -a /dev/null {vmcore}"
    on_tty = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, cwd=tmp_path)
    assert on_tty.returncode == 0 and "searching vmcore" in on_tty.stdout
    piped = run_cli("-a", "/dev/null", vmcore)
    assert piped.code == 0 and "searching" not in piped.stderr
