"""A small encoder of the kallsyms tables, written from scripts/kallsyms.c (6.1 and 6.12).

Tokens: every character used in a name is a single-character token at the slot of its code (as
insert_real_symbols_in_table does); the free slots get frequent substrings; names are encoded
greedily. Layouts ("6.1": offsets/addresses before num_syms and seqs_of_names before the token
table; "6.1-noseqs": the same before seqs_of_names existed; "6.12": offsets after the token index;
"7.x", from 7.2's scripts/kallsyms.c: the 6.12 order without kallsyms_relative_base, every label
aligned to 4 whatever the word size, and offsets place-relative (`.long _text - . + off`: the
target's address minus the entry's own, `vaddr` being the address of the blob's first byte), or
with mode "absolute" plain u32 addresses (a 32-bit kernel that is not relocatable)), word size 4
or 8, byte order "<" or ">", address modes "relative", "percpu" (x86_64 KALLSYMS_ABSOLUTE_PERCPU:
absolute symbols keep their value, the others base - 1 - offset) and "absolute" (kallsyms_addresses).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

Symbol = tuple[int, str, str]


@dataclass(frozen=True)
class Encoded:
    blob: bytes
    labels: dict[str, int]  # offset of each kallsyms_* label in blob
    symbols: list[Symbol]  # sorted by address, as kallsyms holds them


def tokens_for(texts: list[str]) -> list[str]:
    """256 tokens: used characters at their own code, frequent substrings in the free slots."""
    table: list[str | None] = [None] * 256
    for ch in {c for text in texts for c in text}:
        table[ord(ch)] = ch
    grams = Counter(text[i : i + n] for text in texts for n in (4, 3, 2) for i in range(len(text) - n + 1))
    common = iter(gram for gram, _ in grams.most_common())
    for slot in range(255, -1, -1):
        if table[slot] is None:
            table[slot] = next(common, f"~{slot}~")
    return [t for t in table if t is not None]


def encode_name(text: str, tokens: list[str]) -> bytes:
    """Greedy longest-token encoding, with the one- or two-byte length in front."""
    by_text = {t: i for i, t in enumerate(tokens)}
    longest = max(map(len, tokens))
    out, pos = [], 0
    while pos < len(text):
        for n in range(min(longest, len(text) - pos), 0, -1):
            if text[pos : pos + n] in by_text:
                out.append(by_text[text[pos : pos + n]])
                pos += n
                break
    n = len(out)
    head = bytes([n]) if n < 0x80 else bytes([0x80 | (n & 0x7F), n >> 7])
    return head + bytes(out)


class _Writer:
    def __init__(self, word: int) -> None:
        self.word = word
        self.out = bytearray()
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.out += bytes(-len(self.out) % self.word)  # ALGN
        self.labels[name] = len(self.out)

    def put(self, data: bytes) -> None:
        self.out += data


def encode(symbols: list[Symbol], *, word: int = 8, endian: str = "<", layout: str = "6.1",
           mode: str = "relative", percpu_below: int = 0, vaddr: int = 0) -> Encoded:
    """The kallsyms tables for `symbols` (sorted here by address)."""
    table = sorted(symbols, key=lambda s: (s[0], s[2]))
    texts = [typ + name for _, typ, name in table]
    tokens = tokens_for(texts)
    kernel = [addr for addr, _, _ in table if mode != "percpu" or addr >= percpu_below]
    base = min(kernel)
    ptr = "Q" if word == 8 else "I"
    w = _Writer(4 if layout == "7.x" else word)

    def place_relative() -> None:
        w.label("kallsyms_offsets")
        for addr, _, _ in table:
            if mode == "absolute":
                w.put(struct.pack(f"{endian}I", addr))
            else:
                w.put(struct.pack(f"{endian}i", addr - (vaddr + len(w.out))))

    def addresses() -> None:
        if mode == "absolute":
            w.label("kallsyms_addresses")
            w.put(struct.pack(f"{endian}{len(table)}{ptr}", *(a for a, _, _ in table)))
            return
        w.label("kallsyms_offsets")
        for addr, _, _ in table:
            offset = addr - base
            if mode == "percpu":
                offset = addr if addr < percpu_below else base - addr - 1
            w.put(struct.pack(f"{endian}I", offset & 0xFFFFFFFF))
        w.label("kallsyms_relative_base")
        w.put(struct.pack(f"{endian}{ptr}", base))

    def names_and_markers() -> None:
        w.label("kallsyms_num_syms")
        w.put(struct.pack(f"{endian}I", len(table)))
        w.label("kallsyms_names")
        markers, start = [], len(w.out)
        for i, text in enumerate(texts):
            if i % 256 == 0:
                markers.append(len(w.out) - start)
            w.put(encode_name(text, tokens))
        w.label("kallsyms_markers")
        w.put(struct.pack(f"{endian}{len(markers)}I", *markers))

    def seqs() -> None:
        w.label("kallsyms_seqs_of_names")
        for seq in sorted(range(len(table)), key=lambda i: table[i][2]):
            w.put(seq.to_bytes(3, "big"))

    def token_tables() -> None:
        w.label("kallsyms_token_table")
        index = []
        start = len(w.out)
        for token in tokens:
            index.append(len(w.out) - start)
            w.put(token.encode("latin-1") + b"\0")
        w.label("kallsyms_token_index")
        w.put(struct.pack(f"{endian}256H", *index))

    if layout == "7.x":
        names_and_markers()
        token_tables()
        place_relative()
        seqs()
    elif layout == "6.12":
        names_and_markers()
        token_tables()
        addresses()
        seqs()
    else:
        addresses()
        names_and_markers()
        if layout == "6.1":
            seqs()
        token_tables()
    w.label("end")
    return Encoded(bytes(w.out), w.labels, table)


def names(count: int, seed: int = 1) -> list[str]:
    """Kernel-like names; every digit occurs (as in any real kernel)."""
    parts = ["sys", "read", "write", "do", "page", "init", "irq", "net", "dev", "_", "lock", "x86", "v4l2"]
    out = []
    state = seed
    for i in range(count):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        pick = [parts[(state >> s) % len(parts)] for s in (3, 9, 15)]
        out.append("_".join(pick) + f"_{i}")
    return out


def kernel_symbols(count: int, base: int, *, word: int = 8, percpu: int = 0, seed: int = 1) -> list[Symbol]:
    """`count` text/data symbols from `base` (and `percpu` small absolute ones first)."""
    out: list[Symbol] = [(0x40 * i, "D", f"pcpu_var_{i}") for i in range(percpu)]
    addr = base
    for i, name in enumerate(names(count, seed)):
        out.append((addr & ((1 << (8 * word)) - 1), "Tt"[i % 2] if i % 7 else "D", name))
        addr += 16 + (i * 37) % 200
    if count > 3:
        out.append((base + 0x40, "T", "x" * 200 + "_long_name"))  # a two-byte length
    return out
