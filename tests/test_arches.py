"""Every architecture that ships IKHEADERS, on the cross-built corpus kernels (fixtures/corpus.py
CROSS_KERNELS): 32-bit ARM zImage, riscv64 Image/Image.gz/Image.lzma/EFI zboot, s390x bzImage,
powerpc64 big-endian vmlinux. The ground truth is each build's own kheaders_data.tar.xz and .config."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from conftest import Corpus, run_cli
from test_kallsyms import kallsyms_selection

# corpus kernel -> its stage (the ARM zImage variants share the arm stage's tree and vmlinux)
KERNELS = {"6.1-arm": "k61arm", "6.1-arm-gzip": "k61arm", "6.1-arm-lzo": "k61arm", "6.1-riscv64": "k61riscv64",
           "6.1-s390x": "k61s390x", "6.1-ppc64be": "k61ppc64be"}
# Every image each kernel must be read from (the manifest lists them too; this is the list).
IMAGES = {
    "6.1-arm": ("zImage", "vmlinux", "vmlinux.stripped"),  # zImage: xz with the ARM BCJ filter
    "6.1-arm-gzip": ("zImage.gzip",),
    "6.1-arm-lzo": ("zImage.lzo",),
    "6.1-riscv64": ("Image", "Image.gz", "Image.lzma", "vmlinuz.efi", "vmlinux"),
    "6.1-s390x": ("bzImage", "vmlinux"),
    "6.1-ppc64be": ("vmlinux", "vmlinux.stripped"),
}
# kernel -> the compiler its unpacked headers are checked with
COMPILERS = {
    "6.1-arm": ("clang", "--target=arm-linux-gnueabihf"),
    "6.1-riscv64": ("clang", "--target=riscv64-linux-gnu"),
    "6.1-s390x": ("clang", "--target=s390x-linux-gnu"),
    # Built with GCC (CONFIG_CC_IS_GCC), powerpc's headers use GCC-only asm constraints
    # (asm-compat.h DS_FORM_CONSTRAINT "YZ<>"); clang only gets "Z<>" in a clang-built tree.
    "6.1-ppc64be": ("powerpc64-linux-gnu-gcc",),
}
CASES = [(kernel, image) for kernel, images in IMAGES.items() for image in images]


def _kernel(corpus: Corpus, kernel: str) -> dict[str, object]:
    if kernel not in corpus.manifest["kernels"]:
        pytest.skip(f"this corpus has no {kernel} kernel (stage {KERNELS[kernel]})")
    entry: dict[str, object] = corpus.manifest["kernels"][kernel]
    return entry


def _image(corpus: Corpus, kernel: str, image: str) -> Path:
    _kernel(corpus, kernel)
    return corpus.file(KERNELS[kernel], image)


def _truth(corpus: Corpus, kernel: str, name: str) -> Path:
    """The build's own kheaders_data.tar.xz, config or System.map for `kernel`."""
    sub = str(_kernel(corpus, kernel)["dir"])
    return corpus.file(KERNELS[kernel], f"{sub}/{name}" if sub else name)


def _blob(corpus: Corpus, kernel: str) -> bytes:
    return _truth(corpus, kernel, "kheaders_data.tar.xz").read_bytes()


def test_manifest_lists_every_image(corpus: Corpus) -> None:
    for kernel, images in IMAGES.items():
        entry = _kernel(corpus, kernel)
        assert entry["images"] == list(images)
        blob = _blob(corpus, kernel)
        assert hashlib.sha256(blob).hexdigest() == corpus.build(kernel)["blob_sha256"]


@pytest.mark.parametrize(("kernel", "image"), CASES)
def test_archive_is_the_builds_blob(corpus: Corpus, kernel: str, image: str) -> None:
    run = run_cli("--archive", "-", _image(corpus, kernel, image))
    assert run.code == 0, run.stderr
    assert hashlib.sha256(run.stdout).hexdigest() == corpus.build(kernel)["blob_sha256"]


@pytest.mark.parametrize(("kernel", "image"), CASES)
def test_json_names_architecture_and_byte_order(corpus: Corpus, kernel: str, image: str) -> None:
    entry = _kernel(corpus, kernel)
    run = run_cli("--json", "--list", _image(corpus, kernel, image))
    assert run.code == 0, run.stderr
    report = run.json
    platform = report["platform"]
    assert (platform["arch"], platform["endian"], platform["bits"]) == (entry["arch"], entry["endian"], entry["bits"])
    assert report["archive"]["sha256"] == corpus.build(kernel)["blob_sha256"]
    with tarfile.open(fileobj=io.BytesIO(_blob(corpus, kernel)), mode="r:xz") as tar:
        assert report["members"] == len([m for m in tar.getmembers() if m.name not in (".", "./")])
    assert report["release"] == corpus.build(kernel)["release"]


