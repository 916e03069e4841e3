"""Class 3 (tar): one walker for listing, unpacking and member lookup, linear in members, metadata
capped (extract_ikheaders/tarwalk.py). Each input is run through the real CLI under hard limits:
listing (-l), unpacking (-o) and --json must end in a one-line refusal, exit 3; --info, which only
looks up the release in the archive (there is no banner), reports it unknown."""

from __future__ import annotations

import io
import lzma
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_archives import directory, file, hardlink, member, symlink, tar

from extract_ikheaders.archive import tarwalk, unpack
from extract_ikheaders.errors import Damaged
from hostile.inputs import declared_pax, global_pax, pax_chain
from hostile.limited import run

ACTIONS = {"list": ["-l"], "unpack": ["-o", "out"], "info": ["--info"], "json": ["--json", "-o", "out"]}
BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pax-chain-100k": (lambda: pax_chain(100_000), "more than 16 extended headers before one member"),
    "pax-header-256MiB": (lambda: declared_pax(256 << 20), "extended header of 268,435,456 bytes"),
    "global-pax-2000": (lambda: global_pax(2000), "global extended headers of more than 65,536 bytes"),
}


@pytest.mark.slow
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("bomb", BOMBS)
def test_metadata_bombs_are_refused(tmp_path: Path, bomb: str, action: str) -> None:
    build, message = BOMBS[bomb]
    image = tmp_path / "bomb.tar.xz"
    image.write_bytes(build())
    result = run(*ACTIONS[action], image, cwd=tmp_path)
    assert "Traceback" not in result.err
    assert not (tmp_path / "out").exists()
    if action == "info":  # it reads only the release from the archive: unknown, the rest is reported
        assert result.code == 0 and "release:  unknown" in result.out, (result.code, result.err)
        return
    assert result.code == 3, (result.code, result.err)
    assert message in result.err


def test_a_short_pax_chain_is_a_normal_archive() -> None:
    names = [m.name for m in unpack.list_members(pax_chain(16))]
    assert names == ["include", "include/generated/utsrelease.h"]
    with pytest.raises(Exception, match="more than 16 extended headers"):
        unpack.list_members(pax_chain(17))


def _tarfile_view(data: bytes) -> list[tuple[object, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        return [(m.name, m.type, m.size, m.linkname, m.mtime, m.mode) for m in archive]


def _walker_view(data: bytes) -> list[tuple[object, ...]]:
    walker = tarwalk.TarWalker(io.BytesIO(data).read)
    return [(m.name, m.type, m.size, m.linkname, m.mtime, m.mode) for m in walker]


LONG = "include/" + "d" * 120 + "/" + "f" * 130 + ".h"
ARCHIVES = {
    "gnu": lambda: tar([directory("./"), file("./" + LONG, b"long\n"), symlink("./s", LONG),
                        hardlink("./h", "./" + LONG), directory("./include/" + "e" * 140)], tarfile.GNU_FORMAT),
    "pax": lambda: tar([directory("./"), member("./p", data=b"x" * 600, pax={"path": "./include/" + "p" * 200,
                                                                               "mtime": "1.5"}),
                        symlink("./q", "t" * 150)], tarfile.PAX_FORMAT),
    "ustar-prefix": lambda: tar([file("./" + "a" * 90 + "/" + "b" * 90, b"prefix\n")], tarfile.USTAR_FORMAT),
}


@pytest.mark.parametrize("name", ARCHIVES)
def test_the_walker_reads_what_tarfile_reads(name: str) -> None:
    data = ARCHIVES[name]()
    assert _walker_view(data) == _tarfile_view(data)


def test_global_pax_records_apply_to_later_members() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uname": "kbuild"}) as out:
        for entry in (file("./a", b"a"), file("./b", b"b")):
            out.addfile(entry[0], io.BytesIO(entry[1]))
    data = raw.getvalue()
    walker = tarwalk.TarWalker(io.BytesIO(data).read)
    assert [(m.name, m.uname) for m in walker] == [("./a", "kbuild"), ("./b", "kbuild")]
    assert walker.complete


def test_member_lookup_stops_at_the_member() -> None:
    body = b"".join(tarfile.TarInfo(f"./f{i}").tobuf(tarfile.GNU_FORMAT) for i in range(10))
    want = tarfile.TarInfo("./include/generated/utsrelease.h")
    want.size = 5
    tail = want.tobuf(tarfile.GNU_FORMAT) + b"6.1.0".ljust(512, b"\0") + b"garbage that is no header".ljust(512, b"!")
    archive = lzma.compress(body + tail)
    name = "include/generated/utsrelease.h"
    assert unpack.read_members(archive, (name,), 100) == {name: b"6.1.0"}
    assert unpack.read_members(archive, (name,), 4) == {}


def test_several_members_are_read_in_one_walk() -> None:
    """The walk stops at the last member asked for (the garbage after it is never read); one that is
    absent, or larger than the limit, is left out."""
    def member(name: str, data: bytes) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info.tobuf(tarfile.GNU_FORMAT) + data.ljust(512, b"\0")

    tar = (member("./include/generated/autoconf.h", b"#define CONFIG_X 1\n")
           + member("./include/generated/utsrelease.h", b"6.1.0"))
    both = {"include/generated/autoconf.h": b"#define CONFIG_X 1\n", "include/generated/utsrelease.h": b"6.1.0"}
    names = ("include/generated/utsrelease.h", "include/generated/autoconf.h")
    assert unpack.read_members(lzma.compress(tar + b"no header".ljust(512, b"!")), names, 100) == both
    whole = lzma.compress(tar + b"\0" * 1024)
    assert unpack.read_members(whole, (*names, "include/absent.h"), 100) == both
    assert unpack.read_members(whole, names, 10) == {"include/generated/utsrelease.h": b"6.1.0"}


def test_listing_honours_the_member_limit(tmp_path: Path) -> None:
    """-l took the default limit whatever --max-members said (bench/hostile.py's 10·n row showed it)."""
    from hostile.inputs import tar_members

    image = tmp_path / "many.tar.xz"
    image.write_bytes(tar_members(300))
    refused = run("-l", "--max-members", "100", image, cwd=tmp_path)
    assert refused.code == 3 and "more than 100 members" in refused.err
    listed = run("-l", "--max-members", "1000", image, cwd=tmp_path)
    assert listed.code == 0, listed.err
    with tarfile.open(image) as tar:
        expected = [m.name + "/" if m.isdir() else m.name for m in tar.getmembers()]
    assert listed.out.splitlines() == expected and expected[-1] == "./include/f299.h"


def _negative_size_pax() -> bytes:
    """A pax header whose base-256 size field says -1 (found by atheris, carve: OverflowError)."""
    block = bytearray(tarfile.TarInfo("././@PaxHeader").tobuf(tarfile.USTAR_FORMAT))
    block[156:157] = tarfile.XHDTYPE
    block[124:136] = b"\xff" * 12  # base-256, negative
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + bytes(1024)


def test_a_metadata_header_of_negative_size() -> None:
    raw = _negative_size_pax()
    assert list(tarwalk.names_at_start(raw)) == []
    with pytest.raises(tarwalk.BadTar, match="negative size -1"):
        list(tarwalk.TarWalker(io.BytesIO(raw).read))
    with pytest.raises(Damaged, match="negative size"):
        unpack.list_members(lzma.compress(raw))
