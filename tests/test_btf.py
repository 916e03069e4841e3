"""--btf: a kernel's own BTF, byte for byte, from a vmlinux, a raw or compressed image and a crash dump.

The blobs here are built in code with every record kind a kernel's BTF holds; a split BTF (a
module's), a blob cut short, one whose records overrun its type section and one whose strings do
not end in NUL are never taken."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from builders import headers_archive, incbin_object
from conftest import Corpus, corpus_params, run_cli
from dump_builders import Seg, elf_core, filler, kdump_file, pages_of

from extract_ikheaders.analysis import btf, btf_headers, debuginfo
from extract_ikheaders.analysis.confined_cc import Limits
from extract_ikheaders.analysis.debuginfo import Target


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
    assert (f"the kernel's own BTF (311 types, 302 named structs and unions, {len(BLOB):,} bytes, "
            "vmlinux section .BTF)") in run.stderr


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
    run = run_cli("--btf", tmp_path / "out.btf", "--btf-from", "image", vmlinux)
    assert run.code == 1 and not (tmp_path / "out.btf").exists()
    assert "built without CONFIG_DEBUG_INFO_BTF" in run.stderr


def test_usage(tmp_path: Path) -> None:
    vmlinux = vmlinux_with_btf(tmp_path, BLOB)
    assert run_cli("--btf", "-", "--json", vmlinux).code == 2
    assert run_cli("--btf", "-", "--symbols", "-", vmlinux).code == 2
    assert run_cli("--btf", "x", "-a", "y", vmlinux).code == 2
    assert run_cli("--btf", "x", vmlinux, vmlinux).code == 2


# The corpus: 6.12 built with CONFIG_DEBUG_INFO_BTF, booted in QEMU --------------------------------


def btf_inputs(corpus: Corpus) -> list[tuple[str, tuple[str, Path]]]:
    inputs = [(name, corpus.file("k612btf", name)) for name in ("vmlinux", "vmlinux.stripped", "bzImage")]
    boot = corpus.root / corpus.manifest["kernels"]["6.12-btf"]["boot"]
    inputs += [(f"dump.{kind}", boot / name) for kind, name in corpus.truth("6.12-btf")["dumps"].items()]
    return [(name, (name, path)) for name, path in inputs]


@pytest.mark.parametrize("case", corpus_params(btf_inputs))
def test_the_kernels_own_btf_byte_for_byte(corpus: Corpus, case: tuple[str, Path], tmp_path: Path) -> None:
    """The vmlinux's .BTF section (objcopy's copy; the kernel serves exactly it as /sys/kernel/btf/vmlinux)."""
    name, path = case
    run = run_cli("--json", "--btf", tmp_path / "vmlinux.btf", path)
    assert run.code == 0, run.stderr
    truth = corpus.build("6.12-btf")
    assert sha256((tmp_path / "vmlinux.btf").read_bytes()) == truth["btf_sha256"]
    record = json.loads(run.stdout)["btf"]
    assert record["bytes"] == truth["btf_size"] and record["types"] > 10_000
    expected = "vmlinux section .BTF" if name.startswith("vmlinux") else "at 0x"
    assert expected in record["where"]


def test_the_corpus_btf_is_the_kernels(corpus: Corpus) -> None:
    """The truth itself: objcopy's .BTF parses as one whole blob, defines task_struct, and a kernel
    built without DEBUG_INFO_BTF (6.12-y, same source) has none."""
    blob = corpus.file("k612btf", "vmlinux.btf").read_bytes()
    found = btf.parse(blob, "objcopy")
    assert found is not None and found.size == len(blob)
    assert b"\0task_struct\0" in blob
    run = run_cli("--btf", "-", "--btf-from", "image", corpus.file("k612y", "vmlinux"))
    assert run.code == 1 and "built without CONFIG_DEBUG_INFO_BTF" in run.stderr


# Generated from the headers: which headers go into the unit, and why the others do not ---------------

GUARDED = "#ifndef _{0}\n#define _{0}\n{1}\n#endif\n"


def guarded(name: str, body: str) -> bytes:
    return GUARDED.format(name.upper().replace("/", "_").replace(".", "_"), body).encode()


def fake_tree(root: Path, headers: dict[str, bytes]) -> Path:
    """A headers tree as the archive unpacks: kbuild's -include files, autoconf.h, and `headers`."""
    files = {"include/linux/kconfig.h": b"#include <generated/autoconf.h>\n",
             "include/linux/compiler_types.h": b"#define __user\n",
             "include/generated/autoconf.h": b"#define CONFIG_X86_64 1\n#define CONFIG_64BIT 1\n",
             "arch/x86/include/asm/types.h": guarded("asm/types.h", "typedef unsigned int u32;"),
             "include/linux/types.h": guarded("linux/types.h", "#include <asm/types.h>\ntypedef int pid_t;"),
             "include/uapi/linux/abi.h": guarded("uapi", "struct abi { int x; };"),
             "include/dt-bindings/gpio.h": b"#define GPIO 1\n"}
    for name, text in {**files, **headers}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text)
    return root


