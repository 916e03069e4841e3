"""drgn with no vmlinux: types from --debuginfo, symbols from the dump's kallsyms (extract-ikheaders-drgn).

Ground truth: each real kdump capture's truth.json holds the guest's `ps -o pid,comm,args`, taken just
before the panic. ps itself has exited by then, and the script that triggers the panic (/kdump-arm)
started after it: those two are the only differences allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus, corpus_params, ps_rows

from extract_ikheaders.analysis import debuginfo

pytest.importorskip("drgn", reason="drgn is not installed (pip install -e '.[analysis]')")

TASKS = """
import json
out = []
for t in for_each_task(prog):
    args = cmdline(t)
    out.append([t.pid.value_(), t.comm.string_().decode(), None if args is None else [a.decode() for a in args]])
print(json.dumps(out))
"""

GLOBALS = ("init_task", "init_pid_ns", "init_uts_ns", "init_nsproxy", "init_cred", "init_user_ns", "init_mm",
           "init_fs", "init_files", "init_struct_pid", "modules")
ADDRESSES = f"""
import json
out = {{}}
for name in {GLOBALS!r}:
    try:
        out[name] = prog[name].address_
    except LookupError:
        out[name] = None
print(json.dumps(out))
"""


def _captures(corpus: Corpus) -> dict[str, tuple[Path, dict[str, Any], str]]:
    """capture name -> (vmcore, truth, kernel stage)."""
    out = {"kdump-6.1-y": (corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore",
                           corpus.manifest["kdump"]["ground_truth"], "k61y")}
    for name, entry in corpus.manifest.get("kdump_m", {}).items():
        out[name] = (corpus.root / entry["dir"] / "vmcore", entry["ground_truth"], "k61m")
    return out


def run_drgn(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extract_ikheaders.cli.drgn_console", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(autouse=True)
def _types_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(debuginfo.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "types-cache"))


def _ps(truth: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """pid -> (comm, args) from `ps -o pid,comm,args` lines."""
    return {pid: (comm, args) for pid, comm, args in ps_rows(truth["ps"])}


def _same_comm(ps_comm: str, comm: str) -> bool:
    """ps shows a kworker's current work after its name (kworker/0:1+events, cut to 15 chars)."""
    return ps_comm == comm or (comm.startswith("kworker/") and ps_comm[: len(comm) + 1] in (comm + "-", comm + "+"))


def _ps_args(comm: str, argv: list[str] | None) -> str:
    """busybox ps: `[comm]` for a kernel thread, `{comm} argv` when comm is not argv[0]'s name."""
    if argv is None:
        return f"[{comm}]"
    line = " ".join(argv)
    return line if Path(argv[0]).name == comm else f"{{{comm}}} {line}"


@pytest.mark.slow
@pytest.mark.parametrize("capture", ["kdump-6.1-y", "kdump-6.1-m", "kdump-6.1-m-4level"])
def test_drgn_lists_the_guests_processes(corpus: Corpus, capture: str) -> None:
    captures = _captures(corpus)
    if capture not in captures:
        pytest.skip(f"corpus has no {capture} capture")
    vmcore, truth, _ = captures[capture]
    run = run_drgn("-q", "-e", TASKS, vmcore)
    assert run.returncode == 0, run.stderr
    tasks = {pid: (comm, argv) for pid, comm, argv in json.loads(run.stdout)}
    crashed = {pid for pid, (_, argv) in tasks.items() if argv == ["/bin/sh", "/kdump-arm"]}
    assert len(crashed) == 1
    _assert_ps(tasks, _ps(truth), crashed)


def _assert_ps(tasks: dict[int, tuple[str, list[str] | None]], ps: dict[int, tuple[str, str]], later: set[int]) -> None:
    """drgn's tasks are the guest's `ps` but for ps itself (exited) and `later` (started after it)."""
    gone = {pid for pid, (comm, _) in ps.items() if comm == "ps"}
    assert len(gone) == 1
    assert set(ps) - gone == set(tasks) - later
    for pid in set(ps) - gone:
        comm, argv = tasks[pid]
        assert _same_comm(ps[pid][0], comm), (pid, ps[pid], comm)
        assert _ps_args(comm, argv) == ps[pid][1].replace(ps[pid][0], comm, 1), (pid, ps[pid], argv)
    assert tasks[1][1] is not None and tasks[1][1][:2] == ["/bin/sh", "/init"]
    assert sum(argv is None for _, argv in tasks.values()) >= 10  # kernel threads have no command line


def _qemu_dump(corpus: Corpus, kernel: str, kind: str) -> Path:
    if kernel not in corpus.manifest["kernels"] or kind not in corpus.truth(kernel).get("dumps", {}):
        pytest.skip(f"corpus has no QEMU {kind} dump of {kernel}")
    return corpus.root / corpus.manifest["kernels"][kernel]["boot"] / corpus.truth(kernel)["dumps"][kind]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["6.1-m-4level", "6.1-m", "6.1-y-gzip", "6.12-y", "7.2-y", "7.2-m"])