@pytest.mark.parametrize(("kernel", "image"), CASES)
def test_info_names_architecture_and_byte_order(corpus: Corpus, kernel: str, image: str) -> None:
    entry = _kernel(corpus, kernel)
    run = run_cli("--info", _image(corpus, kernel, image))
    assert run.code == 0, run.stderr
    text = run.stdout.decode()
    assert f"arch:     {entry['arch']}, {entry['bits']}-bit {entry['endian']}-endian (" in text
    assert f"sha256 {corpus.build(kernel)['blob_sha256']}" in text
    assert "config:   present" in text and "IKHEADERS=y IKCONFIG=y" in text


@pytest.mark.parametrize(("kernel", "image"), CASES)
def test_list_is_the_archives_members(corpus: Corpus, kernel: str, image: str) -> None:
    run = run_cli("--list", _image(corpus, kernel, image))
    assert run.code == 0, run.stderr
    with tarfile.open(fileobj=io.BytesIO(_blob(corpus, kernel)), mode="r:xz") as tar:
        names = [m.name + "/" if m.isdir() else m.name for m in tar.getmembers()]
    listed = run.stdout.decode().splitlines()
    assert listed == names  # what tar -t prints, in archive order
    assert f"./arch/{_kernel(corpus, kernel)['arch']}/include/asm/" in listed


def _unpacked(corpus: Corpus, kernel: str, tmp_path: Path) -> Path:
    """The default unpack (./kheaders-<release>) of the kernel's first (boot) image."""
    run = run_cli(_image(corpus, kernel, IMAGES[kernel][0]), cwd=tmp_path)
    assert run.code == 0, run.stderr
    tree = tmp_path / f"kheaders-{corpus.build(kernel)['release']}"
    assert run.stdout.decode().strip() == tree.name
    return tree


@pytest.mark.slow
@pytest.mark.parametrize("kernel", sorted(COMPILERS))
def test_default_unpack_is_the_archive(corpus: Corpus, tmp_path: Path, kernel: str) -> None:
    tree = _unpacked(corpus, kernel, tmp_path)
    files = 0
    with tarfile.open(fileobj=io.BytesIO(_blob(corpus, kernel)), mode="r:xz") as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member)
                assert data is not None
                assert (tree / member.name).read_bytes() == data.read(), member.name
                files += 1
    assert files > 1000


def _compile_flags(tree: Path, arch: str) -> list[str]:
    """Kbuild's LINUXINCLUDE for an out-of-tree module build, on the unpacked headers."""
    a = tree / "arch" / arch
    return ["-fsyntax-only", "-nostdinc", "-D__KERNEL__", "-std=gnu11",
            f"-I{a}/include", f"-I{a}/include/generated", f"-I{tree}/include", f"-I{a}/include/uapi",
            f"-I{a}/include/generated/uapi", f"-I{tree}/include/uapi", f"-I{tree}/include/generated/uapi",
            "-include", f"{tree}/include/linux/compiler-version.h", "-include", f"{tree}/include/linux/kconfig.h",
            "-include", f"{tree}/include/linux/compiler_types.h"]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", sorted(COMPILERS))
def test_unpacked_headers_compile_for_their_architecture(corpus: Corpus, tmp_path: Path, kernel: str) -> None:
    """-fsyntax-only over <linux/sched.h> for the headers' architecture; a broken twin proves the compile is real."""
    compiler = COMPILERS[kernel]
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"{compiler[0]} is not installed")
    entry = _kernel(corpus, kernel)
    tree = _unpacked(corpus, kernel, tmp_path)
    flags = [*compiler, *_compile_flags(tree, str(entry["arch"]))]
    good, bad = tmp_path / "probe.c", tmp_path / "broken.c"
    body = ("#include <linux/sched.h>\n#include <linux/ptrace.h>\n"
            "_Static_assert(sizeof(struct task_struct) > 512, \"task_struct is real\");\n"
            "int probe_pid(struct task_struct *t) { return t->pid; }\n")
    good.write_text(body)
    bad.write_text(body + "int broken(struct task_struct *t) { return t->no_such_member; }\n")
    ok = subprocess.run([*flags, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[:3000]
    broken = subprocess.run([*flags, str(bad)], capture_output=True, text=True)
    assert broken.returncode == 1 and "no_such_member" in broken.stderr


@pytest.mark.parametrize(("kernel", "image"), CASES)
def test_symbols_equal_system_maps_kallsyms(corpus: Corpus, tmp_path: Path, kernel: str, image: str) -> None:
    """--symbols FILE: exactly the entries of the build's System.map that kallsyms holds, sorted."""
    out = tmp_path / "System.map"
    run = run_cli("--json", "--symbols", out, _image(corpus, kernel, image))
    assert run.code == 0, run.stderr
    report = run.json["symbols"]
    lines = [line.split(" ", 2) for line in out.read_text().splitlines()]
    symbols = [(int(addr, 16), typ, name) for addr, typ, name in lines]
    assert len(symbols) == report["count"] > 5000
    assert [addr for addr, _, _ in symbols] == sorted(addr for addr, _, _ in symbols)
    assert report["word_size"] * 8 == _kernel(corpus, kernel)["bits"]
    assert Counter(symbols) == kallsyms_selection(_truth(corpus, kernel, "System.map"), False)