HEADERS_UNDER_TEST = {
    "include/linux/good.h": guarded("good", "#include <linux/types.h>\nstruct good { u32 a; pid_t p; };"),
    "include/linux/broken.h": guarded("broken", "struct broken { no_such_type a; };"),
    "include/linux/needs_missing.h": guarded("nm", "#include <asm/not_in_archive.h>\nstruct nm { int a; };"),
    "include/linux/quoted_missing.h": guarded("qm", '#include "../../scripts/dtc/libfdt.h"\nstruct qm { int a; };'),
    "include/linux/template.h": b"X(one)\nX(two)\n",
    "include/net/unbuilt.h": guarded("unbuilt", "struct cstate { char big[192]; };\nint slhc_init(int rslots);\n"
                                     "extern void slhc_free(struct cstate *comp);"),
    "include/net/built.h": guarded("built", "struct built { int a; };\nint built_init(void);"),
    "include/linux/clash.h": guarded("clash", "#include <linux/good.h>\nstruct good { int other; };"),
    "arch/x86/include/asm/thing.h": guarded("asmthing", "struct asm_thing { long a; };"),
}


def test_which_headers_go_into_the_unit(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "headers", HEADERS_UNDER_TEST)
    headers, dropped = btf_headers.candidates(tree, "x86", frozenset({"built_init", "_stext"}))
    reasons = {d.header: d.reason for d in dropped}
    assert reasons["linux/template.h"] == btf_headers.NO_GUARD
    assert reasons["net/unbuilt.h"].startswith("declares 2 functions (slhc_free, slhc_init), none in the "
                                               "kernel's symbol table")
    assert reasons["include/uapi/"].startswith("in include/uapi/: user-space API")
    assert reasons["include/dt-bindings/"].startswith("in include/dt-bindings/")
    assert "net/built.h" in headers and "asm/thing.h" in headers and "linux/good.h" in headers
    assert headers.index("linux/good.h") < headers.index("net/built.h") < headers.index("asm/thing.h")
    # without a symbol table nothing is dropped as unbuilt
    headers, dropped = btf_headers.candidates(tree, "x86", None)
    assert "net/unbuilt.h" in headers and all(not d.reason.startswith("declares") for d in dropped)


def test_missing_includes_get_stubs_inside_the_tree_or_the_stub_directory(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "headers", {
        **HEADERS_UNDER_TEST,
        "include/linux/escape.h": guarded("esc", '#include "../../../../../../outside.h"\n')})
    stubs = tmp_path / "stubs"
    dirs = [tree / "arch/x86/include", tree / "include"]
    made = btf_headers.stub_missing_includes(tree, dirs, stubs)
    assert made == 2
    assert (stubs / "asm/not_in_archive.h").read_text() == '#error "asm/not_in_archive.h: not in the headers archive"\n'
    assert (tree / "scripts/dtc/libfdt.h").is_file()
    assert not (tmp_path.parent / "outside.h").exists() and not list(tmp_path.glob("outside.h"))


def test_errors_are_charged_to_the_unit_line_that_included_them() -> None:
    stderr = ("In file included from /t/include/linux/a.h:3,\n"
              "                 from /w/cc/btf.c:7:\n"
              "/t/include/linux/b.h:5:9: error: unknown type name 'x'\n"
              "/t/include/linux/b.h:6:9: error: unknown type name 'y'\n"
              "/w/cc/btf.c:9:10: fatal error: nothing.h: No such file or directory\n"
              "In file included from /w/cc/btf.c:12:\n"
              "/t/include/linux/c.h:1:2: error: #error \"asm/x.h: not in the headers archive\"\n")
    charged = debuginfo.charged_errors(stderr, "btf.c")
    assert charged == {7: "b.h:5: unknown type name 'x'", 9: "btf.c:9: nothing.h: No such file or directory",
                       12: 'c.h:1: #error "asm/x.h: not in the headers archive"'}


