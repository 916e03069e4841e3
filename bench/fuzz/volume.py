"""Fuzz every parser for volume: the targets of tests/fuzz_harness.py, driven by a random.Random loop.

Each parser runs in its own child process under an address-space limit (RLIMIT_AS, default 1 GiB),
so an allocation sized by an untrusted field fails as a MemoryError instead of passing unnoticed, and
with a per-input time limit (a hang is reported like a crash). Input i of a run is a pure function of
(--seed, i), so any input can be made again. Crashes (exceptions outside the parser's contract, hangs,
a dead child) are saved as reproducers under ~/.cache/extract-ikheaders/fuzz/<parser>/
($EXTRACT_IKHEADERS_CACHE/fuzz/ if set): NAME.bin (the input) and NAME.json (how to run it).

Usage:
    python bench/fuzz/volume.py [--count N] [--parser NAME ...] [--seed S] [--jobs J] [--memory MIB] [--timeout S]
    python bench/fuzz/volume.py --replay ~/.cache/extract-ikheaders/fuzz/elf/0123abcd.json   (re-raises)
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT / "tests", ROOT / "fixtures", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import fuzz_harness as fh  # noqa: E402  (needs the paths above)


def cache_dir() -> Path:
    base = os.environ.get("EXTRACT_IKHEADERS_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "extract-ikheaders") / "fuzz"


def make_input(name: str, seed: int, index: int) -> tuple[fh.Seed, list[fh.Mutation], int, bytes]:
    """Input `index` of a run: the seed it starts from, its mutations, its knob and its bytes."""
    seeds = fh.seeds_of(name)
    rnd = random.Random(seed * 1_000_000_007 + index)
    base = seeds[rnd.randrange(len(seeds))]
    mutations = fh.random_mutations(rnd)
    knob = rnd.getrandbits(32)
    return base, mutations, knob, fh.apply(base.data, base.hot, mutations)


def signature(error: BaseException) -> str:
    """Type and innermost frame inside the package (else the innermost frame): one per distinct bug."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "extract_ikheaders" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(error).__name__} at {where}"


def save_reproducer(name: str, seed: int, index: int, what: str, detail: str) -> Path:
    base, mutations, knob, data = make_input(name, seed, index)
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha256(data + knob.to_bytes(4, "little") + base.mode.encode()).hexdigest()[:16]
    (folder / f"{stem}.bin").write_bytes(data)
    meta = {"parser": name, "seed": base.name, "mode": base.mode, "knob": knob, "run_seed": seed, "index": index,
            "mutations": [m.as_list() for m in mutations], "error": what, "traceback": detail}
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder / f"{stem}.json"


# The child: one parser ---------------------------------------------------------------------------------


def child(name: str, count: int, seed: int, memory_mib: int, timeout: float, progress: str) -> None:
    target = fh.TARGETS[name]
    seeds = fh.seeds_of(name)
    for s in seeds:  # imports and caches happen here, before the limit
        fh.run_one(target, s.data, 0, s.mode, timeout=60)
    if memory_mib:
        limit = memory_mib << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    errors: collections.Counter[str] = collections.Counter()
    crashes: dict[str, dict[str, Any]] = {}
    started = last_report = time.monotonic()
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT, 0o644)
    for index in range(count):
        os.pwrite(fd, b"%12d" % index, 0)
        base, _, knob, data = make_input(name, seed, index)
        outcome = fh.run_one(target, data, knob, base.mode, timeout=timeout)
        error = outcome.error
        errors[type(error).__name__ if error is not None else "ok"] += 1
        if outcome.crash:
            assert error is not None
            sig = signature(error)
            entry = crashes.setdefault(sig, {"count": 0, "message": str(error)[:300]})
            entry["count"] += 1
            if "reproducer" not in entry:
                detail = "".join(traceback.format_exception(error))
                entry["reproducer"] = str(save_reproducer(name, seed, index, sig, detail))
        now = time.monotonic()
        if now - last_report > 60:
            last_report = now
            print(f"  {name}: {index + 1}/{count} in {now - started:.0f} s, {sum(c['count'] for c in crashes.values())}"
                  " crashes", file=sys.stderr, flush=True)
    os.close(fd)
    print(json.dumps({"parser": name, "inputs": count, "seconds": round(time.monotonic() - started, 1),
                      "outcomes": dict(errors), "crashes": crashes}))