def test_drgn_on_a_qemu_dump_without_vmcoreinfo(corpus: Corpus, kernel: str) -> None:
    """QEMU's dump-guest-memory has no VMCOREINFO (no -device vmcoreinfo): the stand-in built from the
    dump (kallsyms by shape, KASLR from .config, CR3 from QEMU's note) lets drgn list the tasks. ps ran
    in the guest just before the dump; what started after it (pid above all of ps's) may be there too."""
    dump = _qemu_dump(corpus, kernel, "elf")
    run = run_drgn("-q", "-e", TASKS, dump)
    assert run.returncode == 0, run.stderr
    tasks = {pid: (comm, argv) for pid, comm, argv in json.loads(run.stdout)}
    ps = _ps(corpus.truth(kernel))
    later = {pid for pid in tasks if pid > max(ps)}
    assert len(later) <= 2
    _assert_ps(tasks, ps, later)


@pytest.mark.slow
def test_qemu_dump_globals_and_modules_equal_the_system_map(corpus: Corpus) -> None:
    """On the stand-in VMCOREINFO, the globals found from the data sit where the build's System.map,
    moved by the stand-in's KASLR offset, puts them; the loaded module is listed."""
    dump = _qemu_dump(corpus, "6.1-m-4level", "elf")
    assert corpus.truth("6.1-m-4level")["module_loaded"] is True
    derived = run_drgn("-q", "-e", ADDRESSES, dump)
    mapped = run_drgn("-q", "--system-map", corpus.file("k61m", "System.map"), "-e", ADDRESSES, dump)
    assert derived.returncode == 0 and mapped.returncode == 0, derived.stderr + mapped.stderr
    ours, theirs = json.loads(derived.stdout), json.loads(mapped.stdout)
    assert None not in theirs.values()
    assert ours == theirs
    run = run_drgn("-q", "-e", "print([m.name.string_().decode() for m in for_each_module(prog)])", dump)
    assert run.returncode == 0 and run.stdout == "['kheaders']\n", run.stderr


@pytest.mark.slow
def test_drgn_names_the_flattened_format_it_cannot_read(corpus: Corpus) -> None:
    dump = _qemu_dump(corpus, "6.1-m-4level", "kdump-zlib")  # QEMU writes kdump in makedumpfile's flattened format
    run = run_drgn("-q", "-e", "pass", dump)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"extract-ikheaders: {dump}: drgn cannot read makedumpfile's flattened "
                                       f"format; reassemble it first: makedumpfile -R NEWFILE < {dump}"]


@pytest.mark.slow
@pytest.mark.parametrize("capture", ["kdump-6.1-y", "kdump-6.1-m"])
def test_globals_found_from_data_equal_the_system_map(corpus: Corpus, capture: str) -> None:
    """kallsyms without CONFIG_KALLSYMS_ALL has no data symbols: init_task & co. are found from the
    data. The build's System.map (relocated by KASLR) must place every one at the same address."""
    vmcore, _, stage = _captures(corpus)[capture]
    derived = run_drgn("-q", "-e", ADDRESSES, vmcore)
    mapped = run_drgn("-q", "--system-map", corpus.file(stage, "System.map"), "-e", ADDRESSES, vmcore)
    assert derived.returncode == 0 and mapped.returncode == 0, derived.stderr + mapped.stderr
    ours, theirs = json.loads(derived.stdout), json.loads(mapped.stdout)
    expect_missing = {"modules"} if stage == "k61y" else set()  # CONFIG_MODULES=n there
    assert {k for k, v in theirs.items() if v is None} == expect_missing
    assert ours == theirs


@pytest.mark.slow
def test_modules_of_the_m_kernel(corpus: Corpus) -> None:
    captures = _captures(corpus)
    if "kdump-6.1-m" not in captures:
        pytest.skip("corpus has no kdump-6.1-m capture")
    vmcore = captures["kdump-6.1-m"][0]
    code = ("print([m.name.string_().decode() for m in for_each_module(prog)])\n"
            "print(prog['init_uts_ns'].name.release.string_().decode())")
    run = run_drgn("-q", "-e", code, vmcore)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["['kheaders']", corpus.release("6.1-m")]


@pytest.mark.slow
def test_drgn_reads_kdump_compressed_files(corpus: Corpus) -> None:
    entry = corpus.manifest["kdump"]
    outputs = entry["makedumpfile_outputs"]
    name = next((n for n in outputs if n.startswith("kdump-zlib")), None)
    if name is None:
        pytest.skip("no kdump-zlib output in the corpus")
    dump = corpus.root / entry["dir"] / outputs[name]
    run = run_drgn("-q", "-e", "print(sorted(t.pid.value_() for t in for_each_task(prog)))", dump)
    assert run.returncode == 0, run.stderr
    ps = set(_ps(entry["ground_truth"]))
    assert ps - set(json.loads(run.stdout)) == {pid for pid, (comm, _) in _ps(entry["ground_truth"]).items()
                                               if comm == "ps"}