def test_the_unit_drops_what_does_not_compile_and_keeps_the_first_definition(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "headers", HEADERS_UNDER_TEST)
    work = tmp_path / "work"
    work.mkdir()
    target = Target("x86", 64, ("gcc",), ("-m64",))
    headers, dropped = btf_headers.compile_types(tree, work, target, frozenset({"built_init"}), Limits())
    reasons = {d.header: d.reason for d in dropped}
    assert set(headers) == {"linux/types.h", "linux/good.h", "net/built.h", "asm/thing.h", "asm/types.h"}
    assert reasons["linux/broken.h"].startswith("does not compile after the headers before it: broken.h:")
    assert "not in the headers archive" in reasons["linux/needs_missing.h"]
    assert "not in the headers archive" in reasons["linux/quoted_missing.h"]
    assert "redefinition of 'struct good'" in reasons["linux/clash.h"]
    assert (work / "btf.o").is_file()


def test_without_pahole_the_error_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vmlinux = incbin_object(tmp_path, headers_archive())  # before PATH loses the compiler that builds it
    monkeypatch.delenv(btf_headers.PAHOLE_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    run = run_cli("--btf", tmp_path / "out.btf", "--btf-from", "headers", vmlinux)
    assert run.code == 2 and not (tmp_path / "out.btf").exists()
    assert "generating BTF needs pahole, the kernel's BTF encoder: install it (Debian and Ubuntu: apt install " \
           "pahole" in run.stderr
    assert run.stderr.count("\n") == 1


def test_btf_from_goes_with_btf_or_env(tmp_path: Path) -> None:
    vmlinux = vmlinux_with_btf(tmp_path, BLOB)
    run = run_cli("--btf-from", "image", "--symbols", tmp_path / "map", vmlinux)
    assert run.code == 2 and "--btf-from goes with --btf or --env" in run.stderr
    run = run_cli("--btf-from", "headers", "-a", tmp_path / "a.tar.xz", vmlinux)
    assert run.code == 2 and "cannot be combined" in run.stderr


# The corpus: BTF generated from the headers, against the kernel's own -----------------------------------

COVERAGE_FLOOR = 0.60  # of the kernel's named structs and unions (the ceiling from headers alone is ~70%)


@pytest.fixture
def btftools(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Debian's pahole, bpftool and libbpf headers as the corpus unpacked them; pahole is the one used."""
    tools = corpus.root / corpus.manifest["btftools"]
    monkeypatch.setenv(btf_headers.PAHOLE_ENV, str(tools / "usr" / "bin" / "pahole"))
    return tools


def generated(image: Path, out: Path) -> dict[str, Any]:
    run = run_cli("--json", "--btf", out, "--btf-from", "headers", image)
    assert run.code == 0, run.stderr
    record: dict[str, Any] = json.loads(run.stdout)["btf"]
    return record


def test_generated_btf_has_the_kernels_layouts(corpus: Corpus, btftools: Path, tmp_path: Path) -> None:
    """6.12 built with CONFIG_DEBUG_INFO_BTF: every named struct and union both BTFs define has the same
    size, member names, offsets, bit fields and member types, and the headers give at least 60%."""
    record = generated(corpus.file("k612btf", "vmlinux"), tmp_path / "gen.btf")
    kernel = btf.structs(_parsed(corpus.file("k612btf", "vmlinux.btf")))
    ours = btf.structs(_parsed(tmp_path / "gen.btf"))
    common = [name for name in kernel if name in ours]
    mismatched = {name: (kernel[name].size, ours[name].size) for name in common if kernel[name] != ours[name]}
    assert mismatched == {}
    assert len(common) / len(kernel) >= COVERAGE_FLOOR, f"{len(common)} of {len(kernel)}"
    assert {"task_struct", "mm_struct", "file", "inode", "sk_buff", "bpf_prog"} <= set(common)
    assert record["source"] == "headers" and record["headers_compiled"] > 1500
    dropped = {d["header"]: d["reason"] for d in record["dropped"]}
    assert dropped["net/slhc_vj.h"].startswith("declares 6 functions (slhc_compress, slhc_free, slhc_init, ...), "
                                               "none in the kernel's symbol table")
    assert record["dropped_by_reason"]["does not compile"] == sum(
        reason.startswith("does not compile") for reason in dropped.values())


def _parsed(path: Path) -> btf.Btf:
    found = btf.parse(path.read_bytes(), str(path))
    assert found is not None and found.size == path.stat().st_size
    return found


def test_generated_btf_is_the_same_from_a_dump(corpus: Corpus, btftools: Path, tmp_path: Path) -> None:
    """6.1 without BTF: the vmlinux and a QEMU dump of the booted kernel give the same blob (same
    headers, configuration and symbols), defining task_struct with the size drgn's kernel has."""
    boot = corpus.root / corpus.manifest["kernels"]["6.1-y-gzip"]["boot"]
    from_vmlinux = generated(corpus.file("k61y", "vmlinux"), tmp_path / "vmlinux.btf")
    from_dump = generated(boot / corpus.truth("6.1-y-gzip")["dumps"]["kdump-zlib"], tmp_path / "dump.btf")
    assert from_dump["sha256"] == from_vmlinux["sha256"]
    assert (tmp_path / "dump.btf").read_bytes() == (tmp_path / "vmlinux.btf").read_bytes()
    assert from_vmlinux["symbols_checked"] > 10_000 and from_vmlinux["named_structs"] > 5_000
    assert btf.structs(_parsed(tmp_path / "vmlinux.btf"))["task_struct"].size > 1_000


CORE_PROGRAM = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";
int seen_pid;
char seen_comm[16];

SEC("raw_tracepoint/sched_switch")
int on_switch(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	seen_pid = BPF_CORE_READ(task, pid);
	BPF_CORE_READ_STR_INTO(&seen_comm, task, comm);
	return 0;
}
"""


@pytest.mark.slow
def test_a_core_program_built_against_it_relocates_as_against_the_kernels(corpus: Corpus, btftools: Path,
                                                                           tmp_path: Path) -> None:
    """bpftool dumps the generated BTF as a vmlinux.h that clang compiles a BPF_CORE_READ program
    against; its relocations resolve against the generated BTF exactly as against the kernel's own
    (bpftool gen min_core_btf keeps what the program's relocations need)."""
    if shutil.which("clang") is None:
        pytest.fail("clang is not installed (fixtures/install-deps.sh installs it)")
    bpftool = str(btftools / "usr" / "sbin" / "bpftool")
    generated(corpus.file("k612btf", "vmlinux"), tmp_path / "gen.btf")
    with (tmp_path / "vmlinux.h").open("wb") as header:
        subprocess.run([bpftool, "btf", "dump", "file", str(tmp_path / "gen.btf"), "format", "c"],
                       stdout=header, check=True)
    (tmp_path / "prog.bpf.c").write_text(CORE_PROGRAM)
    subprocess.run(["clang", "-target", "bpf", "-O2", "-g", f"-I{tmp_path}", f"-I{btftools / 'usr' / 'include'}",
                    "-c", str(tmp_path / "prog.bpf.c"), "-o", str(tmp_path / "prog.bpf.o")], check=True)
    minimal = {}
    for name, base in (("generated", tmp_path / "gen.btf"), ("kernel", corpus.file("k612btf", "vmlinux.btf"))):
        subprocess.run([bpftool, "gen", "min_core_btf", str(base), str(tmp_path / f"min-{name}.btf"),
                        str(tmp_path / "prog.bpf.o")], check=True, capture_output=True)
        minimal[name] = btf.structs(_parsed(tmp_path / f"min-{name}.btf"))
    assert minimal["generated"] == minimal["kernel"]
    task = minimal["kernel"]["task_struct"]
    kernel_task = btf.structs(_parsed(corpus.file("k612btf", "vmlinux.btf")))["task_struct"]
    assert {m.name for m in task.members} == {"pid", "comm"} and task.size == kernel_task.size
    assert all(m in kernel_task.members for m in task.members)


def test_env_exports_the_kernels_btf(corpus: Corpus, btftools: Path, tmp_path: Path) -> None:
    """--env: BPFTRACE_BTF names a file holding the kernel's own BTF (6.12 with BTF) or the generated one."""
    own = run_cli("--env", "-o", tmp_path / "own", corpus.file("k612btf", "vmlinux"))
    assert own.code == 0, own.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in own.stdout.decode().splitlines())
    assert Path(exports["BPFTRACE_BTF"]).read_bytes() == corpus.file("k612btf", "vmlinux.btf").read_bytes()
    assert exports["EXTRACT_IKHEADERS_BTF"] == exports["BPFTRACE_BTF"]
    assert exports["BCC_KERNEL_SOURCE"] == str(tmp_path / "own")
    made = run_cli("--env", "-o", tmp_path / "made", corpus.file("k61y", "vmlinux"))
    assert made.code == 0, made.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in made.stdout.decode().splitlines())
    blob = _parsed(Path(exports["BPFTRACE_BTF"]))
    assert "task_struct" in btf.structs(blob)


BPFTRACE_PROBE = 'kprobe:do_nanosleep { printf("%d %s\\n", curtask->pid, curtask->comm); }'


@pytest.mark.slow
def test_bpftrace_compiles_a_probe_against_it_as_against_the_kernels(corpus: Corpus, btftools: Path,
                                                                      tmp_path: Path) -> None:
    """bpftrace with BPFTRACE_BTF at the generated BTF: its debug output (-d: the AST with types, and
    the LLVM IR with each member's offset) equals what the kernel's own BTF gives. Nothing is loaded."""
    if shutil.which("bpftrace") is None:
        pytest.fail("bpftrace is not installed (fixtures/install-deps.sh installs it)")
    generated(corpus.file("k612btf", "vmlinux"), tmp_path / "gen.btf")
    outputs = {}
    for name, path in (("generated", tmp_path / "gen.btf"), ("kernel", corpus.file("k612btf", "vmlinux.btf"))):
        proc = subprocess.run(["bpftrace", "-d", "-e", BPFTRACE_PROBE], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "BPFTRACE_BTF": str(path)})
        outputs[name] = proc.stdout + proc.stderr
    assert outputs["generated"] == outputs["kernel"]
    kernel = btf.structs(_parsed(corpus.file("k612btf", "vmlinux.btf")))["task_struct"]
    offsets = {m.name: m.bit_offset // 8 for m in kernel.members if m.name in ("pid", "comm")}
    assert f"add i64 %get_cur_task, {offsets['pid']}\n" in outputs["kernel"]
    assert f"add i64 %get_cur_task1, {offsets['comm']}\n" in outputs["kernel"]


def fake_pahole(tmp_path: Path, blob: bytes) -> Path:
    """A stand-in for pahole that writes `blob` where --btf_encode_detached asks (no real one needed)."""
    (tmp_path / "blob.btf").write_bytes(blob)
    script = tmp_path / "pahole"
    script.write_text("#!/bin/sh\n"
                      'if [ "$1" = --version ]; then echo v1.24; exit 0; fi\n'
                      f'cp {tmp_path / "blob.btf"} "${{1#--btf_encode_detached=}}"\n')
    script.chmod(0o755)
    return script


def archive_of(tree: Path) -> bytes:
    return headers_archive({"./" + p.relative_to(tree).as_posix(): p.read_bytes()
                            for p in tree.rglob("*") if p.is_file()})


def test_generated_btf_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path with the real compiler and a stand-in pahole: the JSON record says which headers
    went in and why the others did not; a second run is a cache hit."""
    monkeypatch.setenv(btf_headers.PAHOLE_ENV, str(fake_pahole(tmp_path, BLOB)))
    monkeypatch.setenv("EXTRACT_IKHEADERS_TYPES_CACHE", str(tmp_path / "cache"))
    vmlinux = incbin_object(tmp_path, archive_of(fake_tree(tmp_path / "headers", HEADERS_UNDER_TEST)))
    run = run_cli("--json", "--btf", tmp_path / "out.btf", vmlinux)  # auto: the kernel has no BTF of its own
    assert run.code == 0, run.stderr
    record = json.loads(run.stdout)["btf"]
    assert (tmp_path / "out.btf").read_bytes() == BLOB
    assert record["source"] == "headers" and record["cached"] is False and record["pahole"] == "v1.24"
    assert record["headers_compiled"] == 6 and record["symbols_checked"] == 0  # no kallsyms: none dropped as unbuilt
    # templates: linux/template.h, and the fake kconfig.h and compiler_types.h (unguarded here)
    assert record["dropped_by_reason"] == {"template": 3, "directory": 3, "does not compile": 4}
    again = run_cli("--btf", tmp_path / "again.btf", "--btf-from", "headers", vmlinux)
    assert again.code == 0 and "cached" in again.stderr
    assert "BTF generated from the kernel's headers (311 types, 302 named structs and unions" in again.stderr


def test_a_header_reaching_outside_the_archive_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(btf_headers.PAHOLE_ENV, str(fake_pahole(tmp_path, BLOB)))
    monkeypatch.setenv("EXTRACT_IKHEADERS_TYPES_CACHE", str(tmp_path / "cache"))
    tree = fake_tree(tmp_path / "headers", {"include/linux/evil.h": b'#include "/etc/passwd"\n'})
    run = run_cli("--btf", tmp_path / "out.btf", "--btf-from", "headers", incbin_object(tmp_path, archive_of(tree)))
    assert run.code == 3 and not (tmp_path / "out.btf").exists()
    assert 'linux/evil.h: includes "/etc/passwd", outside the headers archive' in run.stderr
