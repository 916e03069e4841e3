"""--isf: a Volatility 3 symbol table from the types object and a crash dump's kallsyms.

Unit tests convert a small gcc -g object whose layout is known; corpus tests run stock Volatility 3
(a subprocess, its caches in tmp) on the real kdumps and compare with the guest's own `ps`.
"""

from __future__ import annotations

import base64
import json
import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus, corpus_params, ps_rows, run_cli

from extract_ikheaders.analysis import isf, kernel_globals
from extract_ikheaders.errors import InputError

C_SOURCE = r"""
typedef struct { int counter; } atomic_t;
enum colour { RED, GREEN = 5, BLUE = -1 };
struct inner { long a; };
struct sample {
    char name[16];
    unsigned int low : 3, mid : 7;
    unsigned int big : 30;
    union { int as_int; float as_float; };
    struct { short x, y; };
    atomic_t count;
    enum colour hue;
    const struct inner *ptr;
    int grid[2][3];
    void (*callback)(int);
    void *opaque;
    struct sample *next;
    char tail[];
};
extern struct sample a_sample;
struct sample *use_it(void) { return &a_sample; }
"""


@pytest.fixture(scope="module")
def sample_types(tmp_path_factory: pytest.TempPathFactory) -> isf.DwarfTypes:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    work = tmp_path_factory.mktemp("isf")
    (work / "sample.c").write_text(C_SOURCE)
    subprocess.run(["gcc", "-g", "-c", "-fno-eliminate-unused-debug-types", "-o", str(work / "sample.o"),
                    str(work / "sample.c")], check=True)
    return isf.read_dwarf(work / "sample.o")


def test_struct_members_offsets_and_types(sample_types: isf.DwarfTypes) -> None:
    sample = sample_types.user_types["sample"]
    fields = sample["fields"]
    assert sample["kind"] == "struct" and sample["size"] == 96
    assert fields["name"] == {"offset": 0, "type": {"kind": "array", "count": 16,
                                                     "subtype": {"kind": "base", "name": "char"}}}
    assert fields["count"] == {"offset": 32, "type": {"kind": "struct", "name": "atomic_t"}}
    assert fields["hue"] == {"offset": 36, "type": {"kind": "enum", "name": "colour"}}
    assert fields["ptr"] == {"offset": 40, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "inner"}}}
    assert fields["grid"]["type"] == {"kind": "array", "count": 2, "subtype": {
        "kind": "array", "count": 3, "subtype": {"kind": "base", "name": "int"}}}
    assert fields["callback"]["type"] == {"kind": "pointer", "subtype": {"kind": "function"}}
    assert fields["opaque"]["type"] == {"kind": "pointer", "subtype": {"kind": "base", "name": "void"}}
    assert fields["next"]["type"] == {"kind": "pointer", "subtype": {"kind": "struct", "name": "sample"}}
    assert fields["tail"] == {"offset": 96, "type": {"kind": "array", "count": 0,
                                                      "subtype": {"kind": "base", "name": "char"}}}
    assert sample_types.user_types["atomic_t"]["fields"] == {"counter": {"offset": 0,
                                                                         "type": {"kind": "base", "name": "int"}}}


def test_bitfields_give_first_byte_and_bit(sample_types: isf.DwarfTypes) -> None:
    fields = sample_types.user_types["sample"]["fields"]
    uint = {"kind": "base", "name": "unsigned int"}
    assert fields["low"] == {"offset": 16, "type": {"kind": "bitfield", "bit_length": 3, "bit_position": 0,
                                                    "type": uint}}
    assert fields["mid"] == {"offset": 16, "type": {"kind": "bitfield", "bit_length": 7, "bit_position": 3,
                                                    "type": uint}}
    assert fields["big"] == {"offset": 20, "type": {"kind": "bitfield", "bit_length": 30, "bit_position": 0,
                                                    "type": uint}}


