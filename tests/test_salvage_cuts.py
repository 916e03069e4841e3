"""--salvage at many cut points: what is kept is exactly the archive's own members up to the
damage, and what is lost is named (the member cut off, or every member after the last whole one).

The oracle is independent of the salvage code: a plain cut of the compressed archive decodes to an
exact prefix (liblzma's output from a prefix of its input), and the intact tar says where every
member's header and data lie in the decoded bytes.
"""

from __future__ import annotations

import io
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Corpus

from extract_ikheaders.archive import unpack

pytestmark = pytest.mark.slow  # a sweep: run by CI and on demand, outside the per-commit suite

# An LZMA2 chunk decodes to at most 2 MiB: a damaged chunk costs at most that much before the damage.
CHUNK_OUTPUT = 2 << 20


@dataclass(frozen=True)
class Layout:
    """Where each member of an intact tar lies: (name, header offset, data offset, data end, is file)."""

    members: tuple[tuple[str, int, int, int, bool], ...]
    files: dict[str, bytes]

    @classmethod
    def of(cls, tar_bytes: bytes) -> Layout:
        members, files = [], {}
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if not name or name == ".":
                    continue
                end = info.offset_data + (info.size if info.isreg() else 0)
                members.append((name, info.offset, info.offset_data, end, info.isreg()))
                if info.isreg():
                    data = tar.extractfile(info)
                    assert data is not None
                    files[name] = data.read()
        return cls(tuple(members), files)

    def expected(self, decoded: int) -> tuple[dict[str, bytes], str]:
        """The files salvage must keep when `decoded` bytes of the tar are trustworthy, and the start
        of what it must say was lost."""
        kept = [m for m in self.members if m[3] <= decoded]
        assert [m[0] for m in kept] == [m[0] for m in self.members[: len(kept)]]  # always a prefix
        files = {m[0]: self.files[m[0]] for m in kept if m[4]}
        following = self.members[len(kept)] if len(kept) < len(self.members) else None
        if following is not None and following[4] and following[2] <= decoded:
            return files, f"{following[0]} (cut off) and every member after it"
        last = f"member {kept[-1][0]}" if kept else "the archive's start"
        return files, f"every member after {last}"


