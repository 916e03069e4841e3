"""Crash-image reading: time and peak RSS per dump, and the cost of a whole-memory scan for the xz
magic (every occurrence, as the carver does) against bare mmap.find calls over the file (the
target for ELF cores: at most 1.5x; for kdump files the scan decodes every page, so the ratio only
says how much decoding costs).

Each measurement runs in a fresh process so ru_maxrss is its own.
Usage: python bench/dumps.py [DUMP ...]   (default: every dump in the corpus)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the child: prints {"seconds": ..., "rss_mb": ..., "result": ...}.
CHILD = r"""
import json, mmap, resource, sys, time
from extract_ikheaders.archive import xzstream
from extract_ikheaders.dumps import search
from extract_ikheaders.errors import ExtractError
path, mode = sys.argv[1], sys.argv[2]
magic = xzstream.MAGIC
with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    start = time.perf_counter()
    if mode == "bare":
        count, at = 0, m.find(magic)
        while at != -1:
            count, at = count + 1, m.find(magic, at + 1)
        result = f"{count} magics"
    elif mode == "scan":
        mem = search.open_dump(m)
        count, at = 0, mem.find(magic, 0, 1 << 64)
        while at != -1:
            count, at = count + 1, mem.find(magic, at + 1, 1 << 64)
        result = f"{count} magics"
    else:
        try:
            found = search.find_in_dump(m, path)
            result = f"{found.sha256[:16]} at {found.offset:#x} ({found.release})"
        except ExtractError as exc:
            result = f"{type(exc).__name__}: {str(exc)[:60]}"
    seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mb": rss, "result": result}))
"""


def measure(path: Path, mode: str) -> dict[str, float | str]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    result: dict[str, float | str] = json.loads(out.stdout)
    return result


def corpus_dumps() -> list[Path]:
    sys.path.insert(0, str(ROOT / "fixtures"))
    import corpus

    root = corpus.corpus_dir()
    manifest = json.loads((root / "manifest.json").read_text())
    dumps = []
    for kernel in ("6.1-y-gzip", "6.1-m", "6.12-y"):
        boot = root / manifest["kernels"][kernel]["boot"]
        dumps += [boot / name for name in manifest["kernels"][kernel]["ground_truth"]["dumps"].values()]
    kdir = root / manifest["kdump"]["dir"]
    return [*dumps, kdir / "vmcore", *(kdir / n for n in manifest["kdump"]["makedumpfile_outputs"].values())]


def main() -> None:
    dumps = [Path(a) for a in sys.argv[1:]] or corpus_dumps()
    print(f"{'dump':<40} {'size MB':>8} {'find s':>7} {'RSS MB':>7} {'scan s':>7} {'bare s':>7} {'ratio':>6}  result")
    for path in dumps:
        measure(path, "bare")  # warm the page cache
        found = measure(path, "find")
        scan, bare = measure(path, "scan"), measure(path, "bare")
        ratio = float(scan["seconds"]) / max(float(bare["seconds"]), 1e-9)
        name = f"{path.parent.name[:18]}/{path.name}"
        print(f"{name:<40} {path.stat().st_size / 1e6:8.1f} {found['seconds']:7.2f} {found['rss_mb']:7.0f} "
              f"{scan['seconds']:7.2f} {bare['seconds']:7.2f} {ratio:6.2f}  {found['result']}")


if __name__ == "__main__":
    main()
