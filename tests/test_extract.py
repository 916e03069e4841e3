"""Listing and safe unpacking of the headers archive (extract_ikheaders/unpack.py)."""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tracemalloc
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from builders import HEADERS, headers_archive
from conftest import Corpus
from hostile_archives import (
    MTIME,
    archive,
    claimed_size,
    directory,
    file,
    hardlink,
    member,
    symlink,
    tar,
    xz,
    zero_files,
)

from extract_ikheaders import Damaged, UnsafeArchive, UsageError
from extract_ikheaders.archive import unpack
from extract_ikheaders.model import Extracted, Incident, Member

NORMAL = archive(
    directory("./include"),
    directory("./include/linux"),
    file("./include/linux/types.h", b"typedef unsigned int u32;\n" * 40),
    file("./include/linux/kernel.h", b"#include <linux/types.h>\n", mode=0o664),
    symlink("./include/linux/alias.h", "types.h"),
    symlink("./include/up", "../arch"),
    directory("./arch"),
    directory("./arch/x86/include/asm"),  # parents without entries of their own
    file("./arch/x86/include/asm/page.h", b"#define PAGE_SHIFT 12\n"),
    file("./arch/x86/tool.sh", b"#!/bin/sh\n", mode=0o775),
)


# Snapshots: nothing outside the target may change -----------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `root` (not root itself): type, mode, size, mtime, link target."""
    state: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            link = os.readlink(path) if path.is_symlink() else None
            state[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                  st.st_size, st.st_mtime_ns, link)
    return state


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A tree beside the target that hostile archives aim at."""
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "victim.txt").write_text("precious\n")
    os.utime(victim / "victim.txt", ns=(1, 1))
    return victim


def refused(tmp_path: Path, data: bytes, error: type[Exception], *fragments: str, **options: Any) -> str:
    """Unpack into tmp_path/out expecting `error`; nothing may change outside; returns the message."""
    before = snapshot(tmp_path)
    with pytest.raises(error) as caught:
        unpack.extract(data, tmp_path / "out", **options)
    assert snapshot(tmp_path) == before
    assert leftovers(tmp_path) == []
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


# A normal tree ------------------------------------------------------------------------------------


def test_normal_tree_unpacks_exactly(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    result = unpack.extract(NORMAL, dest)
    assert result == Extracted(directory=str(dest), members=10, bytes_written=1040 + 25 + 22 + 10, incidents=())
    types_h = dest / "include/linux/types.h"
    assert types_h.read_bytes() == b"typedef unsigned int u32;\n" * 40
    assert (dest / "include/linux/kernel.h").read_bytes() == b"#include <linux/types.h>\n"
    assert (dest / "arch/x86/include/asm/page.h").read_bytes() == b"#define PAGE_SHIFT 12\n"
    assert os.readlink(dest / "include/linux/alias.h") == "types.h"
    assert (dest / "include/linux/alias.h").read_bytes() == types_h.read_bytes()
    assert os.readlink(dest / "include/up") == "../arch"
    assert stat.S_IMODE(types_h.stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "include/linux/kernel.h").stat().st_mode) == 0o644  # group write dropped
    assert stat.S_IMODE((dest / "arch/x86/tool.sh").stat().st_mode) == 0o755
    for d in (dest, dest / "include", dest / "arch/x86", dest / "arch/x86/include/asm"):
        assert d.is_dir() and not d.is_symlink() and stat.S_IMODE(d.stat().st_mode) == 0o755
    assert types_h.stat().st_mtime == MTIME
    assert (dest / "include").stat().st_mtime == MTIME
    assert dest.stat().st_mtime == MTIME
    assert os.lstat(dest / "include/up").st_mtime == MTIME
    assert leftovers(tmp_path) == []


def test_listing_matches_archive_order(tmp_path: Path) -> None:
    assert unpack.list_members(NORMAL) == (
        Member("include", 0, "dir", "./include/"),
        Member("include/linux", 0, "dir", "./include/linux/"),
        Member("include/linux/types.h", 1040, "file", "./include/linux/types.h"),
        Member("include/linux/kernel.h", 25, "file", "./include/linux/kernel.h"),
        Member("include/linux/alias.h", 0, "symlink", "./include/linux/alias.h"),
        Member("include/up", 0, "symlink", "./include/up"),
        Member("arch", 0, "dir", "./arch/"),
        Member("arch/x86/include/asm", 0, "dir", "./arch/x86/include/asm/"),
        Member("arch/x86/include/asm/page.h", 22, "file", "./arch/x86/include/asm/page.h"),
        Member("arch/x86/tool.sh", 10, "file", "./arch/x86/tool.sh"),
    )


def test_listing_names_every_kind() -> None:
    data = archive(member("./null", tarfile.CHRTYPE), member("./disk", tarfile.BLKTYPE),
                   member("./pipe", tarfile.FIFOTYPE), file("./f", b"abc"), hardlink("./h", "./f"))
    assert [(m.name, m.kind, m.size) for m in unpack.list_members(data)] == [
        ("null", "chardev", 0), ("disk", "blockdev", 0), ("pipe", "fifo", 0), ("f", "file", 3), ("h", "hardlink", 0)]


def test_project_synthetic_archive_unpacks(tmp_path: Path) -> None:
    result = unpack.extract(headers_archive(), tmp_path / "kh")
    for name, data in HEADERS.items():
        assert (tmp_path / "kh" / name).read_bytes() == data
    assert result.bytes_written == sum(len(d) for d in HEADERS.values())
    assert {m.name for m in unpack.list_members(headers_archive()) if m.kind == "file"} == {
        n.removeprefix("./") for n in HEADERS}


@pytest.mark.skipif(shutil.which("tar") is None or shutil.which("xz") is None, reason="GNU tar and xz needed")
def test_archive_made_like_the_kernel_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "include/linux").mkdir(parents=True)
    (src / "arch/x86/include/generated").mkdir(parents=True)
    (src / "include/linux/a.h").write_bytes(b"int a;\n" * 1000)
    (src / "arch/x86/include/generated/b.h").write_bytes(b"")
    (src / "include/linux/run").write_bytes(b"#!/bin/sh\n")
    (src / "include/linux/run").chmod(0o755)
    made = tmp_path / "kheaders.tar.xz"
    subprocess.run(["tar", "--owner=0", "--group=0", "--sort=name", "--numeric-owner", "--mode=u=rw,go=r,a+X",
                    "-cJf", str(made), "-C", str(src), "."], check=True)
    result = unpack.extract(made.read_bytes(), tmp_path / "out")
    assert result.members == 9 and result.incidents == ()
    for path in src.rglob("*"):
        copy = tmp_path / "out" / path.relative_to(src)
        # --mode=u=rw,go=r,a+X stores 0644 for every file (u=rw clears x before a+X looks), 0755 for dirs
        assert stat.S_IMODE(copy.lstat().st_mode) == (0o644 if path.is_file() else 0o755)
        if path.is_file():
            assert copy.read_bytes() == path.read_bytes()
    assert [m.name for m in unpack.list_members(made.read_bytes())][:3] == ["arch", "arch/x86", "arch/x86/include"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar needed")
def test_real_kernel_archive_matches_gnu_tar(corpus: Corpus, tmp_path: Path) -> None:
    data = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    (tmp_path / "ref").mkdir()
    subprocess.run(["tar", "-xJf", "-", "-C", str(tmp_path / "ref")], input=data, check=True)
    result = unpack.extract(data, tmp_path / "out")
    ref, out = snapshot(tmp_path / "ref"), snapshot(tmp_path / "out")
    stamp = out.pop(unpack.STAMP)  # the one file that is this tool's, not the archive's
    assert stamp[0] & 0o170000 == 0o100000  # a regular file
    assert out == ref
    assert result.members == len(out) == len(unpack.list_members(data)) > 5000
    assert result.incidents == ()


def test_modes_ignore_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        unpack.extract(NORMAL, tmp_path / "out")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out/include/linux/types.h").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out/arch/x86/include").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_temporary_directory_is_beside_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Path] = []
    real_mkdtemp = unpack.tempfile.mkdtemp

    def spy(**kwargs: Any) -> str:
        path: str = real_mkdtemp(**kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(unpack.tempfile, "mkdtemp", spy)
    unpack.extract(NORMAL, tmp_path / "out")
    assert [(p.parent, p.name.startswith(".out.tmp-")) for p in made] == [(tmp_path, True)]
    assert not made[0].exists()


# Special members, modes, duplicates, links ------------------------------------------------------


def test_devices_and_fifos_are_skipped(tmp_path: Path) -> None:
    data = archive(directory("./dev"), member("./dev/null", tarfile.CHRTYPE), member("./dev/sda", tarfile.BLKTYPE),
                   member("./pipe", tarfile.FIFOTYPE), file("./keep.h", b"k"))
    result = unpack.extract(data, tmp_path / "out")
    assert result.incidents == (Incident("dev/null", "character device", "skipped"),
                                Incident("dev/sda", "block device", "skipped"),
                                Incident("pipe", "fifo", "skipped"))
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == [unpack.STAMP, "dev", "keep.h"]
    assert result.members == 2


def test_special_mode_bits_are_dropped_and_reported(tmp_path: Path) -> None:
    data = archive(file("./suid", b"#!", mode=0o4755), file("./sgid", b"", mode=0o2644),
                   directory("./sticky", mode=0o1777), file("./shared", b"", mode=0o666), file("./own", mode=0o700))
    result = unpack.extract(data, tmp_path / "out")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir() if p.name != unpack.STAMP}
    assert modes == {"suid": 0o755, "sgid": 0o644, "sticky": 0o755, "shared": 0o644, "own": 0o755}
    assert [(i.member, i.action) for i in result.incidents] == [
        ("suid", "mode changed"), ("sgid", "mode changed"), ("sticky", "mode changed")]
    assert "4755 -> 0755" in result.incidents[0].problem


def test_root_entry_mode_is_normalised_too(tmp_path: Path) -> None:
    result = unpack.extract(archive(directory("./", mode=0o1777), file("./a"), root=False), tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert [(i.member, i.action) for i in result.incidents] == [(".", "mode changed")]
    assert result.members == 1


def test_duplicate_file_keeps_the_first(tmp_path: Path) -> None:
    data = archive(file("./a.h", b"first"), file("./a.h", b"second, longer"), directory("./d"), directory("./d"),
                   symlink("./s", "a.h"), symlink("./s", "d"))
    result = unpack.extract(data, tmp_path / "out")
    assert (tmp_path / "out/a.h").read_bytes() == b"first"
    assert os.readlink(tmp_path / "out/s") == "a.h"
    assert result.incidents == (Incident("a.h", "duplicate entry; the first one is kept", "skipped"),
                                Incident("s", "duplicate entry; the first one is kept", "skipped"))
    assert (result.members, result.bytes_written) == (3, 5)


def test_hard_link_becomes_a_copy(tmp_path: Path) -> None:
    data = archive(directory("./a"), file("./a/f.h", b"shared"), hardlink("./g.h", "./a/f.h"))
    result = unpack.extract(data, tmp_path / "out")
    f, g = tmp_path / "out/a/f.h", tmp_path / "out/g.h"
    assert g.read_bytes() == b"shared" and not g.is_symlink()
    assert f.stat().st_ino != g.stat().st_ino
    assert (result.members, result.bytes_written) == (3, 12)


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    data = archive(directory("./a/b"), symlink("./a/b/root", "../.."), symlink("./a/b/dot", "./.."),
                   symlink("./a/dangling", "missing/file"))
    unpack.extract(data, tmp_path / "out")
    assert (tmp_path / "out/a/b/root").resolve() == (tmp_path / "out").resolve()
    assert os.readlink(tmp_path / "out/a/dangling") == "missing/file"


def test_empty_archive_gives_empty_directory(tmp_path: Path) -> None:
    result = unpack.extract(xz(tar([])), tmp_path / "out")
    assert (result.members, [p.name for p in (tmp_path / "out").iterdir()]) == (0, [unpack.STAMP])
    assert unpack.list_members(xz(tar([]))) == ()


# Hostile archives: refused whole, nothing written --------------------------------------------------

HOSTILE: list[tuple[str, Callable[[], bytes], tuple[str, ...]]] = [
    ("dotdot", lambda: archive(file("./../x", b"x")), ("./../x", "'..'")),
    ("dotdot-deep", lambda: archive(file("./a/../../outside/victim.txt", b"x")), ("./a/../../outside", "'..'")),
    ("bare-dotdot", lambda: archive(file("../x", b"x"), root=False), ("../x", "'..'")),
    ("absolute", lambda: archive(file("/abs", b"x")), ("/abs", "absolute")),
    ("absolute-symlink-then-through", lambda: archive(symlink("./etc", "/etc"), file("./etc/passwd", b"x")),
     ("./etc", "/etc", "absolute")),
    ("symlink-up-out", lambda: archive(directory("./a"), symlink("./a/evil", "../../outside")),
     ("./a/evil", "../../outside", "outside the tree")),
    ("symlink-root-up", lambda: archive(symlink("./up", "..")), ("./up", "outside the tree")),
    ("symlink-climb-after-link", lambda: archive(directory("./a"), symlink("./a/s", ".."), symlink("./t", "a/s/..")),
     ("./t", "a/s/..", "climbs")),
    ("through-in-tree-symlink", lambda: archive(directory("./d"), symlink("./l", "d"), file("./l/x", b"x")),
     ("./l/x", "symlink")),
    ("under-a-file", lambda: archive(file("./f", b"x"), file("./f/x", b"x")), ("./f/x", "is a file")),
    ("hardlink-absolute", lambda: archive(hardlink("./h", "/etc/passwd")), ("./h", "/etc/passwd", "absolute")),
    ("hardlink-dotdot", lambda: archive(hardlink("./h", "../outside/victim.txt")), ("./h", "'..'")),
    ("hardlink-to-dir", lambda: archive(directory("./d"), hardlink("./h", "./d")), ("./h", "not a regular file")),
    ("hardlink-to-symlink", lambda: archive(file("./f"), symlink("./s", "f"), hardlink("./h", "./s")),
     ("./h", "not a regular file")),
    ("hardlink-forward", lambda: archive(hardlink("./h", "./later"), file("./later")), ("./h", "./later")),
    ("file-then-dir", lambda: archive(file("./a", b"x"), directory("./a")),
     ("./a", "directory where the archive already put a file")),
    ("dir-then-file", lambda: archive(directory("./a"), file("./a", b"x")),
     ("./a", "file where the archive already put a directory")),
    ("implicit-dir-then-file", lambda: archive(file("./a/b", b"x"), file("./a", b"x")), ("./a", "directory")),
    ("dir-then-symlink", lambda: archive(directory("./a"), symlink("./a", "b")), ("./a", "symlink where")),
    ("file-as-root", lambda: archive(file(".", b"x"), root=False), (".: a file in place of the tree's top directory",)),
    ("newline", lambda: archive(file("./a\nb", b"x")), ("./a\\x0ab", "control character")),
    ("escape", lambda: archive(file("./\x1b[31mred", b"x")), ("\\x1b[31mred", "control character")),
    ("nul-in-pax-name", lambda: archive(member("./a", data=b"x", pax={"path": "./a\x00b"}), fmt=tarfile.PAX_FORMAT),
     ("./a\\x00b", "control character")),
    ("symlink-target-control", lambda: archive(symlink("./s", "a\rb")), ("./s", "control character")),
    ("name-too-long", lambda: archive(file("./" + "n" * 300, b"x")), ("nnnn", "too long")),
    ("sparse-gnu", lambda: archive(member("./sp", tarfile.GNUTYPE_SPARSE)), ("./sp", "sparse")),
    ("sparse-pax-1.0", lambda: archive(member("./sp", data=b"9999999999\n", pax={
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "./sp", "GNU.sparse.realsize": "9"}),
        fmt=tarfile.PAX_FORMAT), ("./sp", "sparse")),
    ("huge-pax-header", lambda: archive(member("./p", data=b"x", pax={"comment": "c" * 100_000}),
                                        fmt=tarfile.PAX_FORMAT), ("extended header",)),
]


@pytest.mark.parametrize(("build", "fragments"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_archive_is_refused(tmp_path: Path, outside: Path, build: Callable[[], bytes],
                                    fragments: tuple[str, ...]) -> None:
    refused(tmp_path, build(), UnsafeArchive, *fragments)
    assert (outside / "victim.txt").read_text() == "precious\n"
    assert not Path("/etc/passwd").is_symlink()


@pytest.mark.parametrize(("build", "fragments"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_archive_refused_over_an_existing_tree(tmp_path: Path, build: Callable[[], bytes],
                                                       fragments: tuple[str, ...]) -> None:
    unpack.extract(NORMAL, tmp_path / "out")
    refused(tmp_path, build(), UnsafeArchive, *fragments, force=True)


def test_too_many_members(tmp_path: Path) -> None:
    data = archive(*(file(f"./f{i}", b"") for i in range(50)))
    refused(tmp_path, data, UnsafeArchive, "./f9", "more than 10 members", "--max-members",
            max_members=10)
    assert len(unpack.extract(data, tmp_path / "out", max_members=51).incidents) == 0
    with pytest.raises(Damaged, match="more than 10 members"):
        unpack.list_members(data, max_members=10)


def test_member_over_max_bytes_is_refused_up_front(tmp_path: Path) -> None:
    data = archive(file("./small", b"s" * 1000), file("./big", os.urandom(1 << 20)))
    refused(tmp_path, data, UnsafeArchive, "./big", "100,000 bytes", "--max-size", max_bytes=100_000)
    assert unpack.extract(data, tmp_path / "out", max_bytes=1000 + (1 << 20)).bytes_written == 1000 + (1 << 20)


def test_bytes_written_are_counted_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # were the up-front check on declared sizes fooled, the bytes actually written still stop at the limit
    monkeypatch.setattr(unpack, "_data_size", lambda info: 0)
    data = archive(file("./a", b"a" * 600), file("./b", b"b" * 600))
    refused(tmp_path, data, UnsafeArchive, "./b", "1,000 bytes", max_bytes=1000)


def test_hard_link_copies_count_against_max_bytes(tmp_path: Path) -> None:
    data = archive(file("./f", b"x" * 400), *(hardlink(f"./h{i}", "./f") for i in range(5)))
    refused(tmp_path, data, UnsafeArchive, "./h1", "--max-size", max_bytes=1000)


def test_claimed_100_gb_member_is_refused_without_allocating(tmp_path: Path) -> None:
    data = claimed_size("./huge.h", 100 << 30, present=5000)
    tracemalloc.start()
    try:
        refused(tmp_path, data, UnsafeArchive, "./huge.h", "107,374,182,400", "--max-size")
        message = refused(tmp_path, data, Damaged, "./huge.h", max_bytes=1 << 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "truncated" in message
    assert peak < 16 << 20


@cache
def zero_bomb() -> bytes:
    return zero_files(1, 200 << 20)  # 200 MiB of zeros, ~30 KB compressed


def test_xz_bomb_is_refused_before_its_data(tmp_path: Path) -> None:
    """Refused on the member's declared size, before any of its 200 MiB is decoded (bench/hostile.py
    times the bombs; a test asserts what happened, not how long it took)."""
    assert len(zero_bomb()) < 100_000
    refused(tmp_path, zero_bomb(), UnsafeArchive, "./zeros0", "209,715,200", "--max-size", max_bytes=10 << 20)


def test_many_small_zero_files_stop_at_the_limit(tmp_path: Path) -> None:
    refused(tmp_path, zero_files(50, 1 << 20), UnsafeArchive, "./zeros10", "--max-size", max_bytes=10 << 20)


# Damaged archives ------------------------------------------------------------------------------------

BIG = archive(*(file(f"./include/f{i}.h", os.urandom(2000)) for i in range(100)))


def test_truncated_archive_is_damaged(tmp_path: Path) -> None:
    message = refused(tmp_path, BIG[: len(BIG) // 2], Damaged, "truncated", "./include/f")
    assert "tar offset" in message
    with pytest.raises(Damaged, match=r"\./include/f"):
        unpack.list_members(BIG[: len(BIG) // 2])


@pytest.mark.parametrize("cut", [100, 1000, 50_000, 150_000, -100, -20, -1])
def test_every_cut_is_damaged(tmp_path: Path, cut: int) -> None:
    refused(tmp_path, BIG[:cut], Damaged)
    with pytest.raises(Damaged):
        unpack.list_members(BIG[:cut])


def test_corrupt_xz_byte_is_damaged(tmp_path: Path) -> None:
    bad = bytearray(BIG)
    bad[len(bad) // 2] ^= 0xFF
    refused(tmp_path, bytes(bad), Damaged, "corrupt")


def test_bad_tar_header_inside_good_xz_is_damaged(tmp_path: Path) -> None:
    # tarfile alone takes a bad header after the first for the end of the archive: half a tree
    raw = bytearray(tar([directory("./"), file("./a", b"a"), file("./b", b"b"), file("./c", b"c")]))
    at = raw.index(b"./b")
    raw[at + 148: at + 156] = b"0000000\0"  # checksum
    refused(tmp_path, xz(bytes(raw)), Damaged, "bad tar header", "./a")
    with pytest.raises(Damaged):
        unpack.list_members(xz(bytes(raw)))


def test_tar_cut_inside_a_header_is_damaged(tmp_path: Path) -> None:
    raw = tar([directory("./"), file("./a", b"a"), file("./b", b"b")])
    refused(tmp_path, xz(raw[: raw.index(b"./b") + 100]), Damaged, "./a")


@pytest.mark.parametrize("data", [b"", b"not an archive at all", lzma.compress(b"plain text, not a tar")],
                         ids=["empty", "garbage", "xz-not-tar"])
def test_not_an_archive_is_damaged(tmp_path: Path, data: bytes) -> None:
    refused(tmp_path, data, Damaged)


# The target directory -----------------------------------------------------------------------------


def test_non_empty_target_needs_force(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out/mine.txt").write_text("mine")
    refused(tmp_path, NORMAL, UsageError, "not empty", "--force")


def test_force_replaces_after_success(tmp_path: Path) -> None:
    unpack.extract(archive(file("./old.h", b"old")), tmp_path / "out")
    (tmp_path / "out/sub").mkdir(parents=True)
    (tmp_path / "out/sub/mine.txt").write_text("mine")
    result = unpack.extract(NORMAL, tmp_path / "out", force=True)
    assert not (tmp_path / "out/sub").exists()
    assert (tmp_path / "out/include/linux/types.h").is_file()
    assert result.incidents == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("force", [False, True])
def test_a_tree_this_tool_did_not_unpack_is_never_replaced(tmp_path: Path, force: bool) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out/mine.txt").write_text("mine")
    refused(tmp_path, NORMAL, UsageError, "not a tree this tool unpacked", force=force)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


def test_a_stamp_that_is_a_link_is_no_stamp(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / unpack.STAMP).symlink_to(outside / "victim.txt")
    refused(tmp_path, NORMAL, UsageError, "not a tree this tool unpacked", force=True)


def test_an_archive_member_cannot_take_the_stamps_name(tmp_path: Path) -> None:
    refused(tmp_path, archive(file("./ok.h", b"x"), file(f"./{unpack.STAMP}", b'{"sha256": "forged"}')),
            UnsafeArchive, "stamp")


def test_force_keeps_old_tree_when_new_archive_fails(tmp_path: Path) -> None:
    unpack.extract(NORMAL, tmp_path / "out")
    (tmp_path / "out/extra.txt").write_text("kept")
    refused(tmp_path, BIG[: len(BIG) // 2], Damaged, force=True)
    refused(tmp_path, archive(file("./ok.h", b"fine"), file("./../x", b"bad")), UnsafeArchive, "./../x", force=True)
    assert (tmp_path / "out/extra.txt").read_text() == "kept"


def test_empty_directory_target_is_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    unpack.extract(NORMAL, tmp_path / "out")
    assert (tmp_path / "out/include/linux/types.h").is_file()


@pytest.mark.parametrize("force", [False, True])
def test_target_symlink_is_refused(tmp_path: Path, outside: Path, force: bool) -> None:
    (tmp_path / "out").symlink_to(outside)
    refused(tmp_path, NORMAL, UsageError, "symbolic link", force=force)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_dangling_target_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    refused(tmp_path, NORMAL, UsageError, "symbolic link", force=True)
    assert not (tmp_path / "nowhere").exists()


def test_target_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    refused(tmp_path, NORMAL, UsageError, "not a directory", force=True)


def test_missing_parent_is_refused(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="missing"):
        unpack.extract(NORMAL, tmp_path / "missing" / "out")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["sub/..", "/"])
def test_unusable_target_names_are_refused(tmp_path: Path, target: str) -> None:
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="not usable"):
        unpack.extract(NORMAL, tmp_path / target)
    assert snapshot(tmp_path) == before


def test_negative_limits_are_usage_errors(tmp_path: Path) -> None:
    refused(tmp_path, NORMAL, UsageError, "negative", max_bytes=-1)
