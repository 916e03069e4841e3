#!/bin/bash
# --symbols (kallsyms located by shape) vs vmlinux-to-elf, the tool a user would pick today, on the
# 6.12 bzImage and the 6.1 stripped vmlinux: whole processes with hyperfine, the ratio from one run,
# then a check that every symbol vmlinux-to-elf recovers is in ours (same address and name).
# vmlinux-to-elf is installed into a venv under the cache, not as a project dependency.
# Usage: bench/kallsyms.sh [CORPUS_DIR]     (default: the built corpus)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
corpus=${1:-$(python3 "$here/fixtures/corpus.py" path)}
cache="${EXTRACT_IKHEADERS_CACHE:-$HOME/.cache/extract-ikheaders}/bench"
venv="$cache/v2e-venv"
py=$(python3 -c 'import sys; print(sys.executable)')  # not a pyenv shim: it costs ~70 ms a start
if [ ! -x "$venv/bin/vmlinux-to-elf" ]; then
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q vmlinux-to-elf
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$here"
for input in "$corpus"/k612y-*/bzImage "$corpus"/k61y-*/vmlinux.stripped; do
    name=$(basename "$(dirname "$input")")/$(basename "$input")
    echo "== $name"
    hyperfine --warmup 1 --min-runs 5 --export-json "$work/run.json" \
        -n extract-ikheaders "$py -m extract_ikheaders --symbols $work/ours.map $input" \
        -n vmlinux-to-elf "$venv/bin/vmlinux-to-elf $input $work/theirs.elf"
    "$py" - "$work/run.json" <<'PY'
import json, sys
runs = {r["command"]: r["mean"] for r in json.load(open(sys.argv[1]))["results"]}
ours, theirs = runs["extract-ikheaders"], runs["vmlinux-to-elf"]
print(f"ratio extract-ikheaders / vmlinux-to-elf = {ours / theirs:.2f} ({ours:.3f} s / {theirs:.3f} s; target <= 0.5)")
PY
    nm "$work/theirs.elf" | awk 'NF == 3 {print $1, $3}' | sort -u > "$work/theirs.txt"
    awk '{print $1, $3}' "$work/ours.map" | sort -u > "$work/ours.txt"
    missing=$(comm -23 "$work/theirs.txt" "$work/ours.txt" | wc -l)
    echo "symbols: ours $(wc -l < "$work/ours.map"), vmlinux-to-elf $(wc -l < "$work/theirs.txt");" \
         "theirs missing from ours (address, name): $missing"
    comm -23 "$work/theirs.txt" "$work/ours.txt" | head -5
done
