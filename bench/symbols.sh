#!/bin/sh
# Symbol lookup on a big debug vmlinux (Debian's linux-image-*-dbg), whole processes, one run:
#   extract-ikheaders --json -a /dev/null  vs  pyelftools' get_symbol_by_name  vs  nm | grep.
# Debian's distro kernels build kheaders as a module, so the vmlinux has no archive: every
# command answers "not here", which is exactly the lookup cost we want to compare.
# Usage: bench/symbols.sh [VMLINUX]   (without VMLINUX, downloads the dbg package into the cache)
set -eu
cache="${EXTRACT_IKHEADERS_CACHE:-$HOME/.cache/extract-ikheaders}/bench"
mkdir -p "$cache"
vmlinux="${1:-}"
if [ -z "$vmlinux" ]; then
    pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-dbg$' | sort -V | tail -1 | cut -d' ' -f1)
    vmlinux=$(ls "$cache"/usr/lib/debug/boot/vmlinux-* 2>/dev/null | head -1 || true)
    if [ -z "$vmlinux" ]; then
        (cd "$cache" && apt-get download "$pkg" && dpkg-deb --fsys-tarfile "$pkg"_*.deb |
            tar -x --wildcards './usr/lib/debug/boot/vmlinux-*' && rm -f "$pkg"_*.deb)
        vmlinux=$(ls "$cache"/usr/lib/debug/boot/vmlinux-* | head -1)
    fi
fi
ls -l "$vmlinux"
# The interpreter itself: a pyenv shim (a bash script) would add ~70 ms to every Python command.
py=$(python3 -c 'import sys; print(sys.executable)')
cat > "$cache/pyelftools_lookup.py" <<'PY'
import sys
from elftools.elf.elffile import ELFFile
with open(sys.argv[1], "rb") as f:
    symtab = ELFFile(f).get_section_by_name(".symtab")
    print(symtab.get_symbol_by_name("kernel_headers_data"), symtab.get_symbol_by_name("kernel_config_data"))
PY
hyperfine --warmup 2 --min-runs 10 -i --export-markdown "$cache/symbols.md" \
    -n extract-ikheaders "$py -m extract_ikheaders --json -a /dev/null $vmlinux" \
    -n "nm | grep" "nm $vmlinux | grep kernel_headers_data" \
    -n pyelftools "$py $cache/pyelftools_lookup.py $vmlinux"
"$py" - "$vmlinux" <<'PY'
import resource, subprocess, sys
for name, cmd in [("extract-ikheaders", [sys.executable, "-m", "extract_ikheaders", "--json", "-a", "/dev/null", sys.argv[1]])]:
    subprocess.run(cmd, capture_output=True)
print("peak RSS of children (MB):", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
PY