def test_anonymous_members_are_flattened_by_volatility(sample_types: isf.DwarfTypes) -> None:
    fields = sample_types.user_types["sample"]["fields"]
    union, pair = fields["unnamed_field_0"], fields["unnamed_field_1"]
    assert union["anonymous"] is True and union["offset"] == 24 and union["type"]["kind"] == "union"
    assert pair["anonymous"] is True and pair["offset"] == 28 and pair["type"]["kind"] == "struct"
    assert set(sample_types.user_types[union["type"]["name"]]["fields"]) == {"as_int", "as_float"}
    assert isf.field_offset(sample_types, "sample", "as_float") == 24
    assert isf.field_offset(sample_types, "sample", "y") == 30
    assert isf.field_offset(sample_types, "sample", "nothing") is None


def test_enums_base_types_and_variables(sample_types: isf.DwarfTypes) -> None:
    assert sample_types.enums["colour"] == {"size": 4, "base": "int", "constants": {"RED": 0, "GREEN": 5,
                                                                                   "BLUE": -1}}
    assert sample_types.base_types["unsigned int"] == {"size": 4, "signed": False, "kind": "int",
                                                       "endian": "little"}
    assert sample_types.base_types["char"]["kind"] == "char"
    assert sample_types.base_types["float"]["kind"] == "float"
    assert sample_types.base_types["pointer"]["size"] == 8
    assert sample_types.variables["a_sample"] == {"kind": "struct", "name": "sample"}


def test_document_validates_against_volatility_schema(sample_types: isf.DwarfTypes) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schemas = pytest.importorskip("volatility3.schemas")
    symbols = [(0xFFFFFFFF92000000, "T", "_stext"), (0xFFFFFFFF92400000, "D", "a_sample"),
               (0xFFFFFFFF92500000, "D", "linux_banner"), (0x1A000, "D", "per_cpu_thing")]
    doc = isf.build_isf(sample_types, symbols, 0x11000000, b"Linux version 6.1.0 (x@y) #1\n\0", "0.1.0")
    schema = json.loads((Path(schemas.__file__).parent / "schema-6.2.0.json").read_text())
    jsonschema.Draft7Validator(schema).validate(doc)  # the schema names no draft: Volatility uses the latest
    assert doc["symbols"]["_stext"]["address"] == 0xFFFFFFFF81000000
    assert doc["symbols"]["a_sample"] == {"address": 0xFFFFFFFF81400000, "type": {"kind": "struct",
                                                                                 "name": "sample"}}
    assert doc["symbols"]["per_cpu_thing"]["address"] == 0x1A000  # absolute per-CPU: KASLR does not move it
    assert base64.b64decode(doc["symbols"]["linux_banner"]["constant_data"]) == b"Linux version 6.1.0 (x@y) #1\n\0"


def test_vmcoreinfo_symbols_are_image_addresses_only() -> None:
    info = {"SYMBOL(_stext)": "ffffffffa6a00000", "SYMBOL(init_top_pgt)": "ffffffffa721e000",
            "SYMBOL(mem_section)": "ffff8f0357fd6000", "SYMBOL(broken)": "zz", "OFFSET(page.flags)": "0"}
    assert kernel_globals.vmcoreinfo_symbols(info) == {"_stext": 0xFFFFFFFFA6A00000, "init_top_pgt": 0xFFFFFFFFA721E000}
    assert kernel_globals.vmcoreinfo_symbols({"SYMBOL(init_top_pgt)": "ffffffffa721e000"}) == {}


def test_a_global_wins_over_a_static_of_the_same_name() -> None:
    picked = list(isf._preferred([(1, "t", "dup"), (2, "T", "dup"), (3, "t", "dup"), (4, "d", "one")]))
    assert sorted(picked) == [(2, "T", "dup"), (4, "d", "one")]


def test_xz_output_decompresses_to_the_json(tmp_path: Path) -> None:
    doc = {"metadata": {"format": isf.FORMAT_VERSION}, "symbols": {"x": {"address": 1}}}
    isf.write_isf(doc, str(tmp_path / "a.json"))
    isf.write_isf(doc, str(tmp_path / "a.json.xz"))
    assert json.loads((tmp_path / "a.json").read_bytes()) == doc
    assert lzma.decompress((tmp_path / "a.json.xz").read_bytes()) == (tmp_path / "a.json").read_bytes()


