"""The tool against the yardsticks a user compares it with (issue #21), one hyperfine run per row so
that each ratio compares two commands measured side by side. Prints a markdown table.

Rows (tool : yardstick, the goal):
- `--version`, `--help` : `python3 -c 'import click'` (<= 1.3)
- `-a /dev/null` (verifying) per bzImage codec : import click + the codec's CLI on the payload +
  `xz -t` of the archive (<= 1.1); the 17 MB vmlinux : import click + `xz -t` (<= 1.1)
- `--no-verify -a /dev/null` per bzImage codec : import click + the codec's CLI on the payload
  (<= 1.15); the 17 MB vmlinux and a ~600 MB debug vmlinux with the archive planted : `nm | grep`
  (<= 1.2, <= 1.0); the stripped vmlinux (carving) : `xz -dc` of the archive (<= 0.5)
- `--json --info -j 2` over the 7 bzImages twice : the same with `-j 1` (>= 1.8x faster)

Usage: python bench/speed.py [--quick] [--only SUBSTRING] [--big VMLINUX] [--baseline TREE]
  --big: a debug vmlinux (bench/symbols.sh downloads Debian's); the archive is planted with objcopy.
  --baseline: a checkout of an earlier commit (git worktree add ../before REV), measured in the same
  hyperfine run as the tool (rows whose options it does not have are not).
Commands run with the interpreter itself (a pyenv shim costs ~70 ms) and bytecode compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TOOL = f"{PY} -m extract_ikheaders"
CLICK = f"{PY} -c 'import click'"
CODECS = {"gzip": "gzip -dc", "bzip2": "bzip2 -dc", "lzma": "lzma -dc", "xz": "xz -dc", "lzo": "lzop -dc",
          "lz4": "lz4 -dc", "zstd": "zstd -dc"}


@dataclass(frozen=True)
class Row:
    name: str
    tool: str
    yardstick: str
    yardstick_name: str
    goal: str  # "<= 1.1": tool/yardstick at most; ">= 1.8": yardstick/tool at least


def corpus() -> Path:
    return Path(subprocess.run([PY, str(ROOT / "fixtures" / "corpus.py"), "path"], check=True,
                               capture_output=True, text=True).stdout.strip())


def bzimage_payload(image: Path, dest: Path) -> Path:
    """The compressed payload of an x86 bzImage (setup header: setup_sects, payload_offset/length)."""
    data = image.read_bytes()
    setup_sects = data[0x1F1] or 4
    offset = int.from_bytes(data[0x248:0x24C], "little")
    length = int.from_bytes(data[0x24C:0x250], "little")
    start = (setup_sects + 1) * 512 + offset
    dest.write_bytes(data[start : start + length])
    return dest


def plant(vmlinux: Path, archive: Path, dest: Path) -> Path:
    """`vmlinux` with the archive added as a section between the two symbols the kernel defines."""
    if not dest.exists():
        size = archive.stat().st_size
        subprocess.run(["objcopy", "--add-section", f".kheaders={archive}", "--set-section-flags",
                        ".kheaders=alloc,readonly,data", "--add-symbol", "kernel_headers_data=.kheaders:0,global",
                        "--add-symbol", f"kernel_headers_data_end=.kheaders:{size},global", str(vmlinux), str(dest)],
                       check=True, capture_output=True)
    return dest


def rows(work: Path, big: Path | None) -> list[Row]:
    root = corpus()
    k61y = next(root.glob("k61y-*"))
    q = shlex.quote
    out: list[Row] = [
        Row("--version", f"{TOOL} --version", CLICK, "import click", "<= 1.3"),
        Row("--help", f"{TOOL} --help", CLICK, "import click", "<= 1.3"),
    ]
    for codec, cli in CODECS.items():
        image = k61y / f"bzImage.{codec}"
        payload = bzimage_payload(image, work / f"payload.{codec}")
        blob = k61y / "variants" / codec / "kheaders_data.tar.xz"
        decode = f"{cli} < {q(str(payload))} > /dev/null"
        out.append(Row(f"bzImage {codec}", f"{TOOL} -a /dev/null {q(str(image))}",
                       f"{CLICK}; {decode}; xz -t {q(str(blob))}", f"import click + {cli.split()[0]} + xz -t",
                       "<= 1.1"))
        out.append(Row(f"bzImage {codec} --no-verify", f"{TOOL} --no-verify -a /dev/null {q(str(image))}",
                       f"{CLICK}; {decode}", f"import click + {cli.split()[0]}", "<= 1.15"))
    vmlinux, blob = k61y / "vmlinux", k61y / "kheaders_data.tar.xz"
    nm = f"nm {q(str(vmlinux))} | grep -w kernel_headers_data"
    out += [
        Row("vmlinux 17 MB", f"{TOOL} -a /dev/null {q(str(vmlinux))}", f"{CLICK}; xz -t {q(str(blob))}",
            "import click + xz -t", "<= 1.1"),
        Row("vmlinux 17 MB --no-verify", f"{TOOL} --no-verify -a /dev/null {q(str(vmlinux))}", nm, "nm | grep",
            "<= 1.2"),
        Row("stripped vmlinux --no-verify", f"{TOOL} --no-verify -a /dev/null {q(str(k61y / 'vmlinux.stripped'))}",
            f"xz -dc {q(str(blob))} > /dev/null", "xz -dc", "<= 0.5"),
    ]
    if big is not None:
        planted = plant(big, blob, work.parent / "vmlinux-planted")
        out.append(Row(f"debug vmlinux {planted.stat().st_size >> 20} MB --no-verify",
                       f"{TOOL} --no-verify -a /dev/null {q(str(planted))}",
                       f"nm {q(str(planted))} | grep -w kernel_headers_data", "nm | grep", "<= 1.0"))
    images = " ".join(q(str(k61y / f"bzImage.{c}")) for c in [*CODECS, *CODECS])  # enough for both workers to stay busy
    out.append(Row("--json --info, 14 bzImages, -j 2", f"{TOOL} --json --info -j 2 {images} > /dev/null",
                   f"{TOOL} --json --info -j 1 {images} > /dev/null", "the same, -j 1", ">= 1.8"))
    return out


def measure(row: Row, work: Path, quick: bool, baseline: Path | None) -> tuple[float, float, float, float | None]:
    """(tool mean s, yardstick mean s, the ratio the goal is about, the baseline's mean s or None)."""
    export = work / "run.json"
    runs = ["--runs", "3"] if quick else ["--min-runs", "7", "--warmup", "2"]
    before = ["-n", "baseline", f"env PYTHONPATH={shlex.quote(str(baseline))} {row.tool}"] if baseline else []
    subprocess.run(["hyperfine", *runs, "-i", "--export-json", str(export), "-n", "tool", row.tool,
                    "-n", "yardstick", row.yardstick, *before], check=True, capture_output=True)
    means = {r["command"]: r["mean"] for r in json.loads(export.read_text())["results"]}
    tool, yard = means["tool"], means["yardstick"]
    return tool, yard, (yard / tool if row.goal.startswith(">=") else tool / yard), means.get("baseline")


def met(goal: str, ratio: float) -> bool:
    op, value = goal.split()
    return ratio <= float(value) if op == "<=" else ratio >= float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs a command, no warm-up")
    parser.add_argument("--only", help="rows whose name contains this")
    parser.add_argument("--big", type=Path, help="a big debug vmlinux to plant the archive in")
    parser.add_argument("--baseline", type=Path, help="an earlier checkout, measured beside the tool")
    args = parser.parse_args()
    for tool in ("hyperfine", "nm", "xz", *(c.split()[0] for c in CODECS.values())):
        if shutil.which(tool) is None:
            sys.exit(f"bench/speed.py: {tool} is not installed")
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "extract_ikheaders")], check=True, capture_output=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    cache = Path(os.environ.get("EXTRACT_IKHEADERS_CACHE", Path.home() / ".cache" / "extract-ikheaders")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        print("| input, action | tool (s) | yardstick | yardstick (s) | ratio | goal | met | baseline (s) |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows(work, args.big):
            if args.only and args.only not in row.name:
                continue
            baseline = args.baseline if args.baseline and "--no-verify" not in row.tool else None
            tool, yard, ratio, before = measure(row, work, args.quick, baseline)
            shown = f"{before:.3f}" if before is not None else "-"
            print(f"| {row.name} | {tool:.3f} | {row.yardstick_name} | {yard:.3f} | {ratio:.2f} | {row.goal} | "
                  f"{'yes' if met(row.goal, ratio) else 'NO'} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
