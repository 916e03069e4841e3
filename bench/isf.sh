#!/bin/sh
# --isf on a real kdump, whole processes: cold (empty types cache: compile + DWARF conversion) and
# cached, against --symbols on the same dump (reading kallsyms only) as the baseline of this run;
# then Volatility 3's linux.pslist with the table (its own caches warm, as a user would run it).
# Usage: bench/isf.sh [VMCORE]   (default: the corpus' no5lvl kdump, kdump-6.1-m-4level)
set -eu
cache="${EXTRACT_IKHEADERS_CACHE:-$HOME/.cache/extract-ikheaders}/bench"
mkdir -p "$cache"
py=$(python3 -c 'import sys; print(sys.executable)')  # not a pyenv shim: it adds ~70 ms per command
vmcore="${1:-}"
if [ -z "$vmcore" ]; then
    vmcore=$("$py" -c 'import sys; sys.path.insert(0, "fixtures"); import corpus, json
root = corpus.corpus_dir(); m = json.loads((root / "manifest.json").read_text())
print(root / m["recipe"]["kdump-6.1-m-4level"]["dir"] / "vmcore")')
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/symbols" "$work/vol-cache"
export EXTRACT_IKHEADERS_TYPES_CACHE="$work/types"
"$py" -m extract_ikheaders --isf "$work/symbols/kernel.json.xz" "$vmcore"  # fill the caches once
# one --prepare per command (a single one would apply to all): only the cold run empties the cache
hyperfine --warmup 1 --min-runs 5 --export-markdown "$cache/isf.md" \
    --prepare true --prepare true --prepare "rm -rf $work/types" \
    -n "symbols (baseline)" "$py -m extract_ikheaders --symbols $work/System.map $vmcore" \
    -n "isf cached" "$py -m extract_ikheaders --isf $work/cached.json.xz $vmcore" \
    -n "isf cold" "$py -m extract_ikheaders --isf $work/cold.json.xz $vmcore"
vol=$(dirname "$py")/vol
if [ -x "$vol" ]; then
    hyperfine --warmup 1 --min-runs 3 --export-markdown "$cache/isf-vol.md" \
        -n "vol linux.pslist" "$vol -q --offline --cache-path $work/vol-cache -s $work/symbols -f $vmcore linux.pslist"
fi
