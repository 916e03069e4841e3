"""Hostile inputs at n and 10·n: wall time and peak RSS of the real CLI, and the 10·n/n ratio.

Linear work gives a time ratio near 10 (the issue's bound: at most 15); quadratic work gives ~100;
a path bounded by a constant (bzimage-inflating: codecs.MAX_IMAGE) gives a ratio well under 10.
Each run is a fresh process (python -m extract_ikheaders) under a 1 GiB address-space limit, its
peak RSS read from the kernel's accounting of the child. Inputs are built in code under a scratch
directory; nothing big is kept.

Usage: python bench/hostile.py [--case NAME] [--n N]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "fixtures"))

from hostile.inputs import (  # noqa: E402
    bzimage_inflating,
    config_markers,
    duplicate_members,
    elf_loads,
    kallsyms_marker_run,
    kallsyms_table,
    kdump_magic_runs,
    lime_ranges,
    tar_members,
)

# name -> (builder, default n, CLI arguments before the input); n makes the n run take 2 s or more
CASES: dict[str, tuple[Callable[[int], bytes], int, list[str]]] = {
    "lime-ranges": (lime_ranges, 300_000, ["-a", "/dev/null"]),
    "elf-pt-loads": (elf_loads, 200_000, ["-a", "/dev/null"]),
    "kdump-bitmap-runs": (kdump_magic_runs, 50_000, ["-a", "/dev/null"]),
    "config-markers": (config_markers, 5_000_000, ["--config", "/dev/null", "-a", "/dev/null"]),
    "duplicate-members": (duplicate_members, 100_000, ["-o", "{out}", "--max-members", "100000000"]),
    "tar-members-list": (tar_members, 100_000, ["-l", "--max-members", "100000000"]),
    "bzimage-inflating-MiB": (bzimage_inflating, 100, ["-a", "/dev/null"]),
    # 10·n = symtab.MAX_SYMS; names of 40 bytes
    "kallsyms-symbols": (lambda n: kallsyms_table(n, 40), 104_857, ["--symbols", "/dev/null"]),
    # 10·n words still lie within the 3 MiB searched back from the token table
    "kallsyms-marker-run": (kallsyms_marker_run, 70_000, ["--symbols", "/dev/null"]),
}

CHILD = r"""
import resource, runpy, sys, time
sys.argv = ["extract-ikheaders", *sys.argv[1:]]
start = time.perf_counter()
try:
    runpy.run_module("extract_ikheaders", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(f"{time.perf_counter() - start:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} {code}",
      file=sys.stderr)
"""


def measure(args: list[str]) -> tuple[float, int, str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, preexec_fn=limit,
                          timeout=3600)
    seconds, rss, code = proc.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(rss), code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--n", type=int, help="override every case's n")
    opts = parser.parse_args()
    print("| case | n | time n | time 10·n | ratio | peak RSS n | peak RSS 10·n | exit |")
    print("|---|---|---|---|---|---|---|---|")
    for name in opts.case or CASES:
        build, default_n, args = CASES[name]
        n = opts.n or default_n
        row = []
        with tempfile.TemporaryDirectory() as tmp:
            for size in (n, 10 * n):
                path = Path(tmp) / f"{name}-{size}"
                path.write_bytes(build(size))
                out = str(Path(tmp) / f"out-{size}")
                row.append(measure([a.replace("{out}", out) for a in args] + [str(path)]))
                path.unlink()
        (t1, r1, c1), (t10, r10, c10) = row
        print(f"| {name} | {n:,} | {t1:.2f} s | {t10:.2f} s | {t10 / t1:.1f} | {r1} MiB | {r10} MiB | {c1}/{c10} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
