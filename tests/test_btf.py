"""--btf: a kernel's own BTF, byte for byte, from a vmlinux, a raw or compressed image and a crash dump.

The blobs here are built in code with every record kind a kernel's BTF holds; a split BTF (a
module's), a blob cut short, one whose records overrun its type section and one whose strings do
not end in NUL are never taken."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pytest
from builders import headers_archive, incbin_object
from conftest import run_cli
from dump_builders import Seg, elf_core, filler, kdump_file, pages_of

from extract_ikheaders.analysis import btf


def strings_and_offsets(names: list[str]) -> tuple[bytes, dict[str, int]]:
    table, offsets = b"\0", {"": 0}
    for name in names:
        offsets[name] = len(table)
        table += name.encode() + b"\0"
    return table, offsets


def build_btf(*, endian: str = "<", extra_structs: int = 0) -> bytes:
    """A base BTF: int, pointer, array, a struct with a bit field, a union, an enum, a typedef, a
    function and its prototype, a variable and its data section, and `extra_structs` more structs."""
    names = ["int", "task_struct", "pid", "comm", "flags", "u", "pid_type", "PIDTYPE_PID", "pid_t",
             "do_exit", "code", "init_task", ".data", *(f"s{i}" for i in range(extra_structs))]
    table, at = strings_and_offsets(names)
    pack = struct.Struct(endian + "III").pack

    def info(kind: int, vlen: int = 0, kind_flag: int = 0) -> int:
        return kind_flag << 31 | kind << 24 | vlen

    types = [
        pack(at["int"], info(1), 4) + struct.pack(endian + "I", 1 << 24 | 32),  # 1: int, signed 32 bits
        pack(0, info(2), 1),  # 2: int *
        pack(0, info(3), 0) + struct.pack(endian + "III", 1, 1, 16),  # 3: int[16]
        pack(at["task_struct"], info(4, 3, 1), 72) + b"".join(  # 4: struct with a bit field (kind_flag)
            struct.pack(endian + "III", at[n], t, off) for n, t, off in
            (("pid", 8, 0), ("comm", 3, 32), ("flags", 1, 3 << 24 | 544))),
        pack(at["u"], info(5, 1), 8) + struct.pack(endian + "III", at["pid"], 2, 0),  # 5: union
        pack(at["pid_type"], info(6, 1), 4) + struct.pack(endian + "Ii", at["PIDTYPE_PID"], 0),  # 6: enum
        pack(at["do_exit"], info(12), 9),  # 7: func do_exit, its prototype is 9
        pack(at["pid_t"], info(8), 1),  # 8: typedef int pid_t
        pack(0, info(13, 1), 1) + struct.pack(endian + "II", at["code"], 1),  # 9: int (int code)
        pack(at["init_task"], info(14), 4) + struct.pack(endian + "I", 1),  # 10: var
        pack(at[".data"], info(15, 1), 72) + struct.pack(endian + "III", 10, 0, 72),  # 11: datasec
        *(pack(at[f"s{i}"], info(4), 0) for i in range(extra_structs)),
    ]
    type_sec = b"".join(types)
    header = struct.pack(endian + "HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(type_sec), len(type_sec), len(table))
    return header + type_sec + table


BLOB = build_btf(extra_structs=300)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_blob_checks_out_and_counts_its_types() -> None:
    found = btf.parse(BLOB + b"trailing bytes", "test")
    assert found is not None and found.data == BLOB
    assert (found.types, found.named_structs, found.endian) == (311, 302, "<")
    big = build_btf(endian=">")
    assert btf.parse(big, "test") == btf.Btf(big, ">", 11, 2, "test")


@pytest.mark.parametrize("damage", ["cut", "overrun", "unterminated", "split", "kind", "version"])
def test_damaged_or_split_blobs_are_never_taken(damage: str) -> None:
    blob = bytearray(build_btf())
    if damage == "cut":
        blob = blob[:-3]
    elif damage == "overrun":
        struct.pack_into("<I", blob, 12, struct.unpack_from("<I", blob, 12)[0] - 4)  # type_len 4 short
        struct.pack_into("<I", blob, 16, struct.unpack_from("<I", blob, 16)[0] - 4)
    elif damage == "unterminated":
        blob[-1] = ord("x")
    elif damage == "split":  # a module's strings continue its base's: no leading empty name
        blob[24 + struct.unpack_from("<I", blob, 16)[0]] = ord("x")
    elif damage == "kind":
        struct.pack_into("<I", blob, 24 + 4, 31 << 24)
    else:
        blob[2] = 2
    assert btf.parse(bytes(blob), "test") is None


def vmlinux_with_btf(tmp_path: Path, blob: bytes) -> Path:
    vmlinux = incbin_object(tmp_path, headers_archive())
    (tmp_path / "btf.bin").write_bytes(blob)
    subprocess.run(["objcopy", "--add-section", f".BTF={tmp_path / 'btf.bin'}",
                    "--set-section-flags", ".BTF=alloc,readonly,data", str(vmlinux)], check=True)
    return vmlinux


def test_vmlinux_section(tmp_path: Path) -> None:
    vmlinux = vmlinux_with_btf(tmp_path, BLOB)
    run = run_cli("--btf", tmp_path / "out.btf", vmlinux)
    assert run.code == 0, run.stderr
    assert (tmp_path / "out.btf").read_bytes() == BLOB
    assert f"the kernel's own BTF (311 types, {len(BLOB):,} bytes, vmlinux section .BTF)" in run.stderr


def test_json_record(tmp_path: Path) -> None:
    vmlinux = vmlinux_with_btf(tmp_path, BLOB)
    run = run_cli("--json", "--btf", tmp_path / "out.btf", vmlinux)
    assert run.code == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["action"] == "analysis" and record["btf"] == {
        "source": "image", "bytes": len(BLOB), "sha256": sha256(BLOB), "types": 311, "named_structs": 302,
        "where": "vmlinux section .BTF", "endian": "little", "output": str(tmp_path / "out.btf")}


def test_a_section_that_is_not_btf_is_damage(tmp_path: Path) -> None:
    vmlinux = vmlinux_with_btf(tmp_path, BLOB[:-1])
    run = run_cli("--btf", tmp_path / "out.btf", vmlinux)
    assert run.code == 3 and not (tmp_path / "out.btf").exists()
    assert "the .BTF section does not hold one whole, well-formed BTF blob" in run.stderr


def test_raw_and_compressed_images(tmp_path: Path) -> None:
    decoy = build_btf(extra_structs=2)  # smaller: a raw image's BTF is the biggest that checks out
    image = filler(1 << 20)[:4096] + decoy + bytes(-len(decoy) % 4) + BLOB + filler(4096, seed=3)
    (tmp_path / "Image").write_bytes(image)
    (tmp_path / "Image.gz").write_bytes(gzip.compress(image, mtime=0))
    for name in ("Image", "Image.gz"):
        run = run_cli("--btf", "-", tmp_path / name)
        assert run.code == 0, run.stderr
        assert run.stdout == BLOB


def test_crash_dumps(tmp_path: Path) -> None:
    memory = bytearray(filler(64 * 4096))
    memory[0x5000 : 0x5000 + len(BLOB)] = BLOB
    (tmp_path / "core").write_bytes(elf_core([Seg(0x200000, bytes(memory))]))
    (tmp_path / "kdump").write_bytes(kdump_file(pages_of(bytes(memory), base_pfn=0x200)))
    for name in ("core", "kdump"):
        run = run_cli("--btf", tmp_path / f"{name}.btf", tmp_path / name)
        assert run.code == 0, run.stderr
        assert (tmp_path / f"{name}.btf").read_bytes() == BLOB
        assert "physical memory at 0x205000" in run.stderr


def test_a_kernel_without_btf_says_so(tmp_path: Path) -> None:
    vmlinux = incbin_object(tmp_path, headers_archive())
    run = run_cli("--btf", tmp_path / "out.btf", vmlinux)
    assert run.code == 1 and not (tmp_path / "out.btf").exists()
    assert "built without CONFIG_DEBUG_INFO_BTF" in run.stderr


def test_usage(tmp_path: Path) -> None:
    vmlinux = vmlinux_with_btf(tmp_path, BLOB)
    assert run_cli("--btf", "-", "--json", vmlinux).code == 2
    assert run_cli("--btf", "-", "--symbols", "-", vmlinux).code == 2
    assert run_cli("--btf", "x", "-a", "y", vmlinux).code == 2
    assert run_cli("--btf", "x", vmlinux, vmlinux).code == 2

