#!/bin/bash
# bzImage end to end (--archive) vs the unavoidable work (the codec's own CLI decoding the
# payload to /dev/null) vs an extract-ikconfig-style shell pipeline, for each kernel compressor.
# Usage: bench/bzimage.sh [CORPUS_DIR]     (default: the built corpus)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
corpus=${1:-$(python3 "$here/fixtures/corpus.py" path)}
work=$(mktemp -d)
py=$(python3 -c 'import sys; print(sys.executable)')  # not a pyenv shim: it costs ~70 ms a start
trap 'rm -rf "$work"' EXIT
declare -A tool=([gzip]="gzip -dc" [bzip2]="bzip2 -dc" [lzma]="lzma -dc" [xz]="xz -dc" [lzo]="lzop -dc"
                 [lz4]="lz4 -dc" [zstd]="zstd -dc")
declare -A magic=([gzip]='\037\213\010' [bzip2]='BZh' [lzma]='\135\0\0\0' [xz]='\3757zXZ\000'
                  [lzo]='\211LZO' [lz4]='\002!L\030' [zstd]='(\265/\375')
# extract-ikconfig's try_decompress, aimed at the headers: decode from every magic offset and
# look for an xz stream in the output.
cat > "$work/ikconfig-style.sh" <<'SH'
img=$1 sig=$2 cmd=$3 tmp=$(mktemp)
for pos in $(tr "$sig\n$4" "\n$4=" < "$img" | grep -abo "^$4"); do
    pos=${pos%%:*}
    tail -c+"$pos" "$img" | $cmd > "$tmp" 2>/dev/null
    grep -c -a -b -o -P '\xfd7zXZ\x00' "$tmp" >/dev/null && break
done
rm -f "$tmp"
SH
for c in gzip bzip2 lzma xz lzo lz4 zstd; do
    img=$(ls "$corpus"/k61y-*/bzImage.$c)
    setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$img" | tr -d ' ')
    [ "$setup_sects" = 0 ] && setup_sects=4
    off=$(od -An -tu4 -j $((0x248)) -N4 "$img" | tr -d ' ')
    len=$(od -An -tu4 -j $((0x24c)) -N4 "$img" | tr -d ' ')
    tail -c +$(( (setup_sects + 1) * 512 + off + 1 )) "$img" | head -c "$len" > "$work/payload.$c"
    echo "== $c"
    hyperfine --warmup 1 --min-runs 5 -i --export-json "$work/$c.json" \
        -n tool "$py -m extract_ikheaders -a /dev/null $img" \
        -n "${tool[$c]}" "sh -c '${tool[$c]} < $work/payload.$c > /dev/null'" \
        -n ikconfig-style "bash $work/ikconfig-style.sh $img '${magic[$c]}' '${tool[$c]}' xy" | grep -E "±|faster|slower" || true
    python3 - "$work/$c.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
tool = r.pop("tool"); shell = r.pop("ikconfig-style"); codec = next(iter(r.values()))
print(f"   ratio tool/codec-cli = {tool / codec:.2f}   ikconfig-style/tool = {shell / tool:.1f}x")
PY
done