def test_read_dwarf_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "text").write_bytes(b"not an ELF file")
    with pytest.raises(InputError, match=r"text: not a readable ELF object with DWARF"):
        isf.read_dwarf(tmp_path / "text")
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "plain.c").write_text("int x;\n")
    subprocess.run(["gcc", "-c", "-o", str(tmp_path / "plain.o"), str(tmp_path / "plain.c")], check=True)
    with pytest.raises(InputError, match=r"plain.o: no DWARF debug info$"):
        isf.read_dwarf(tmp_path / "plain.o")


def _flat(types: isf.DwarfTypes, name: str, base: int = 0) -> dict[str, tuple[int, str]]:
    """member -> (offset, type) with anonymous members lifted as Volatility does; the names of
    anonymous types (which differ between objects) left out."""
    out: dict[str, tuple[int, str]] = {}
    for member, field in types.user_types[name]["fields"].items():
        if field.get("anonymous"):
            out.update(_flat(types, field["type"]["name"], base + field["offset"]))
        else:
            out[member] = (base + field["offset"], re.sub(r"unnamed_[0-9a-f]+", "unnamed", json.dumps(field["type"])))
    return out


# Not riscv64: pyelftools cannot apply RISC-V relocations to an object's DWARF (read_dwarf says so).
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["k61y", "k612y", "k61arm64", "k61arm", "k61ppc64be", "k61s390x"])
def test_isf_types_equal_those_of_the_kernel_builds_own_compile(corpus: Corpus, stage: str) -> None:
    """The converter on the --debuginfo object and on kbuild's own `-g` kernel/fork.o give the same
    ISF layouts, on every architecture the corpus builds (bitfields and byte order included)."""
    from test_debuginfo import IMAGES, STRUCTS, _kbuild_object

    from extract_ikheaders.analysis import debuginfo

    kbuild = isf.read_dwarf(_kbuild_object(corpus, stage))
    ours = isf.read_dwarf(debuginfo.build_types(corpus.file(stage, IMAGES.get(stage, "vmlinux"))).path)
    assert ours.base_types["pointer"] == kbuild.base_types["pointer"]
    for name in sorted(STRUCTS):
        assert ours.user_types[name]["size"] == kbuild.user_types[name]["size"], name
        assert _flat(ours, name) == _flat(kbuild, name), name
    assert len(_flat(ours, "task_struct")) > 100


# CLI error paths ---------------------------------------------------------------------------------

def test_isf_of_a_file_that_is_no_dump(tmp_path: Path) -> None:
    junk = tmp_path / "vmlinux"
    junk.write_bytes(b"\x7fELF" + bytes(4096))
    run = run_cli("--isf", tmp_path / "out.json", junk)
    assert run.code == 1
    assert run.stderr.strip().splitlines() == [
        f"extract-ikheaders: {junk}: not a crash dump (ELF core, kdump-compressed, flattened or LiME)"]
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--isf", "-"], "--isf needs a file, not stdout"),
    (["--isf", "x.json", "--list"], "--list and --isf cannot be combined"),
])
def test_isf_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    dump = tmp_path / "vmcore"
    dump.write_bytes(bytes(64))
    run = run_cli(*args, dump, cwd=tmp_path)
    assert run.code == 2
    assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr


def test_isf_takes_one_image(tmp_path: Path) -> None:
    run = run_cli("--isf", tmp_path / "x.json", tmp_path / "a", tmp_path / "b")
    assert run.code == 2 and "take one IMAGE" in run.stderr


