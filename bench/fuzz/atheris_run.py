"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser in tests/fuzz_harness.py.

One target per process: the package is instrumented, the target's seeds (and, when the corpus is
built, slices of real kernels and dumps) start the corpus, and libFuzzer mutates for -runs inputs
under an RSS limit and a per-input timeout. Only the target's typed errors may escape; anything else
is a crash, saved by libFuzzer as crash-<sha1> in the target's folder. Runs happen on demand (they
take minutes per target), never in CI; CI replays the inputs saved with --save (tests/fuzz_saved/).

An input is one byte choosing the seed's mode, four bytes of knob (the option bits a target reads),
then the data, so that libFuzzer mutates the options along with the bytes.

Usage:
    pip install atheris
    python bench/fuzz/atheris_run.py TARGET [--runs 1000000] [--save 40]
    python bench/fuzz/atheris_run.py TARGET --runs 0 --save 40   (save from the last run's corpus)
    python bench/fuzz/atheris_run.py --list
Results go to ~/.cache/extract-ikheaders/atheris/TARGET/ (corpus/, crash-*, summary.json).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAVED = ROOT / "tests" / "fuzz_saved"
MAX_SAVED_BYTES = 8 << 10  # inputs kept for CI stay small: the folder is committed


def work_dir(target: str) -> Path:
    base = os.environ.get("EXTRACT_IKHEADERS_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "extract-ikheaders") / "atheris" / target


def write_seeds(fh: Any, target: str, corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in fh.seeds_of(target):
        for knob in range(4):
            raw = fh.encode_input(target, seed.mode, knob, seed.data)
            (corpus / f"seed-{hashlib.sha1(raw).hexdigest()}").write_bytes(raw)
    for name, data in corpus_slices(target):
        raw = fh.encode_input(target, fh.modes_of(target)[0], 0, data)
        (corpus / f"real-{name}").write_bytes(raw)


def corpus_slices(target: str) -> list[tuple[str, bytes]]:
    """Seeds from the real kernels: the first 64 KiB of up to 8 of the built corpus's files of this
    kind (names from its manifest); none when the corpus is not built."""
    try:
        folder = Path(subprocess.run([sys.executable, str(ROOT / "fixtures" / "corpus.py"), "path"],
                                     capture_output=True, text=True, check=True).stdout.strip())
        files = json.loads((folder / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError):
        return []
    patterns = {"bzimage": r"/bzImage", "elf": r"/vmlinux$", "carve": r"kheaders_data\.tar\.xz$",
                "dumps": r"/dump\.(elf|kdump|lime|flat)", "images": r"/(Image|zImage|boot.*\.img)",
                "module": r"/kheaders\.ko$", "unpack": r"kheaders_data\.tar\.xz$"}
    found = []
    for name in sorted(files):
        if target in patterns and re.search(patterns[target], name):
            with (folder / name).open("rb") as f:
                found.append((hashlib.sha1(name.encode()).hexdigest()[:12], f.read(64 << 10)))
    return found[:8]


def import_package() -> None:
    """Every module of the package, so that instrument_imports sees them all: the targets import
    most of them lazily (only the path that needs a module loads it), which would leave them blind."""
    import importlib
    import pkgutil

    import extract_ikheaders

    for module in pkgutil.walk_packages(extract_ikheaders.__path__, "extract_ikheaders."):
        if module.name != "extract_ikheaders.__main__":
            importlib.import_module(module.name)


def fuzz(target: str, runs: int, rss_mb: int, timeout: int, seconds: int) -> None:
    import atheris

    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "fixtures")]
    with atheris.instrument_imports(include=["extract_ikheaders"]):
        import_package()
        import fuzz_harness as fh
    spec = fh.TARGETS[target]
    for seed in fh.seeds_of(target):  # imports and caches before the limits and the clock
        fh.run_one(spec, seed.data, 0, seed.mode, timeout=60)

    def one_input(raw: bytes) -> None:
        mode, knob, data = fh.decode_input(target, raw)
        with contextlib.suppress(*spec.allowed):
            spec.run(data, knob, mode)

    folder = work_dir(target)
    write_seeds(fh, target, folder / "corpus")
    longest = max(len(seed.data) for seed in fh.seeds_of(target)) + 5
    args = [sys.argv[0], str(folder / "corpus"), f"-runs={runs}", f"-rss_limit_mb={rss_mb}",
            f"-timeout={timeout}", f"-max_len={max(longest, 4096)}", f"-artifact_prefix={folder}/",
            "-print_final_stats=1", *([f"-max_total_time={seconds}"] if seconds else [])]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def run(target: str, runs: int, rss_mb: int, timeout: int, seconds: int, save: int) -> int:
    folder = work_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, __file__, "--child", target, "--runs", str(runs),
                               "--rss-mb", str(rss_mb), "--timeout", str(timeout),
                               "--seconds", str(seconds)], stdout=out, stderr=out, cwd=ROOT)
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    done = re.findall(r"Done (\d+) runs in (\d+) second", text)
    crashes = sorted(p.name for p in folder.glob("crash-*")) + sorted(p.name for p in folder.glob("timeout-*")) \
        + sorted(p.name for p in folder.glob("oom-*"))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", text)
    summary = {"target": target, "runs": int(done[-1][0]) if done else None, "seconds": round(seconds),
               "exit": proc.returncode, "crashes": crashes, "corpus": len(list((folder / "corpus").iterdir())),
               "coverage": {"cov": int(cov[-1][0]), "ft": int(cov[-1][1])} if cov else None}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    if save:
        save_inputs(target, folder / "corpus", save)
    return 0 if proc.returncode == 0 and not crashes else 1


def save_inputs(target: str, corpus: Path, count: int) -> None:
    """A fixed sample of the corpus libFuzzer grew (small inputs only) for CI to replay."""
    small = sorted(p for p in corpus.iterdir()
                   if p.stat().st_size <= MAX_SAVED_BYTES and not p.name.startswith("real-"))
    chosen = random.Random(target).sample(small, min(count, len(small)))
    out = SAVED / target
    out.mkdir(parents=True, exist_ok=True)
    for path in chosen:
        data = path.read_bytes()
        (out / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rss-mb", type=int, default=1024, help="libFuzzer's RSS limit (default 1024)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds per input (default 10)")
    parser.add_argument("--seconds", type=int, default=0, help="stop after this long even before --runs (0: no limit)")
    parser.add_argument("--save", type=int, default=0, help="inputs to keep in tests/fuzz_saved/TARGET")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fuzz(args.child, args.runs, args.rss_mb, args.timeout, args.seconds)
        return 0
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "fixtures")]
    import fuzz_harness as fh

    if args.save and args.runs == 0:  # --runs 0 --save N: keep inputs of an earlier run only
        save_inputs(args.target, work_dir(args.target) / "corpus", args.save)
        return 0
    if args.list or not args.target:
        for name, spec in sorted(fh.TARGETS.items()):
            print(f"{name:12} {spec.doc}")
        return 0
    return run(args.target, args.runs, args.rss_mb, args.timeout, args.seconds, args.save)


if __name__ == "__main__":
    sys.exit(main())
