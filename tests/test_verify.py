"""How much of an archive is checked: by default every block is decoded (content); --no-verify
checks the xz structure only (xzstream.check_structure), for triage. Which one ran is in the
report (`archive.verified`, `headers.verified`)."""

from __future__ import annotations

import json
import lzma
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import headers_archive, incbin_object
from builders_bzimage import bzimage, compress, kernel_like, require
from conftest import Corpus, check_records, corpus_params, run_cli
from test_config import _inputs as config_inputs
from test_dumps import corpus_dumps

from extract_ikheaders.archive import xzstream
from extract_ikheaders.cli import records
from extract_ikheaders.errors import Damaged

ARCHIVE = headers_archive()


def _multiblock(data: bytes, tmp_path: Path) -> bytes:
    """`data` as xz with several blocks, each header stating its sizes (xz -T2 --block-size)."""
    require("xz")
    raw = tmp_path / "tar"
    raw.write_bytes(data)
    subprocess.run(["xz", "-kf", "-T2", "--block-size=4096", str(raw)], check=True)
    return (tmp_path / "tar.xz").read_bytes()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_a_sound_archive_passes_with_its_index_read() -> None:
    info = xzstream.check_structure(ARCHIVE + b"\0" * 8)  # stream padding is allowed
    assert (info.end, info.blocks, info.check) == (len(ARCHIVE), 1, "crc64")


def test_every_block_header_is_checked_against_the_index(tmp_path: Path) -> None:
    tar = lzma.decompress(ARCHIVE) * 40  # long enough for several 4 KiB blocks
    data = _multiblock(tar, tmp_path)
    info = xzstream.check_structure(data, 0x1000)
    assert info.blocks == len(info.records) > 2 and info.uncompressed == len(tar)
    second = xzstream.HEADER_SIZE + (info.records[0][0] + 3) // 4 * 4
    with pytest.raises(Damaged, match=rf"xz block 1 at offset {0x1000 + second:#x}: block header CRC32 mismatch"):
        xzstream.check_structure(_flip(data, second + 3), 0x1000)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda a: a[:-100], "does not end with a footer and index"),  # cut short
    (lambda a: a + b"junk", "does not end with a footer and index"),  # something after it
    (lambda a: a[1:], "no valid xz stream header"),  # shifted
    (lambda a: _flip(a, 13), "block 0 at offset 0xc: block header CRC32 mismatch"),
    (lambda a: _flip(a, len(a) - 20), "does not end with a footer and index"),  # the index
    (lambda a: _flip(a, len(a) - 3), "does not end with a footer and index"),  # the footer's flags
])
def test_a_broken_structure_is_damaged(damage, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Damaged, match=message):
        xzstream.check_structure(damage(ARCHIVE))