def test_drgn_entry_errors_are_one_line(tmp_path: Path) -> None:
    dump = tmp_path / "zeros"
    dump.write_bytes(b"\0" * 8192)
    run = run_drgn("-e", "pass", dump)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and str(dump) in run.stderr
    run = run_drgn("-e", "pass", tmp_path / "missing")
    assert run.returncode == 2 and "Traceback" not in run.stderr


@pytest.mark.slow
def test_drgn_shell_reads_commands_from_stdin(corpus: Corpus, tmp_path: Path) -> None:
    vmcore = _captures(corpus)["kdump-6.1-y"][0]
    proc = subprocess.run([sys.executable, "-m", "extract_ikheaders.cli.drgn_console", vmcore],
                          input='print("comm=" + prog["init_task"].comm.string_().decode())\n', capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HOME": str(tmp_path)})  # drgn's history file
    assert proc.returncode == 0, proc.stderr
    assert "comm=swapper\n" in proc.stdout  # a uniprocessor kernel does not rename it swapper/0
    assert corpus.release("6.1-y-gzip") in proc.stderr and "symbols from kallsyms" in proc.stderr


PRIVATE = """
import json
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.fs import for_each_file, for_each_mount, d_path, mount_dst, mount_fstype
records = [[r.level, r.text.decode(errors="replace")] for r in get_printk_records(prog)]
mounts = [[mount_dst(m).decode(), mount_fstype(m).decode()] for m in for_each_mount(prog)]
files = {fd: d_path(f.f_path).decode() for fd, f in for_each_file(find_task(prog, 1))}
print(json.dumps({"log": records, "mounts": mounts, "files": files}))
"""


@pytest.mark.slow
def test_kernel_source_gives_the_log_mounts_and_paths(corpus: Corpus) -> None:
    """struct mount and the printk ring buffer's types come only from the source tree: with it,
    drgn's printk and fs helpers work; the log equals what the guest printed on its console."""
    source = corpus.kernel_source("6.1")
    kdump = corpus.root / corpus.manifest["kdump"]["dir"]
    without = run_drgn("-q", "-e", "list(for_each_mount(prog))", kdump / "vmcore")
    assert without.returncode == 1 and "struct mount" in without.stderr  # the archive alone cannot
    run = run_drgn("-q", "--kernel-source", source, "-e", PRIVATE, kdump / "vmcore")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    console = (kdump / "console.log").read_text(errors="replace").replace("\r", "").splitlines()
    shown = [text for level, text in got["log"] if level < 7]  # the console's default loglevel is 7
    assert len(shown) > 100 and [t for t in shown if t not in console] == []
    assert got["log"][0][1] == console[0] and console[0].startswith(f"Linux version {corpus.release('6.1-m')} ")
    assert got["log"][-1][1] == "Kernel panic - not syncing: sysrq triggered crash"
    assert ["/", "rootfs"] in got["mounts"] and ["/proc", "proc"] in got["mounts"]
    assert got["files"]["0"] == "/dev/console" and "/init" in got["files"].values()


def _arm64_kernels(corpus: Corpus) -> list[tuple[str, str]]:
    return [(kernel, kernel) for kernel in corpus.manifest["arm64_boots"]["kernels"]]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", corpus_params(_arm64_kernels))
def test_drgn_on_arm64_qemu_dumps(corpus: Corpus, kernel: str) -> None:
    """arm64 guests (QEMU virt, VMCOREINFO through fw_cfg): the types compiled for arm64 from the
    dump's own headers, kallsyms through VMCOREINFO; drgn walks the 3-level (6.1, 39-bit) or LPA2
    5-level (7.2, 52-bit) tables itself. The tasks are the guest's ps; a =m guest lists kheaders."""
    dump = _qemu_dump(corpus, kernel, "elf")
    modular = corpus.manifest["kernels"][kernel]["module"] is not None  # =y kernels: CONFIG_MODULES=n
    code = TASKS + ("print(json.dumps([m.name.string_().decode() for m in for_each_module(prog)]))\n"
                    if modular else "print('[]')\n")
    run = run_drgn("-q", "-e", code, dump)
    assert run.returncode == 0, run.stderr
    tasks_line, modules_line = run.stdout.splitlines()
    tasks = {pid: (comm, argv) for pid, comm, argv in json.loads(tasks_line)}
    ps = _ps(corpus.truth(kernel))
    later = {pid for pid in tasks if pid > max(ps)}
    assert len(later) <= 2
    _assert_ps(tasks, ps, later)
    assert json.loads(modules_line) == (["kheaders"] if modular else [])
