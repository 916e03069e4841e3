"""The tool on real kernels: sha256 of what it extracts equals the running guest's
/sys/kernel/kheaders.tar.xz, by every layout and container."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Corpus, run_cli

# (stage, file, kernel whose guest is the ground truth, expected method)
INPUTS = [
    ("k61y", "vmlinux", "6.1-y-gzip", "symbols"),
    ("k61y", "vmlinux.stripped", "6.1-y-gzip", "carve"),
    ("k61y", "vmlinux.bin", "6.1-y-gzip", "carve"),
    ("k61y", "kheaders_data.tar.xz", "6.1-y-gzip", "whole"),
    ("k61seed", "vmlinux.stripped", "6.1-seed", "markers"),
    ("k61seed", "vmlinux", "6.1-seed", "symbols"),
    ("k61m", "kheaders.ko", "6.1-m", "symbols"),
    ("k61m", "kheaders.ko.xz", "6.1-m", "symbols"),
    ("k61m", "kheaders.ko.zst", "6.1-m", "symbols"),
    ("k61m", "kheaders.ko.gz", "6.1-m", "symbols"),
    ("k612y", "vmlinux", "6.12-y", "symbols"),
    ("k612y", "vmlinux.stripped", "6.12-y", "carve"),
    ("k72y", "vmlinux", "7.2-y", "symbols"),
    ("k72m", "kheaders.ko", "7.2-m", "symbols"),
    ("k72y", "vmlinux.stripped", "7.2-y", "carve"),
    ("k72y", "vmlinux.bin", "7.2-y", "carve"),
    *[("k61y", f"bzImage.{c}", f"6.1-y-{c}", "carve") for c in ("gzip", "bzip2", "lzma", "xz", "lzo", "lz4", "zstd")],
    ("k61seed", "bzImage", "6.1-seed", "markers"),
    ("k612y", "bzImage", "6.12-y", "carve"),
    ("k72y", "bzImage", "7.2-y", "carve"),
]


@pytest.mark.parametrize(("stage", "name", "kernel", "method"), INPUTS, ids=[f"{s}/{n}" for s, n, _, _ in INPUTS])
def test_archive_is_bit_exact(corpus: Corpus, stage: str, name: str, kernel: str, method: str) -> None:
    image = corpus.file(stage, name)
    run = run_cli("--archive", "-", image)
    assert run.code == 0, run.stderr
    assert hashlib.sha256(run.stdout).hexdigest() == corpus.truth(kernel)["sha256"]
    report = run_cli("--json", "--archive", "/dev/null", image).json
    assert report["archive"]["method"] == method
    assert report["archive"]["sha256"] == corpus.truth(kernel)["sha256"]
    assert report["archive"]["size"] == corpus.truth(kernel)["size"]
    if method != "whole":
        assert report["release"] == corpus.truth(kernel)["release"]
    if name.startswith("bzImage"):
        formats = [layer["format"] for layer in report["layers"]]
        assert formats == ["bzImage", "raw image"]
        codec = name.split(".")[1] if "." in name else None
        assert codec is None or codec in report["layers"][0]["detail"]


def test_default_unpack_makes_a_usable_tree(corpus: Corpus, tmp_path: Path) -> None:
    release = corpus.truth("6.1-y-gzip")["release"]
    run = run_cli(corpus.file("k61y", "vmlinux"), cwd=tmp_path)
    assert run.code == 0, run.stderr
    tree = tmp_path / f"kheaders-{release}"
    assert run.stdout.decode().strip() == f"kheaders-{release}"
    assert (tree / "include/linux/sched.h").is_file()
    assert (tree / "arch/x86/include/asm/processor.h").is_file()
    assert (tree / "include/generated/autoconf.h").is_file()
    assert f"{release}:" in run.stderr and "symbols" in run.stderr
    assert [p.name for p in tmp_path.iterdir()] == [tree.name]  # no temp dir left behind
    compile_against(tree, tmp_path)


def compile_against(tree: Path, tmp: Path) -> None:
    """gcc -fsyntax-only over a TU including <linux/sched.h>, with out-of-tree build flags."""
    source = tmp / "probe.c"
    source.write_text("#include <linux/sched.h>\n#include <linux/ptrace.h>\n"
                      "int probe_pid(struct task_struct *t) { return t->pid; }\n")
    gcc_include = subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                                 check=True).stdout.strip()
    arch = tree / "arch/x86"
    flags = ["-fsyntax-only", "-nostdinc", "-isystem", gcc_include, "-D__KERNEL__", "-m64", "-mcmodel=kernel",
             "-fno-PIE", "-std=gnu11", "-Wno-address-of-packed-member",
             f"-I{arch}/include", f"-I{arch}/include/generated", f"-I{tree}/include",
             f"-I{arch}/include/uapi", f"-I{arch}/include/generated/uapi", f"-I{tree}/include/uapi",
             f"-I{tree}/include/generated/uapi", "-include", f"{tree}/include/linux/kconfig.h",
             "-include", f"{tree}/include/linux/compiler_types.h"]
    result = subprocess.run(["gcc", *flags, str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_list_is_what_tar_t_prints(corpus: Corpus) -> None:
    run = run_cli("--list", corpus.file("k61y", "vmlinux.stripped"))
    assert run.code == 0, run.stderr
    tar = subprocess.run(["tar", "-tJf", corpus.file("k61y", "kheaders_data.tar.xz")], capture_output=True, check=True)
    assert run.stdout == tar.stdout
    names = run.stdout.decode().splitlines()
    assert "./include/linux/sched.h" in names and "./arch/x86/include/asm/page.h" in names and len(names) > 5000


@pytest.mark.parametrize("name", ["/bin/ls", "text", "empty"])
def test_non_kernel_input_exits_1(tmp_path: Path, name: str) -> None:
    if name == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a kernel\n" * 100)
    elif name == "empty":
        path = tmp_path / "empty"
        path.write_bytes(b"")
    else:
        path = Path(name)
    run = run_cli(path, cwd=tmp_path)
    assert run.code == 1
    assert str(path) in run.stderr and ("cannot find kernel headers" in run.stderr or "empty" in run.stderr)
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name] if path.parent == tmp_path else [])


def test_missing_file_exits_2(tmp_path: Path) -> None:
    run = run_cli(tmp_path / "nope")
    assert run.code == 2 and "no such file" in run.stderr and "Traceback" not in run.stderr


def test_truncated_blob_inside_vmlinux_exits_3_and_writes_nothing(corpus: Corpus, tmp_path: Path) -> None:
    vmlinux = corpus.file("k61y", "vmlinux")
    report = run_cli("--json", "--archive", "/dev/null", vmlinux).json
    start, size = report["archive"]["offset"], report["archive"]["size"]
    damaged = tmp_path / "vmlinux"
    shutil.copyfile(vmlinux, damaged)
    with damaged.open("r+b") as f:  # the second half of the archive is gone
        f.seek(start + size // 2)
        f.write(b"\0" * (size - size // 2))
    run = run_cli(damaged, cwd=tmp_path)
    assert run.code == 3, run.stderr
    assert "vmlinux" in run.stderr and "Traceback" not in run.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["vmlinux"]


def test_config_without_headers_still_succeeds(corpus: Corpus, tmp_path: Path) -> None:
    """The =m kernel's bzImage has a .config but its headers are in kheaders.ko."""
    out = tmp_path / "config"
    run = run_cli("--config", out, "--archive", tmp_path / "a.tar.xz", corpus.file("k61m", "bzImage"))
    assert run.code == 0, run.stderr
    assert out.read_bytes() == corpus.file("k61m", "config").read_bytes()
    assert "wrote only the .config" in run.stderr
    assert not (tmp_path / "a.tar.xz").exists()