def synthetic_tar() -> bytes:
    """Many small headers, GNU long names, directories: the kernel archive's shape in 3 MB."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in range(40):
            info = tarfile.TarInfo(f"./include/dir{d:02}")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            for i in range(60):
                stem = f"h{i:03}" if i % 7 else "a_rather_long_header_name_" * 5 + str(i)
                data = b"".join(b"#define SYM_%d_%d_%d %d\n" % (d, i, k, k * i) for k in range(20 + (i * d) % 90))
                info = tarfile.TarInfo(f"./include/dir{d:02}/{stem}.h")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def decoded_prefix(archive: bytes) -> int:
    """How many bytes liblzma decodes from a (possibly cut) stream: the exact prefix a plain cut keeps."""
    return len(lzma.LZMADecompressor().decompress(archive))


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name != ".extract-ikheaders.json"}


def salvage(archive: bytes, dest: Path) -> tuple[dict[str, bytes], str]:
    result = unpack.extract(archive, dest, salvage=True)
    assert result.lost is not None, "a damaged archive must report a loss"
    return files_under(dest), result.lost


def check_plain_cut(tar_bytes: bytes, archive: bytes, cut: int, dest: Path) -> None:
    layout = Layout.of(tar_bytes)
    want_files, want_lost = layout.expected(decoded_prefix(archive[:cut]))
    got_files, lost = salvage(archive[:cut], dest)
    assert got_files.keys() == want_files.keys()
    assert got_files == want_files
    assert lost.startswith(want_lost + ": "), (cut, lost, want_lost)


@pytest.fixture(scope="module")
def synthetic() -> tuple[bytes, bytes]:
    tar_bytes = synthetic_tar()
    return tar_bytes, lzma.compress(tar_bytes, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)


@pytest.mark.parametrize("percent", range(5, 100, 5))
def test_plain_cuts_of_a_synthetic_archive(synthetic: tuple[bytes, bytes], percent: int, tmp_path: Path) -> None:
    tar_bytes, archive = synthetic
    check_plain_cut(tar_bytes, archive, len(archive) * percent // 100, tmp_path / "out")


def _recompressed_tar_cut(tar_bytes: bytes, at: int) -> bytes:
    """The tar cut at `at`, in a complete, valid xz stream: only the tar knows it is short."""
    return lzma.compress(tar_bytes[:at], format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)


@pytest.mark.parametrize("where", ["inside a header", "inside member data", "on a block boundary",
                                   "before the end-of-archive block"])
def test_tar_cuts_inside_a_complete_xz_stream(synthetic: tuple[bytes, bytes], where: str, tmp_path: Path) -> None:
    tar_bytes, _ = synthetic
    layout = Layout.of(tar_bytes)
    victim = next(m for m in layout.members[len(layout.members) // 2:] if m[4] and m[3] - m[2] > 600)
    last = layout.members[-1]
    at = {"inside a header": victim[1] + 100, "inside member data": victim[2] + 517,
          "on a block boundary": victim[1], "before the end-of-archive block": (last[3] + 511) // 512 * 512}[where]
    want_files, want_lost = layout.expected(at)
    got_files, lost = salvage(_recompressed_tar_cut(tar_bytes, at), tmp_path / "out")
    assert got_files == want_files
    assert lost.startswith(want_lost + ": ")
    assert len(got_files) == len(want_files) > 100


def test_a_damaged_chunk_gives_nothing_of_itself(synthetic: tuple[bytes, bytes], tmp_path: Path) -> None:
    """Zeros over the second half (then other bytes, as in a vmlinux): nothing decoded from the
    damaged chunk is kept, and no more than one chunk's output before the damage is lost."""
    tar_bytes, archive = synthetic
    cut = len(archive) // 2
    damaged = archive[:cut] + bytes(len(archive) - cut) + b"\x55" * 65536
    check_damaged(tar_bytes, archive, damaged, cut, tmp_path / "out")


def check_damaged(tar_bytes: bytes, archive: bytes, damaged: bytes, cut: int, dest: Path) -> None:
    layout = Layout.of(tar_bytes)
    exact = decoded_prefix(archive[:cut])
    got_files, lost = salvage(damaged, dest)
    assert all(layout.files[name] == data for name, data in got_files.items())
    kept_files, _ = layout.expected(exact)
    floor_files, _ = layout.expected(max(0, exact - CHUNK_OUTPUT))
    assert floor_files.keys() <= got_files.keys() <= kept_files.keys()
    # the salvaged files are a prefix of the archive's, and the loss names where it starts
    names = [m[0] for m in layout.members]
    files = [m[0] for m in layout.members if m[4]]
    first_missing = files[len(got_files)]
    assert set(files[: len(got_files)]) == got_files.keys()
    if "(cut off)" in lost:
        assert lost.startswith(f"{first_missing} (cut off) and every member after it: ")
    else:
        named = lost.removeprefix("every member after member ").split(": ", 1)[0]
        last_kept = files[len(got_files) - 1]
        assert names.index(last_kept) <= names.index(named) < names.index(first_missing), lost


# The corpus' real archive ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(corpus: Corpus) -> tuple[bytes, bytes]:
    archive = corpus.file("k61y", "kheaders_data.tar.xz").read_bytes()
    return lzma.decompress(archive), archive


@pytest.mark.parametrize("percent", range(5, 100, 5))
def test_plain_cuts_of_the_real_archive(real: tuple[bytes, bytes], percent: int, tmp_path: Path) -> None:
    tar_bytes, archive = real
    check_plain_cut(tar_bytes, archive, len(archive) * percent // 100, tmp_path / "out")


@pytest.mark.parametrize("percent", [10, 50, 90])
def test_damaged_chunks_of_the_real_archive(real: tuple[bytes, bytes], percent: int, tmp_path: Path) -> None:
    tar_bytes, archive = real
    cut = len(archive) * percent // 100
    damaged = archive[:cut] + bytes(len(archive) - cut) + b"\x55" * 65536
    check_damaged(tar_bytes, archive, damaged, cut, tmp_path / "out")
