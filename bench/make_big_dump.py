"""Build a big ELF core for bench/dumps.py: a real corpus dump's segments plus GiBs of
incompressible filler as extra physical memory (with --no-blob, the filler and notes only).
Usage: python bench/make_big_dump.py SOURCE_DUMP DEST [--gib 4] [--no-blob]"""

from __future__ import annotations

import argparse
import mmap
import os
import struct
from pathlib import Path

from extract_ikheaders.elf.reader import PT_LOAD, PT_NOTE, ElfImage

CHUNK = 64 << 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--no-blob", action="store_true")
    args = parser.parse_args()
    with args.source.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as src:
        elf = ElfImage(src)
        keep = [p for p in elf.segments() if p.type == PT_NOTE or (p.type == PT_LOAD and not args.no_blob)]
        filler = int(args.gib * (1 << 30)) // 4096 * 4096
        top = max((p.paddr + p.memsz for p in elf.segments() if p.type == PT_LOAD), default=0)
        base = (top + (1 << 30)) & ~((1 << 30) - 1)
        count = len(keep) + 1
        offset = (64 + 56 * count + 4095) & ~4095
        headers, layout = [], []
        for p in keep:
            headers.append(struct.pack("<IIQQQQQQ", p.type, 0, offset, p.vaddr, p.paddr, p.filesz, p.memsz, 0))
            layout.append((p, offset))
            offset = (offset + p.filesz + 4095) & ~4095
        headers.append(struct.pack("<IIQQQQQQ", PT_LOAD, 0, offset, 0, base, filler, filler, 0))
        ehdr = bytearray(src[:64])
        struct.pack_into("<QQ", ehdr, 32, 64, 0)  # e_phoff, no section headers
        struct.pack_into("<HHHH", ehdr, 54, 56, count, 0, 0)
        with args.dest.open("wb") as out:
            out.write(bytes(ehdr) + b"".join(headers))
            for p, at in layout:
                out.seek(at)
                for pos in range(0, p.filesz, CHUNK):
                    out.write(src[p.offset + pos : p.offset + min(p.filesz, pos + CHUNK)])
            out.seek(offset)
            for pos in range(0, filler, CHUNK):
                out.write(os.urandom(min(CHUNK, filler - pos)))
    print(args.dest, args.dest.stat().st_size)


if __name__ == "__main__":
    main()