def test_info_on_a_modular_kernel_points_at_the_module(corpus: Corpus) -> None:
    run = run_cli("--info", "--json", corpus.file("k61m", "bzImage"))
    assert run.code == 0, run.stderr
    report = run.json
    assert report["headers"]["status"] == "module" and "kheaders.ko" in report["headers"]["hint"]
    assert report["options"]["IKHEADERS"] == "m" and report["config"]["status"] == "present"
    assert report["release"] == corpus.truth("6.1-m")["release"]


def test_info_on_vmlinux(corpus: Corpus) -> None:
    run = run_cli("--info", corpus.file("k61y", "vmlinux"))
    assert run.code == 0, run.stderr
    text = run.stdout.decode()
    assert f"release:  {corpus.truth('6.1-y-gzip')['release']}" in text
    assert "arch:     x86" in text and "headers:  built in (symbols" in text and "IKHEADERS=y" in text
    assert corpus.truth("6.1-y-gzip")["sha256"] in text


def test_info_on_kheaders_ko_says_module(corpus: Corpus) -> None:
    run = run_cli("--info", corpus.file("k61m", "kheaders.ko"))
    assert run.code == 0, run.stderr
    assert "headers:  in this module (symbols," in run.stdout.decode()
    assert run_cli("--json", "--info", corpus.file("k61m", "kheaders.ko")).json["headers"]["in"] == "module"


def test_a_modular_bzimage_says_where_its_headers_are(corpus: Corpus, tmp_path: Path) -> None:
    release = corpus.release("6.1-m")
    run = run_cli("-a", tmp_path / "a", corpus.file("k61m", "bzImage"))
    assert run.code == 1
    assert run.stderr.endswith(f": no kernel headers built in: CONFIG_IKHEADERS=m: the headers are in the module "
                               f"kheaders.ko (/lib/modules/{release}/kernel/kernel/kheaders.ko on a system running "
                               f"it); give that file\n")
    info = run_cli("--json", "--info", corpus.file("k61m", "bzImage")).json
    assert info["headers"]["status"] == "module" and f"/lib/modules/{release}/" in info["headers"]["hint"]
