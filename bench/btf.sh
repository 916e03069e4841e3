#!/bin/sh
# --btf, whole processes, against the baseline of finding the archive alone (-a /dev/null) in the
# same run: the kernel's own BTF (6.12 built with CONFIG_DEBUG_INFO_BTF: vmlinux and bzImage), and
# BTF generated from the headers of the 6.1 vmlinux, cold (empty cache) and cached.
# Usage: bench/btf.sh   (the corpus' k612btf and k61y stages; pahole from its btftools stage)
set -eu
cache="${EXTRACT_IKHEADERS_CACHE:-$HOME/.cache/extract-ikheaders}/bench"
mkdir -p "$cache"
py=$(python3 -c 'import sys; print(sys.executable)')
root=$("$py" fixtures/corpus.py path)
stage() { echo "$root/$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["recipe"][sys.argv[2]]["dir"])' "$root/manifest.json" "$1")"; }
btf612=$(stage k612btf)
k61=$(stage k61y)/vmlinux
export EXTRACT_IKHEADERS_PAHOLE="$root/$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["btftools"])' "$root/manifest.json")/usr/bin/pahole"
types="$cache/btf-types"
export EXTRACT_IKHEADERS_TYPES_CACHE="$types"
hyperfine --warmup 1 --min-runs 5 --export-markdown "$cache/btf-own.md" \
    -n "archive, vmlinux" "$py -m extract_ikheaders -a /dev/null $btf612/vmlinux" \
    -n "btf, vmlinux" "$py -m extract_ikheaders --btf /dev/null $btf612/vmlinux" \
    -n "archive, bzImage" "$py -m extract_ikheaders -a /dev/null $btf612/bzImage" \
    -n "btf, bzImage" "$py -m extract_ikheaders --btf /dev/null $btf612/bzImage"
hyperfine --warmup 1 --min-runs 5 --export-markdown "$cache/btf-cached.md" \
    -n "archive, 6.1 vmlinux" "$py -m extract_ikheaders -a /dev/null $k61" \
    -n "btf from headers, cached" "$py -m extract_ikheaders --btf-from headers --btf /dev/null $k61"
# One --prepare per command needs hyperfine 1.16+: its own run, with the baseline.
hyperfine --min-runs 3 --prepare "rm -rf $types" --export-markdown "$cache/btf-cold.md" \
    -n "archive, 6.1 vmlinux" "$py -m extract_ikheaders -a /dev/null $k61" \
    -n "btf from headers, cold" "$py -m extract_ikheaders --btf-from headers --btf /dev/null $k61"
cat "$cache/btf-own.md" "$cache/btf-cached.md" "$cache/btf-cold.md"
