#!/bin/sh
# --debuginfo on a real kdump, whole processes: cold (empty types cache) and cached, against the
# baseline of finding the archive alone (-a /dev/null), measured in the same run.
# Usage: bench/debuginfo.sh [VMCORE]   (default: the corpus' kdump-6.1-y vmcore)
set -eu
cache="${EXTRACT_IKHEADERS_CACHE:-$HOME/.cache/extract-ikheaders}/bench"
mkdir -p "$cache"
py=$(python3 -c 'import sys; print(sys.executable)')
vmcore="${1:-}"
if [ -z "$vmcore" ]; then
    root=$("$py" fixtures/corpus.py path)
    vmcore="$root/$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kdump"]["dir"])' "$root/manifest.json")/vmcore"
fi
ls -l "$vmcore"
types="$cache/types-cache"
out="$cache/types.o"
export EXTRACT_IKHEADERS_TYPES_CACHE="$types"
# One --prepare per command needs hyperfine 1.16+: two runs, each with the baseline.
hyperfine --warmup 1 --min-runs 5 --export-markdown "$cache/debuginfo-cached.md" \
    -n "find only" "$py -m extract_ikheaders -a /dev/null $vmcore" \
    -n "debuginfo cached" "$py -m extract_ikheaders --debuginfo $out $vmcore"
hyperfine --min-runs 5 --prepare "rm -rf $types" --export-markdown "$cache/debuginfo-cold.md" \
    -n "find only" "$py -m extract_ikheaders -a /dev/null $vmcore" \
    -n "debuginfo cold" "$py -m extract_ikheaders --debuginfo $out $vmcore"