def test_a_flip_inside_the_compressed_data_needs_decoding_to_be_seen() -> None:
    """What --no-verify gives up: the structure is intact, the content is not."""
    flipped = _flip(ARCHIVE, len(ARCHIVE) // 2)
    assert xzstream.check_structure(flipped).end == len(flipped)
    with pytest.raises(Damaged, match="corrupt xz data near offset"):
        xzstream.verify(flipped)


def test_the_first_tar_header_is_decoded() -> None:
    not_tar = lzma.compress(b"\x01" * 4096, format=lzma.FORMAT_XZ)
    with pytest.raises(Damaged, match="does not begin with a tar header"):
        xzstream.check_structure(not_tar)


def test_archive_and_info_say_what_was_checked(vmlinux: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tar.xz"
    for flag, verified in (((), "content"), (("--no-verify",), "structure")):
        run = run_cli("--json", *flag, "-a", out, vmlinux)
        assert (run.code, check_records(run.stdout)[0]["archive"]["verified"]) == (0, verified), run.stderr
        assert out.read_bytes() == ARCHIVE
        info = run_cli("--json", *flag, "--info", vmlinux)
        assert check_records(info.stdout)[0]["headers"]["verified"] == verified
        text = run_cli(*flag, "--info", vmlinux).stdout.decode()
        assert ("xz structure checked, not decoded" in text) == (verified == "structure")


def test_unpack_and_list_verify_by_decoding_once(vmlinux: Path, tmp_path: Path) -> None:
    for args in (("-o", tmp_path / "tree"), ("-l",)):
        run = run_cli("--json", *args, vmlinux)
        assert (run.code, check_records(run.stdout)[0]["archive"]["verified"]) == (0, "content"), run.stderr


@pytest.mark.parametrize("args", [(), ("-l",), ("--symbols", "-")])
def test_no_verify_goes_with_archive_or_info(vmlinux: Path, args: tuple[str, ...]) -> None:
    run = run_cli("--no-verify", *args, vmlinux)
    assert run.code == 2 and run.stderr.count("\n") == 1
    assert "--no-verify" in run.stderr and ("--archive or --info" in run.stderr or "cannot be combined" in run.stderr)


def test_a_truncated_archive_is_caught_without_decoding(tmp_path: Path) -> None:
    """The symbols frame a stream cut short: the structure check alone says so (exit 3)."""
    image = incbin_object(tmp_path, ARCHIVE[:-64])
    run = run_cli("--json", "--no-verify", "-a", tmp_path / "out", image)
    assert run.code == 3 and "footer and index" in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()


def test_a_streamed_image_stops_at_the_footer_without_decoding(tmp_path: Path) -> None:
    """The decompressed payload of a bzImage: the carver finds the archive's end from its footer."""
    require("gzip")
    image = tmp_path / "bzImage"
    body = bytearray(kernel_like(256 << 10, seed=3))
    body[150_000 : 150_000 + len(ARCHIVE)] = ARCHIVE
    image.write_bytes(bzimage(compress("gzip", bytes(body))).image)
    out = tmp_path / "out"
    run = run_cli("--json", "--no-verify", "-a", out, image)
    assert run.code == 0, run.stderr
    assert (out.read_bytes(), check_records(run.stdout)[0]["archive"]["verified"]) == (ARCHIVE, "structure")


def _images(corpus: Corpus) -> Iterator[tuple[str, tuple[Path, Path]]]:
    """Every corpus image test_config reads, with its build's archive (beside its .config)."""
    for ident, (image, config) in config_inputs(corpus):
        if not ident.startswith("dump:"):
            yield ident, (image, config.with_name("kheaders_data.tar.xz"))


@pytest.mark.parametrize("case", corpus_params(_images))
def test_no_verify_gives_the_builds_archive(corpus: Corpus, tmp_path: Path, case: tuple[Path, Path]) -> None:
    image, archive = case
    out = tmp_path / "out"
    run = run_cli("--json", "--no-verify", "-a", out, image)
    assert run.code == 0, run.stderr
    assert out.read_bytes() == archive.read_bytes()
    assert check_records(run.stdout)[0]["archive"]["verified"] == "structure"


@pytest.mark.parametrize("dump", corpus_params(lambda c: corpus_dumps(c)[:1]))
def test_a_dump_is_always_decoded(corpus: Corpus, tmp_path: Path, dump: tuple[Path, dict[str, object]]) -> None:
    """A dump's archive is found by decoding it (pages may be scattered): its content is verified."""
    path, truth = dump
    run = run_cli("--json", "--no-verify", "-a", tmp_path / "out", path)
    record = check_records(run.stdout)[0]
    assert (run.code, record["archive"]["verified"], record["archive"]["sha256"]) == (0, "content", truth["sha256"])


def test_json_output_is_one_record(vmlinux: Path) -> None:
    run = run_cli("--json", "--no-verify", "-a", "/dev/null", vmlinux)
    assert len(run.stdout.splitlines()) == 1 and json.loads(run.stdout)["schema"] == records.SCHEMA_VERSION
