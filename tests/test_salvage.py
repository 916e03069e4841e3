"""--salvage: from a damaged archive, the members that decoded completely, each equal to the
intact archive's, and a report of what was lost; still exit 3."""

from __future__ import annotations

import io
import lzma
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import Corpus, run_cli


def intact_members(archive: bytes) -> dict[str, bytes]:
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz") as tar:
        for info in tar:
            if info.isfile():
                data = tar.extractfile(info)
                assert data is not None
                members[info.name.removeprefix("./")] = data.read()
    return members


def plain_tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name != ".extract-ikheaders.json"}


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_salvage_of_a_truncated_archive_in_vmlinux(corpus: Corpus, tmp_path: Path, keep: float) -> None:
    vmlinux = corpus.file("k61y", "vmlinux")
    archive = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    report = run_cli("--json", "-a", "/dev/null", vmlinux).json
    start, size = report["archive"]["offset"], report["archive"]["size"]
    damaged = tmp_path / "vmlinux"
    shutil.copyfile(vmlinux, damaged)
    with damaged.open("r+b") as f:  # the archive is cut: the rest of it is zeros
        f.seek(start + int(size * keep))
        f.write(b"\0" * (size - int(size * keep)))
    out = tmp_path / "out"
    plain = run_cli("-o", out, damaged)
    assert plain.code == 3 and not out.exists()
    run = run_cli("--salvage", "-o", out, damaged)
    assert run.code == 3, run.stderr
    assert "salvaged" in run.stderr and "lost:" in run.stderr
    got, intact = files_under(out), intact_members(archive)
    assert 100 < len(got) < len(intact)
    for name, data in got.items():
        assert intact[name] == data, name  # every salvaged member is exactly the intact one
    order = list(intact)
    assert set(order[: len(got)]) == got.keys()  # a prefix of the archive's files
    lost = run.stderr.split("lost: ")[1]
    if " (cut off)" in lost:  # the member being written when the trustworthy data ran out
        assert lost.split(" (cut off)")[0] == order[len(got)]
    else:  # the data ran out in a header: the last whole member is named
        assert lost.startswith("every member after member ")
        named = lost.removeprefix("every member after member ").split(": ")[0]
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz") as tar:
            every = [info.name.removeprefix("./") for info in tar]
        assert every.index(order[len(got) - 1]) <= every.index(named) < every.index(order[len(got)])


def test_salvage_of_a_plain_archive_cut_in_half(tmp_path: Path) -> None:
    files = {f"./include/linux/h{i:03}.h": (b"#define X%d %d\n" % (i, i)) * (50 + i) for i in range(200)}
    archive = lzma.compress(plain_tar(files))
    half = tmp_path / "half.tar.xz"
    half.write_bytes(archive[: len(archive) // 2])
    run = run_cli("--salvage", "-o", tmp_path / "out", half)
    assert run.code == 3 and "salvaged" in run.stderr
    got = files_under(tmp_path / "out")
    assert got and all(files[f"./{name}"] == data for name, data in got.items())
    assert len(got) < len(files)


@pytest.mark.parametrize("where", ["inside member data", "between members"])
def test_salvage_never_hides_a_tar_cut_inside_a_whole_xz_stream(tmp_path: Path, where: str) -> None:
    """The xz stream is complete and sound; only the tar in it is short. Plain extraction refuses it,
    --salvage keeps the whole members, names the loss, and still exits 3."""
    files = {f"./include/linux/h{i:02}.h": b"#define X%d %d\n" % (i, i) * 300 for i in range(50)}
    tar_bytes = plain_tar(files)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = tar.getmember("./include/linux/h25.h")
    cut = member.offset_data + 700 if where == "inside member data" else member.offset
    image = tmp_path / "cut.tar.xz"
    image.write_bytes(lzma.compress(tar_bytes[:cut]))
    plain = run_cli("-o", tmp_path / "plain", image)
    assert plain.code == 3 and not (tmp_path / "plain").exists()
    assert plain.stderr.count("\n") == 1 and str(image) in plain.stderr
    run = run_cli("--salvage", "-o", tmp_path / "out", image)
    assert run.code == 3, run.stderr
    got = files_under(tmp_path / "out")
    assert got == {name.removeprefix("./"): data for name, data in list(files.items())[:25]}
    lost = ("lost: include/linux/h25.h (cut off) and every member after it" if where == "inside member data"
            else "lost: every member after member include/linux/h24.h")
    assert lost in run.stderr and "salvaged 25 members" in run.stderr
