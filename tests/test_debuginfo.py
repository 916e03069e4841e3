"""--debuginfo: the kernel's types compiled from its own headers archive.

Corpus tests compare the types object with the kernel build's own -g compile of kernel/fork.c
(corpus stages kbuild-g-*): every member of task_struct & co. at the same offset, size and type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Corpus
from dwarf_layout import layouts
from elftools.elf.elffile import ELFFile

from extract_ikheaders.analysis import debuginfo

# Structures analysis tools walk; each must be in both objects and laid out identically.
STRUCTS = {"task_struct", "mm_struct", "vm_area_struct", "file", "dentry", "inode", "cred", "nsproxy",
           "files_struct", "fdtable", "fs_struct", "pid", "upid", "pid_namespace", "uts_namespace",
           "signal_struct", "sighand_struct", "super_block", "vfsmount", "path", "qstr", "thread_struct"}

# kernel stage -> the image the types are built from (kernel stages without an entry: vmlinux)
IMAGES = {"k61y": "vmlinux", "k612y": "vmlinux.stripped", "k61arm64": "Image.gz"}
MACHINES = {"k61arm64": "EM_AARCH64", "k61arm": "EM_ARM", "k61ppc64be": "EM_PPC64", "k61riscv64": "EM_RISCV",
            "k61s390x": "EM_S390"}
STAGES = ("k61y", "k612y", "k61arm64", "k61arm", "k61ppc64be", "k61riscv64", "k61s390x")


def _kbuild_object(corpus: Corpus, stage: str) -> Path:
    kbuild = corpus.manifest.get("kbuild_g", {})
    if stage not in kbuild:
        pytest.skip(f"corpus has no kbuild -g object for {stage} (stage kbuild-g-{stage}): "
                    f"python fixtures/corpus.py build")
    path = corpus.root / kbuild[stage]
    assert path.is_file(), path
    return path


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_layouts_equal_the_kernel_builds_own(corpus: Corpus, stage: str, tmp_path: Path) -> None:
    kbuild = _kbuild_object(corpus, stage)
    types = debuginfo.build_types(corpus.file(stage, IMAGES.get(stage, "vmlinux")), cache=tmp_path)
    assert not types.cached
    assert types.release == json.loads(corpus.file(stage, "build.json").read_text())["release"]
    ours, theirs = layouts(types.path, STRUCTS), layouts(kbuild, STRUCTS)
    assert set(theirs) == STRUCTS, f"kbuild's fork.o lacks {STRUCTS - set(theirs)}"
    assert set(ours) == STRUCTS, f"the types object lacks {STRUCTS - set(ours)}"
    for name in sorted(STRUCTS):
        size, members = ours[name]
        assert (size, members) == theirs[name], f"struct {name} differs from kbuild's"
    assert len(ours["task_struct"][1]) > 100  # flattened members, anonymous unions included
    with types.path.open("rb") as f:
        assert ELFFile(f)["e_machine"] == MACHINES.get(stage, "EM_X86_64")


@pytest.mark.slow
def test_second_build_is_a_cache_hit(corpus: Corpus, tmp_path: Path) -> None:
    archive = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    first = debuginfo.build_types_from(archive, cache=tmp_path)
    second = debuginfo.build_types_from(archive, cache=tmp_path)
    assert (first.cached, second.cached) == (False, True)
    assert first.path == second.path and first.path.parent.parent == tmp_path
    assert first.archive_sha256 == corpus.build("6.1-y-gzip")["blob_sha256"]
    assert json.loads((first.path.parent / "types.json").read_text())["release"] == corpus.release("6.1-y-gzip")


def _dwarf_names(path: Path) -> dict[str, dict[str, str]]:
    """tag -> {name: the name of the DIE's type} for variables and typedefs."""
    out: dict[str, dict[str, str]] = {"DW_TAG_variable": {}, "DW_TAG_typedef": {}}
    with path.open("rb") as f:
        for cu in ELFFile(f).get_dwarf_info().iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                if die.tag in out and "DW_AT_name" in die.attributes and "DW_AT_type" in die.attributes:
                    target = die.get_DIE_from_attribute("DW_AT_type")
                    name = target.attributes.get("DW_AT_name")
                    out[die.tag][die.attributes["DW_AT_name"].value.decode()] = name.value.decode() if name else ""
    return out


@pytest.mark.slow
def test_globals_have_their_types(corpus: Corpus, tmp_path: Path) -> None:
    """A declaration and a __kheaders_type_<name> typedef for each well-known global."""
    types = debuginfo.build_types_from(corpus.file("k61y", "kheaders_data.tar.xz").read_bytes(), cache=tmp_path)
    names = _dwarf_names(types.path)
    for name, type_name in (("init_task", "task_struct"), ("init_uts_ns", "uts_namespace"),
                            ("init_pid_ns", "pid_namespace"), ("init_mm", "mm_struct"),
                            ("modules", "list_head"), ("init_cred", "cred")):
        assert name in types.globals
        assert names["DW_TAG_variable"][name] == type_name
        assert names["DW_TAG_typedef"][debuginfo.TYPE_PREFIX + name] == type_name
    # The tinyconfig kernel is uniprocessor: nr_cpu_ids is a constant, not a variable.
    assert "nr_cpu_ids" in types.skipped and "nr_cpu_ids" not in types.globals


@pytest.mark.slow
def test_kernel_source_adds_private_types(corpus: Corpus, tmp_path: Path) -> None:
    source = corpus.kernel_source("6.1")
    archive = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    plain = debuginfo.build_types_from(archive, cache=tmp_path)
    full = debuginfo.build_types_from(archive, kernel_source=source, cache=tmp_path)
    private = {"mount", "rq", "printk_ringbuffer", "prb_desc_ring", "slab", "worker"}
    assert set(layouts(plain.path, private)) == set()
    found = layouts(full.path, private)
    assert set(found) == private
    assert found["rq"][0] > 0 and any(m[0] == "cfs" for m in found["rq"][1])
    assert {"runqueues", "prb"} <= set(full.globals)
    assert full.path != plain.path and full.kernel_source == str(Path(source).resolve())


@pytest.mark.slow
def test_cli_debuginfo_writes_elf_and_reports_the_cache(corpus: Corpus, cli: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(debuginfo.CACHE_ENV, str(tmp_path / "cache"))
    vmcore = corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore"
    out = tmp_path / "types.o"
    first = cli("--json", "--debuginfo", out, vmcore)
    assert first.code == 0, first.stderr
    report = first.json["debuginfo"]
    assert (report["cached"], report["arch"], report["release"]) == (False, "x86_64", corpus.release("6.1-m"))
    assert report["archive_sha256"] == corpus.manifest["kdump"]["ground_truth"]["sha256"]
    assert report["configuration"] == "the archive's autoconf.h, equal to the .config"
    with out.open("rb") as f:
        elf = ELFFile(f)
        assert elf.has_dwarf_info() and elf["e_machine"] == "EM_X86_64"
    second = cli("--json", "--debuginfo", out, vmcore)
    assert second.code == 0 and second.json["debuginfo"]["cached"] is True
    assert out.read_bytes() == Path(report["cache"]).read_bytes()


def test_cli_debuginfo_refuses_stdout_and_kernel_source_alone(cli: Any, tmp_path: Path) -> None:
    image = tmp_path / "x"
    image.write_bytes(b"x")
    run = cli("--debuginfo", "-", image)
    assert run.code == 2 and "--debuginfo needs a file" in run.stderr
    run = cli("--kernel-source", tmp_path, image)
    assert run.code == 2 and "--kernel-source goes with --debuginfo" in run.stderr


def test_cli_debuginfo_without_headers_exits_1(cli: Any, tmp_path: Path) -> None:
    image = tmp_path / "plain.bin"
    image.write_bytes(b"\0" * 4096)
    run = cli("--debuginfo", tmp_path / "t.o", image)
    assert run.code == 1 and run.stderr.count("\n") == 1 and str(image) in run.stderr
    assert not (tmp_path / "t.o").exists()


# Without the corpus ---------------------------------------------------------------------------------

def test_the_headers_tree_goes_to_a_ram_file_system_with_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating the archive's ~6,000 files costs seconds on a busy disk: /dev/shm when it has room."""
    monkeypatch.setattr(debuginfo, "_SCRATCH", str(tmp_path))
    assert debuginfo.scratch_root() == str(tmp_path)
    monkeypatch.setattr(debuginfo, "_SCRATCH_FREE", 1 << 62)  # no file system has that much room
    assert debuginfo.scratch_root() is None
    monkeypatch.setattr(debuginfo, "_SCRATCH", str(tmp_path / "absent"))
    assert debuginfo.scratch_root() is None


def test_autoconf_from_config() -> None:
    config = b'CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D="x y"\nCONFIG_E=0x10\nCONFIG_F=n\n'
    text = debuginfo.autoconf_from(config)
    assert debuginfo.autoconf_values(text) == {b"CONFIG_A": b"1", b"CONFIG_B_MODULE": b"1", b"CONFIG_D": b'"x y"',
                                               b"CONFIG_E": b"0x10"}


# The options a stale archive lacks: kernel/gen_kheaders.sh decides whether to repack from the `ls -l`
# of the *.h files minus autoconf.h, so a configuration change touching no header keeps the old
# archive. An incrementally rebuilt 6.1 tree did exactly this once (PROC_KCORE turned on later).
STALE = (b"CONFIG_PROC_KCORE", b"CONFIG_ARCH_PROC_KCORE_TEXT")


def stale_archive(archive: bytes, drop: tuple[bytes, ...] = STALE) -> bytes:
    """The archive again, with these options' #defines taken out of include/generated/autoconf.h:
    what gen_kheaders.sh leaves after a configuration change that touches no header."""
    import io
    import lzma
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(archive)), mode="r:") as src, \
            tarfile.open(fileobj=out, mode="w:", format=tarfile.GNU_FORMAT) as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("include/generated/autoconf.h") and data is not None:
                kept = [ln for ln in data.splitlines(keepends=True) if not any(ln.startswith(b"#define " + d + b" ")
                                                                              for d in drop)]
                assert len(kept) == len(data.splitlines()) - len(drop), "the options to drop are not all there"
                data = b"".join(kept)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return lzma.compress(out.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


def test_a_clean_builds_archive_agrees_with_its_config(corpus: Corpus, tmp_path: Path) -> None:
    """The corpus kernels are built from clean trees: the archive's autoconf.h is the .config's."""
    from extract_ikheaders import pipeline

    archive = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    config = corpus.file("k61y", "config").read_bytes()
    packed = debuginfo.autoconf_values(pipeline.archive_member(archive, "include/generated/autoconf.h") or b"")
    assert packed == debuginfo.autoconf_values(debuginfo.autoconf_from(config))
    assert {d: packed.get(d) for d in STALE} == {d: b"1" for d in STALE}


@pytest.mark.slow
def test_the_embedded_config_wins_over_a_stale_autoconf(corpus: Corpus, tmp_path: Path) -> None:
    """A stale archive (autoconf.h older than the .config the kernel was compiled with) built on
    purpose from the corpus one: the .config wins, and says so."""
    from extract_ikheaders import pipeline

    archive = stale_archive(corpus.file("k61y", "kheaders_data.tar.xz").read_bytes())
    config = corpus.file("k61y", "config").read_bytes()
    packed = debuginfo.autoconf_values(pipeline.archive_member(archive, "include/generated/autoconf.h") or b"")
    generated = debuginfo.autoconf_values(debuginfo.autoconf_from(config))
    assert {k for k in packed.keys() | generated.keys() if packed.get(k) != generated.get(k)} == set(STALE)
    alone = debuginfo.build_types_from(archive, None, cache=tmp_path)
    assert alone.configuration == "the archive's autoconf.h"
    with_config = debuginfo.build_types_from(archive, config, cache=tmp_path)
    assert with_config.configuration == "generated from the .config (the archive's autoconf.h differs)"
    assert with_config.path != alone.path
    agreeing = b"".join(f"{k.decode()}=y\n".encode() if v == b"1" else f"{k.decode()}={v.decode()}\n".encode()
                        for k, v in packed.items() if not k.endswith(b"_MODULE"))
    assert debuginfo.build_types_from(archive, agreeing, cache=tmp_path).configuration == (
        "the archive's autoconf.h, equal to the .config")


@pytest.mark.slow
def test_cli_debuginfo_takes_the_config_over_a_stale_archive(corpus: Corpus, cli: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through the CLI: an image holding the stale archive and the kernel's own .config
    (CONFIG_IKCONFIG's IKCFG_ST/IKCFG_ED markers around its gzip)."""
    import gzip

    monkeypatch.setenv(debuginfo.CACHE_ENV, str(tmp_path / "cache"))
    archive = stale_archive(corpus.file("k61y", "kheaders_data.tar.xz").read_bytes())
    config = corpus.file("k61y", "config").read_bytes()
    image = tmp_path / "image.bin"
    image.write_bytes(b"\0" * 4096 + b"IKCFG_ST" + gzip.compress(config, mtime=0) + b"IKCFG_ED" + b"\0" * 4096
                      + archive + b"\0" * 4096)
    run = cli("--json", "--debuginfo", tmp_path / "types.o", image)
    assert run.code == 0, run.stderr
    report = run.json["debuginfo"]
    assert report["configuration"] == "generated from the .config (the archive's autoconf.h differs)"
    assert report["release"] == corpus.release("6.1-y-gzip")


def test_failing_lines_follow_gcc_include_chains() -> None:
    stderr = """In file included from ./include/linux/irq.h:5,
                 from /tmp/x/types.c:12:
include/linux/irqdesc.h:20:33: error: field 'irq_data' has incomplete type
include/linux/irqdesc.h:21:33: error: unknown type name 'irq_flow_handler_t'
/tmp/x/types.c:40:22: error: 'nr_cpu_ids' undeclared here (not in a function)
In file included from /tmp/x/types.c:3:
include/linux/a.h:1:1: warning: something
"""
    assert debuginfo._failing_lines(stderr, "types.c") == [12, 40]
    line = "typedef __typeof__(init_task) __kheaders_type_init_task; void *const __kheaders_use_init_task ..."
    assert debuginfo._what(line) == "init_task"
    assert debuginfo._what("#include <linux/irq.h>") == "linux/irq.h"


@pytest.mark.slow
def test_an_incomplete_cache_entry_is_rebuilt(corpus: Corpus, tmp_path: Path) -> None:
    archive = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    first = debuginfo.build_types_from(archive, cache=tmp_path)
    first.path.unlink()
    again = debuginfo.build_types_from(archive, cache=tmp_path)
    assert not again.cached and again.path == first.path and again.path.is_file()
