"""--symbols from QEMU dump-guest-memory of the corpus's cross-built 32-bit and big-endian kernels
booted under TCG (issue 22): no VMCOREINFO reaches these dumps, so the tables are found by shape in
the guest's physical memory, in the guest's word size and byte order, and must equal System.map."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Corpus, corpus_builder
from test_kallsyms import kallsyms_selection

from extract_ikheaders.analysis import kallsyms


@dataclass(frozen=True)
class Guest:
    stage: str
    image: str
    qemu: tuple[str, ...]  # the command and machine options
    pc: str  # a regex on HMP `info registers`: the program counter, in hex
    word: int
    panics: bool = False  # dumped once the kernel has panicked (no root file system), not as soon as it runs


GUESTS = {
    # No serial driver in this kernel: the guest is running its own code once the PC is in its text.
    "arm32": Guest("k61arm", "zImage", ("qemu-system-arm", "-M", "virt", "-cpu", "cortex-a15"), r"R15=([0-9a-f]+)", 4),
    # Without a root file system the kernel panics and stops the CPU (disabled wait): QEMU is told
    # to keep the guest, whose memory is then dumped where the kernel stopped.
    "s390x": Guest("k61s390x", "bzImage", ("qemu-system-s390x", "-M", "s390-ccw-virtio", "-cpu", "max"),
                   r"PSW=mask [0-9a-f]+ addr ([0-9a-f]+)", 8, panics=True),
}


def _ready(qmp: corpus_builder.Qmp, guest: Guest, text: tuple[int, int]) -> bool:
    if guest.panics:
        status = qmp.call("query-status")
        return isinstance(status, dict) and status.get("status") == "guest-panicked"
    registers = str(qmp.call("human-monitor-command", **{"command-line": "info registers"}))
    found = re.search(guest.pc, registers)
    return found is not None and text[0] <= int(found.group(1), 16) < text[1]


def _boot_and_dump(corpus: Corpus, guest: Guest, tmp_path: Path) -> Path:
    """Boot the image until it runs its own text (or has panicked), then dump the guest's memory as
    an ELF core."""
    linked = {name: int(addr, 16) for addr, _, name in (line.split() for line in
              corpus.file(guest.stage, "System.map").read_text().splitlines() if len(line.split()) == 3)}
    sock, dump = tmp_path / "qmp.sock", tmp_path / "dump.elf"
    cmd = [*guest.qemu, "-accel", "tcg", "-m", "128", "-nodefaults", "-display", "none", "-action", "panic=pause",
           "-kernel", str(corpus.file(guest.stage, guest.image)), "-append", "panic=0",
           "-qmp", f"unix:{sock},server=on,wait=off"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        qmp = corpus_builder.Qmp(sock)
        deadline = time.monotonic() + 240
        while not _ready(qmp, guest, (linked["_stext"], linked["_etext"])):
            assert time.monotonic() < deadline, "the guest never ran its kernel's text, or never panicked"
            time.sleep(1)
        qmp.call("dump-guest-memory", paging=False, protocol=f"file:{dump}", format="elf")
        qmp.call("quit")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return dump


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("name", list(GUESTS))
def test_qemu_guest_dump_symbols_equal_system_map(corpus: Corpus, tmp_path: Path, name: str) -> None:
    guest = GUESTS[name]
    if guest.stage not in corpus.manifest["recipe"]:
        pytest.skip(f"the corpus has no {guest.stage} kernel")
    if shutil.which(guest.qemu[0]) is None:
        pytest.skip(f"{guest.qemu[0]} is not installed")
    table = kallsyms.find_symbols(_boot_and_dump(corpus, guest, tmp_path))
    assert table.method == "located" and table.word == guest.word
    expected = kallsyms_selection(corpus.file(guest.stage, "System.map"), False)
    assert Counter(table.symbols) == expected
    assert sum(expected.values()) > 5000
