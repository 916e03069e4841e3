"""The unpacked headers build a kprobe BPF program the way BCC and samples/bpf do: clang emits
host-target LLVM IR (plain `clang -target bpf` chokes on x86 inline asm in kernel headers) and
llc lowers it to BPF."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Corpus, run_cli

pytestmark = pytest.mark.skipif(not (shutil.which("clang") and shutil.which("llc")),
                                reason="clang and llc are needed (fixtures/install-deps.sh installs them)")

PROGRAM = r"""
#include <linux/sched.h>
#include <linux/ptrace.h>

#define SEC(name) __attribute__((section(name), used))
static long (*bpf_probe_read_kernel)(void *dst, unsigned int size, const void *src) = (void *)113;

SEC("kprobe/wake_up_new_task")
int probe(struct pt_regs *ctx)
{
    struct task_struct *task = (struct task_struct *)ctx->di;
    int pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), &task->pid);
    return pid;
}
char _license[] SEC("license") = "GPL";
"""


def bcc_flags(tree: Path, arch: str = "x86") -> list[str]:
    """The include paths and defines BCC uses for a kheaders directory (src/cc/frontends/clang)."""
    a = tree / "arch" / arch
    return ["-nostdinc", "-isystem", subprocess.run(["clang", "-print-file-name=include"], capture_output=True,
                                                     text=True, check=True).stdout.strip(),
            f"-I{a}/include", f"-I{a}/include/generated", f"-I{tree}/include", f"-I{a}/include/uapi",
            f"-I{a}/include/generated/uapi", f"-I{tree}/include/uapi", f"-I{tree}/include/generated/uapi",
            "-include", f"{tree}/include/linux/kconfig.h", "-D__KERNEL__", "-D__BPF_TRACING__",
            "-D__HAVE_BUILTIN_BSWAP16__", "-D__HAVE_BUILTIN_BSWAP32__", "-D__HAVE_BUILTIN_BSWAP64__",
            "-DKBUILD_MODNAME=\"probe\"", "-Wno-unused-value", "-Wno-pointer-sign",
            "-Wno-compare-distinct-pointer-types",
            "-Wno-gnu-variable-sized-type-not-at-end", "-Wno-address-of-packed-member", "-Wno-tautological-compare",
            "-Wno-unknown-warning-option", "-fno-stack-protector", "-O2"]


def compile_bpf(tree: Path, work: Path) -> subprocess.CompletedProcess[bytes]:
    source = work / "probe.c"
    source.write_text(PROGRAM)
    ir = work / "probe.ll"
    clang = subprocess.run(["clang", *bcc_flags(tree), "-emit-llvm", "-S", "-c", str(source), "-o", str(ir)],
                           capture_output=True)
    if clang.returncode != 0:
        return clang
    return subprocess.run(["llc", "-march=bpf", "-filetype=obj", str(ir), "-o", str(work / "probe.o")],
                          capture_output=True)


@pytest.mark.parametrize(("stage", "image"), [("k61y", "vmlinux"), ("k612y", "bzImage"), ("k61y", "bzImage.zstd"),
                                             ("kdump-6.1-y", "vmcore.kdump-lzo-d31")])
@pytest.mark.slow
def test_kprobe_program_compiles_against_extracted_headers(corpus: Corpus, tmp_path: Path, stage: str,
                                                           image: str) -> None:
    run = run_cli("-o", tmp_path / "kheaders", corpus.file(stage, image))
    assert run.code == 0, run.stderr
    result = compile_bpf(tmp_path / "kheaders", tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    obj = (tmp_path / "probe.o").read_bytes()
    assert obj[:4] == b"\x7fELF" and obj[18] == 247  # e_machine EM_BPF
    assert b"kprobe/wake_up_new_task" in obj


@pytest.mark.slow
def test_compile_fails_without_kconfig_h(corpus: Corpus, tmp_path: Path) -> None:
    """Proves the test checks the tree: BCC's classic failure when kconfig.h is missing."""
    run = run_cli("-o", tmp_path / "kheaders", corpus.file("k61y", "vmlinux"))
    assert run.code == 0, run.stderr
    (tmp_path / "kheaders/include/linux/kconfig.h").unlink()
    result = compile_bpf(tmp_path / "kheaders", tmp_path)
    assert result.returncode != 0 and b"kconfig.h" in result.stderr