def test_isf_of_a_dump_without_vmcoreinfo_or_qemu_note(corpus: Corpus, tmp_path: Path) -> None:
    """Without VMCOREINFO the page tables come from QEMU's CPU note: a dump with neither is refused by name."""
    dump = tmp_path / "dump.elf"
    shutil.copyfile(corpus.file("boot-6.1-m-4level", "dump.elf"), dump)
    with dump.open("r+b") as f:
        head = f.read(1 << 16)  # the PT_NOTE segment comes first
        assert head.count(b"QEMU\0") >= 1
        f.seek(0)
        f.write(head.replace(b"QEMU\0", b"QEMX\0"))
    run = run_cli("--isf", tmp_path / "x.json", dump)
    assert run.code == 1
    assert run.stderr.strip().splitlines() == [
        f"extract-ikheaders: {dump}: the dump has neither VMCOREINFO nor a QEMU CPU note (CR3) to find the page "
        "tables by"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dump.elf", "dump.kdump-zlib"])
def test_isf_of_a_qemu_dump_without_vmcoreinfo(corpus: Corpus, tmp_path: Path, name: str) -> None:
    """QEMU's dump-guest-memory has no VMCOREINFO: a stand-in from the dump itself (kallsyms by shape,
    KASLR from .config, CR3 from QEMU's note, init_top_pgt as the image page CR3's kernel half copies)
    places every symbol where the build's System.map does."""
    dump = corpus.file("boot-6.1-m-4level", name)
    run = run_cli("--json", "--isf", tmp_path / "kernel.json", dump)
    assert run.code == 0, run.stderr
    report = run.json["isf"]
    doc = json.loads((tmp_path / "kernel.json").read_bytes())
    system_map = {}
    for line in corpus.file("k61m", "System.map").read_text().splitlines():
        addr, _, sym = line.split()
        system_map.setdefault(sym, int(addr, 16))
    found = ["init_cred", "init_files", "init_fs", "init_mm", "init_nsproxy", "init_pid_ns", "init_struct_pid",
             "init_task", "init_user_ns", "init_uts_ns", "linux_banner", "modules"]
    assert report["recovered"] == found
    assert report["from_vmcoreinfo"] == ["init_top_pgt", "swapper_pg_dir"]  # the stand-in's
    for sym in (*found, "_stext", "start_kernel", "init_top_pgt"):
        assert doc["symbols"][sym]["address"] == system_map[sym], sym
    assert report["kaslr_offset"] != 0 and report["banner"].startswith(f"Linux version {corpus.release('6.1-m')} ")


@pytest.mark.slow
@pytest.mark.parametrize("boot", ["boot-6.1-m-4level", "boot-7.2-y-4level"])
def test_volatility_pslist_on_a_qemu_dump(corpus: Corpus, tmp_path: Path, boot: str) -> None:
    """no5lvl captures (4-level paging, which Volatility walks) of 6.1 =m and of 7.2 (kallsyms with
    place-relative offsets, placed through QEMU's CR3)."""
    dump = corpus.file(boot, "dump.elf")
    out = tmp_path / "symbols"
    out.mkdir()
    run = run_cli("--isf", out / "kernel.json", dump)
    assert run.code == 0, run.stderr
    truth = _truth(corpus.stage(boot))
    listed = {row["PID"]: row["COMM"] for row in _vol(tmp_path, out, dump, "linux.pslist")}
    assert {pid: listed.get(pid) for pid in truth} == {pid: comm for pid, (comm, _) in truth.items()}
    later = set(listed) - set(truth)  # only what started after ps ran
    assert all(pid > max(truth) for pid in later) and len(later) <= 2


def _system_map(path: Path) -> dict[str, int]:
    addresses: dict[str, int] = {}
    for line in path.read_text().splitlines():
        addr, _, sym = line.split()
        addresses.setdefault(sym, int(addr, 16))
    return addresses


@pytest.mark.parametrize("name", ["dump.elf", "dump.kdump-zlib"])
def test_isf_of_a_7x_qemu_dump_places_every_symbol(corpus: Corpus, tmp_path: Path, name: str) -> None:
    """7.2: kallsyms with place-relative offsets, located in memory and placed through QEMU's CR3;
    every ISF symbol where the build's System.map has it (5-level paging: the warning says so)."""
    dump = corpus.file("boot-7.2-y", name)
    run = run_cli("--json", "--isf", tmp_path / "kernel.json", dump)
    assert run.code == 0, run.stderr
    report = run.json["isf"]
    doc = json.loads((tmp_path / "kernel.json").read_bytes())
    system_map = _system_map(corpus.file("k72y", "System.map"))
    assert {sym: v["address"] for sym, v in doc["symbols"].items() if sym in system_map} == {
        sym: system_map[sym] for sym in doc["symbols"] if sym in system_map}
    assert len(doc["symbols"]) > 15000 and "init_task" in doc["symbols"] and report["paging_levels"] == 5
    assert report["banner"].startswith(f"Linux version {corpus.release('7.2-y')} ")


# Volatility 3 on the real kdumps -------------------------------------------------------------------

def _stage(corpus: Corpus, name: str) -> Path:
    if name not in corpus.manifest["recipe"]:
        pytest.skip(f"corpus has no {name} stage; rebuild it: python fixtures/corpus.py build")
    return corpus.stage(name)


def _truth(stage: Path) -> dict[int, tuple[str, str]]:
    """pid -> (comm, args) from the guest's `ps -o pid,comm,args`, minus `ps` itself (gone by the panic).

    ps shows a kworker's comm with its workqueue ("kworker/0:1+eve"); the task's comm has no suffix.
    A rescuer (6.9+) is named "kworker/R-<workqueue>" in the task itself: that stays.
    """
    rows: dict[int, tuple[str, str]] = {}
    for pid, comm, args in ps_rows(json.loads((stage / "truth.json").read_text())["ps"]):
        comm = re.sub(r"^(kworker/(?!R-)[^+-]+)[+-].*$", r"\1", comm)
        if comm != "ps":
            rows[pid] = (comm, args)
    assert len(rows) >= 10
    return rows


def _vol(tmp: Path, symbols: Path, dump: Path, *plugin: str) -> list[dict[str, Any]]:
    pytest.importorskip("volatility3")
    cache = tmp / "vol-cache"
    cache.mkdir(exist_ok=True)
    vol = Path(sys.executable).parent / "vol"  # the package's console script: it has no __main__ module
    proc = subprocess.run([str(vol), "-q", "--offline", "-r", "json", "--cache-path", str(cache),
                           "-s", str(symbols), "-f", str(dump), *plugin],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows: list[dict[str, Any]] = json.loads(proc.stdout[proc.stdout.index("["):])
    return rows


@pytest.fixture(scope="module")
def four_level(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """The no5lvl kdump and a directory holding its --isf output (.json.xz)."""
    stage = _stage(corpus, "kdump-6.1-m-4level")
    out = tmp_path_factory.mktemp("isf4") / "symbols"
    out.mkdir()
    run = run_cli("--json", "--isf", out / "kernel.json.xz", stage / "vmcore")
    assert run.code == 0, run.stderr
    return stage, out, run.json["isf"]


@pytest.mark.slow
def test_volatility_pslist_lists_the_guests_processes(four_level: tuple[Path, Path, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    stage, symbols, _ = four_level
    truth = _truth(stage)
    listed = {row["PID"]: row["COMM"] for row in _vol(tmp_path, symbols, stage / "vmcore", "linux.pslist")}
    assert {pid: listed.get(pid) for pid in truth} == {pid: comm for pid, (comm, _) in truth.items()}
    later = set(listed) - set(truth)  # only what started after ps ran: the task that triggers the panic
    assert all(pid > max(truth) for pid in later) and len(later) <= 2


@pytest.mark.slow
def test_volatility_psaux_reads_command_lines(four_level: tuple[Path, Path, dict[str, Any]],
                                              tmp_path: Path) -> None:
    stage, symbols, _ = four_level
    truth = _truth(stage)
    args = {row["PID"]: row["ARGS"] for row in _vol(tmp_path, symbols, stage / "vmcore", "linux.psaux")}
    # ps shows a script as "{comm} interpreter script args" and a kernel thread as "[comm]"
    expected = {pid: re.sub(r"^\{[^}]*\} ", "", a) for pid, (_, a) in truth.items()}
    kthreads = {pid for pid, a in expected.items() if a.startswith("[")}
    assert {pid: args.get(pid) for pid in set(expected) - kthreads} == \
        {pid: a for pid, a in expected.items() if pid not in kthreads}
    assert "/bin/sh /init no5lvl" in args.values()
    assert {pid: args.get(pid) for pid in kthreads} == {pid: f"[{truth[pid][0]}]" for pid in kthreads}


@pytest.mark.parametrize(("dump", "kernel"), [("kdump-6.1-m-4level", "k61m"), ("kdump-6.1-m", "k61m"),
                                              ("kdump-6.1-y", "k61y")])
@pytest.mark.slow
def test_isf_symbols_match_the_kernel_build(corpus: Corpus, tmp_path: Path, dump: str, kernel: str) -> None:
    stage = _stage(corpus, dump)
    run = run_cli("--json", "--isf", tmp_path / "kernel.json", stage / "vmcore")
    assert run.code == 0, run.stderr
    report = run.json["isf"]
    doc = json.loads((tmp_path / "kernel.json").read_bytes())
    system_map = {}
    for line in corpus.file(kernel, "System.map").read_text().splitlines():
        addr, _, name = line.split()
        system_map.setdefault(name, int(addr, 16))
    # the data symbols kallsyms lacks (no CONFIG_KALLSYMS_ALL) were found at their link-time address;
    # `modules` only when a module is loaded (an empty list cannot be told from any other)
    loaded = ["modules"] if json.loads((stage / "truth.json").read_text()).get("module_loaded") else []
    pointed = ["init_cred", "init_files", "init_fs", "init_nsproxy", "init_pid_ns", "init_struct_pid", "init_user_ns"]
    assert report["recovered"] == sorted(["init_mm", "init_task", "linux_banner", *pointed, *loaded])
    for name in ("init_task", "init_mm", "linux_banner", "_stext", "start_kernel", "schedule", "init_top_pgt",
                 "init_uts_ns", *pointed, *loaded):
        assert doc["symbols"][name]["address"] == system_map[name], name
    assert doc["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    banner = base64.b64decode(doc["symbols"]["linux_banner"]["constant_data"])
    assert banner.startswith(f"Linux version {corpus.release('6.1-m')} ".encode()) and banner.endswith(b"\n\0")
    assert report["banner"] == banner[:-2].decode() == run_report_banner(stage)
    assert report["missing_types"] == []
    assert {"init_top_pgt", "swapper_pg_dir", "prb", "init_uts_ns"} <= set(report["from_vmcoreinfo"])
    assert "mem_section" not in doc["symbols"]  # VMCOREINFO gives its value there, not its address
    assert doc["user_types"]["task_struct"]["size"] > 1000


@pytest.mark.slow
def test_volatility_lsmod_lists_the_loaded_module(four_level: tuple[Path, Path, dict[str, Any]],
                                                  tmp_path: Path) -> None:
    stage, symbols, report = four_level
    assert json.loads((stage / "truth.json").read_text())["module_loaded"] is True  # the guest insmods kheaders.ko
    assert "modules" in report["recovered"]
    rows = _vol(tmp_path, symbols, stage / "vmcore", "linux.lsmod")
    assert [row["Module Name"] for row in rows] == ["kheaders"]


@pytest.mark.slow
def test_second_isf_run_uses_cached_types(four_level: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    stage, symbols, _ = four_level
    run = run_cli("--json", "--isf", tmp_path / "again.json", stage / "vmcore")
    assert run.code == 0 and run.json["isf"]["types_cached"] is True
    again = json.loads((tmp_path / "again.json").read_bytes())
    assert again == json.loads(lzma.decompress((symbols / "kernel.json.xz").read_bytes()))


@pytest.mark.slow
def test_five_level_capture_is_beyond_stock_volatility(corpus: Corpus, tmp_path: Path) -> None:
    """Volatility 3 walks 4-level page tables only (its issue #1938): on a la57 kernel it finds no tasks."""
    stage = _stage(corpus, "kdump-6.1-m")
    info = json.loads((stage / "truth.json").read_text())
    assert "no5lvl" not in " ".join(info["ps"])
    out = tmp_path / "symbols"
    out.mkdir()
    run = run_cli("--isf", out / "kernel.json", stage / "vmcore")
    assert run.code == 0, run.stderr
    assert f"{stage / 'vmcore'}: warning: the dump's kernel uses 5-level paging (LA57)" in run.stderr
    assert "no5lvl" in run.stderr and "extract-ikheaders-drgn" in run.stderr
    report = run_cli("--json", "--isf", out / "again.json", stage / "vmcore").json["isf"]
    assert report["paging_levels"] == 5 and report["warnings"] == [isf.FIVE_LEVEL_WARNING]
    assert _vol(tmp_path, out, stage / "vmcore", "linux.pslist") == []


@pytest.mark.slow
def test_kernel_source_adds_mounts_and_open_files(corpus: Corpus, four_level: tuple[Path, Path, dict[str, Any]],
                                                  tmp_path: Path) -> None:
    """struct mount is private to fs/mount.h: with the matching source tree, lsof and mountinfo work."""
    source = corpus.kernel_source("6.1")
    stage, plain, _ = four_level
    assert "mount" not in json.loads(lzma.decompress((plain / "kernel.json.xz").read_bytes()))["user_types"]
    out = tmp_path / "symbols"
    out.mkdir()
    run = run_cli("--isf", out / "kernel.json", "--kernel-source", source, stage / "vmcore")
    assert run.code == 0, run.stderr
    assert "mount" in json.loads((out / "kernel.json").read_bytes())["user_types"]
    # the guest's /init (fixtures/guest/init-truth.sh, run by the shell) mounts proc, sysfs and devtmpfs
    mounts = {(row["MOUNT_POINT"], row["FSTYPE"]) for row in _vol(tmp_path, out, stage / "vmcore", "linux.mountinfo")}
    assert {("/", "rootfs"), ("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs")} <= mounts
    files = {(row["PID"], row["Path"]) for row in _vol(tmp_path, out, stage / "vmcore", "linux.lsof")}
    assert {(1, "/dev/console"), (1, "/init")} <= files
    # the printk ring buffer's types come from the source too; VMCOREINFO gives prb
    log = [row["line"] for row in _vol(tmp_path, out, stage / "vmcore", "linux.kmsg")]
    assert log[0] == run_report_banner(stage)
    assert any(line.startswith("Command line: ") and line.endswith(" no5lvl") for line in log[:5])


def run_report_banner(stage: Path) -> str:
    """The banner line as the kernel printed it on the console at boot."""
    for line in (stage / "console.log").read_text(errors="replace").splitlines():
        if "Linux version " in line:
            return line[line.index("Linux version "):].strip()
    raise AssertionError("no banner on the console")


@pytest.mark.slow
def test_a_four_level_dump_gets_no_paging_warning(four_level: tuple[Path, Path, dict[str, Any]]) -> None:
    _, _, report = four_level
    assert (report["paging_levels"], report["warnings"]) == (4, [])


def _arm64_kernels(corpus: Corpus) -> list[tuple[str, str]]:
    return [(kernel, kernel) for kernel in corpus.manifest["arm64_boots"]["kernels"]]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", corpus_params(_arm64_kernels))
def test_isf_of_arm64_qemu_dumps_matches_the_build(corpus: Corpus, tmp_path: Path, kernel: str) -> None:
    """Released Volatility 3 has no AArch64 layer, so the ISF of an arm64 dump is checked against the
    build itself: every symbol kallsyms gives and every global found in the image at its System.map
    address (no KASLR in these guests), its types those the arm64 types object holds (which the test
    above compares with kbuild's own -g compile for this architecture)."""
    entry = corpus.manifest["kernels"][kernel]
    run = run_cli("--json", "--isf", tmp_path / "kernel.json", corpus.root / entry["dumps"]["elf"])
    assert run.code == 0, run.stderr
    report, doc = run.json["isf"], json.loads((tmp_path / "kernel.json").read_bytes())
    system_map: dict[str, set[int]] = {}
    for line in corpus.file(entry["stage"], "System.map").read_text().splitlines():
        addr, _, name = line.split()
        system_map.setdefault(name, set()).add(int(addr, 16))
    loaded = ["modules"] if entry["module"] is not None else []
    pointed = ["init_cred", "init_files", "init_fs", "init_nsproxy", "init_pid_ns", "init_struct_pid", "init_user_ns"]
    assert report["recovered"] == sorted(["init_mm", "init_task", "linux_banner", *pointed, *loaded])
    placed = {name: s["address"] for name, s in doc["symbols"].items() if name in system_map}
    assert len(placed) > 10_000 and report["kaslr_offset"] == 0
    assert [name for name, address in placed.items() if address not in system_map[name]] == []
    assert {"swapper_pg_dir", "init_uts_ns"} <= set(report["from_vmcoreinfo"])
    assert doc["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    assert doc["base_types"]["pointer"]["size"] == 8 and doc["base_types"]["pointer"]["endian"] == "little"
    assert report["missing_types"] == []
    assert report["paging_levels"] == {39: 3, 52: 5}[entry["vmcoreinfo_va_bits"]]
    assert report["warnings"] == [isf.ARM64_WARNING]
    again = run_cli("--isf", tmp_path / "again.json", corpus.root / entry["dumps"]["elf"])
    assert f"warning: {isf.ARM64_WARNING}" in again.stderr