# The parent --------------------------------------------------------------------------------------------


def run_parsers(args: argparse.Namespace) -> int:
    names = args.parser or sorted(fh.TARGETS)
    unknown = set(names) - set(fh.TARGETS)
    if unknown:
        sys.exit(f"unknown parser {', '.join(sorted(unknown))}; known: {', '.join(sorted(fh.TARGETS))}")
    progress_dir = cache_dir() / "progress"
    progress_dir.mkdir(parents=True, exist_ok=True)
    pending = list(names)
    running: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    results: list[dict[str, Any]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            progress = progress_dir / f"{name}.{os.getpid()}"
            cmd = [sys.executable, __file__, "--child", name, "--count", str(args.count), "--seed", str(args.seed),
                   "--memory", str(args.memory), "--timeout", str(args.timeout), "--progress", str(progress)]
            running[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT), progress)
        for name, (proc, progress) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            out = proc.stdout.read() if proc.stdout else ""
            results.append(_result(name, proc.returncode, out, progress, args))
            progress.unlink(missing_ok=True)
            _print(results[-1])
        time.sleep(0.2)
    total = sum(len(r["crashes"]) for r in results)
    print(f"\n{sum(r['inputs'] for r in results):,} inputs, {total} distinct crash signatures")
    return 1 if total else 0


def _result(name: str, code: int, out: str, progress: Path, args: argparse.Namespace) -> dict[str, Any]:
    lines = out.strip().splitlines()
    if code == 0 and lines:
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    # The child died (a signal, the address-space limit hit outside Python, ...): save what it was running.
    index = int(progress.read_text() or 0) if progress.exists() else 0
    what = f"child exited with {code}"
    reproducer = save_reproducer(name, args.seed, index, what, out[-2000:])
    return {"parser": name, "inputs": index, "seconds": 0, "outcomes": {},
            "crashes": {what: {"count": 1, "message": what, "reproducer": str(reproducer)}}}


def _print(result: dict[str, Any]) -> None:
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(result["outcomes"].items(), key=lambda kv: -kv[1]))
    print(f"{result['parser']:8} {result['inputs']:>9,} inputs in {result['seconds']:>7} s   {outcomes}")
    for sig, crash in result["crashes"].items():
        print(f"    CRASH x{crash['count']}: {sig}: {crash['message'][:120]}\n      reproducer: {crash['reproducer']}")
    sys.stdout.flush()


def replay(path: Path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    data = path.with_suffix(".bin").read_bytes()
    target = fh.TARGETS[meta["parser"]]
    print(f"{meta['parser']}: {len(data)} bytes from seed {meta['seed']}, knob {meta['knob']}, was: {meta['error']}")
    target.run(data, meta["knob"], meta["mode"])  # let it raise, with its traceback
    print("ran clean")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs per parser (default 100000)")
    parser.add_argument("--parser", action="append", help=f"one of {', '.join(sorted(fh.TARGETS))} (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="parsers fuzzed at once")
    parser.add_argument("--memory", type=int, default=1024, help="address-space limit in MiB (0: none)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input before it counts as a hang")
    parser.add_argument("--replay", type=Path, help="run one saved reproducer and let it raise")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        replay(args.replay)
        return 0
    if args.child:
        child(args.child, args.count, args.seed, args.memory, args.timeout, args.progress)
        return 0
    return run_parsers(args)


if __name__ == "__main__":
    sys.exit(main())
