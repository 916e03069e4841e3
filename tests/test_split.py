"""makedumpfile --split dump sets: parts given together read as one dump and reported as one input;
a part alone read for what it has, saying which pfns the other parts hold; mixed or overlapping
parts refused. Synthetic sets (dump_builders.split_kdump) and real ones made by makedumpfile from
the corpus' kdump captures."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Corpus, run_cli
from dump_builders import PAGE, big_archive, kdump_file, memory_image, pages_of, split_kdump, vmcoreinfo

from extract_ikheaders import pipeline
from extract_ikheaders.cli import records
from extract_ikheaders.dumps import split
from extract_ikheaders.errors import UsageError

ARCHIVE = big_archive(6 * PAGE, seed=11, release="6.1.9-split")
SHA = hashlib.sha256(ARCHIVE).hexdigest()
BASE_PFN = 0x100
# The archive starts 3 bytes before the boundary of pfn 0x102: its xz magic straddles two parts.
ARCHIVE_AT = 2 * PAGE - 3
BOUNDS = (0, BASE_PFN + 2, BASE_PFN + 5, BASE_PFN + 16)


def _write_parts(tmp_path: Path, bounds: tuple[int, ...] = BOUNDS, timestamp: int = 1_700_000_000,
                 prefix: str = "vmcore") -> list[Path]:
    pages = pages_of(memory_image(16 * PAGE, {ARCHIVE_AT: ARCHIVE}), base_pfn=BASE_PFN)
    paths = []
    for i, data in enumerate(split_kdump(pages, bounds, info=vmcoreinfo("6.1.9-split"), timestamp=timestamp), 1):
        path = tmp_path / f"{prefix}_{i}"
        path.write_bytes(data)
        paths.append(path)
    return paths


# Synthetic sets ------------------------------------------------------------------------------


def test_parts_in_any_order_give_the_archive_as_one_input(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    out = tmp_path / "out.tar.xz"
    run = run_cli("-a", out, parts[2], parts[0], parts[1])
    assert run.code == 0, run.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SHA


def test_json_of_a_set_is_one_record_naming_every_part(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("--json", "-a", "/dev/null", parts[1], parts[2], parts[0])
    assert run.code == 0, run.stderr
    (record,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert record["parts"] == [str(p) for p in parts]  # pfn order, whatever the order given
    assert record["input"] == " + ".join(str(p) for p in parts)
    assert record["schema"] == records.SCHEMA_VERSION
    assert record["archive"]["sha256"] == SHA
    assert record["archive"]["offset"] == BASE_PFN * PAGE + ARCHIVE_AT
    assert record["layers"][0]["format"] == "kdump split set"
    assert "makedumpfile --split set of 3 parts" in record["layers"][0]["detail"]
    assert record["release"] == "6.1.9-split"


def test_unpack_of_a_set_prints_one_directory(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("-o", tmp_path / "tree", *parts)
    assert run.code == 0, run.stderr
    assert run.stdout.decode().splitlines() == [str(tmp_path / "tree")]
    assert len([line for line in run.stderr.splitlines() if "members" in line]) == 1


def test_info_of_a_whole_set(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("--info", parts[2], parts[1], parts[0])
    assert run.code == 0, run.stderr
    lines = run.stdout.decode().splitlines()
    assert lines[0] == "image:    " + " + ".join(str(p) for p in parts)
    assert "split:    3 parts of a makedumpfile --split dump, whole (pfns 0x0-0x10f)" in lines
    assert any(line.startswith("headers:  in the dump's memory") and SHA in line for line in lines)


def test_info_json_of_a_lone_part_says_what_is_missing(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("--info", "--json", parts[1])
    record = run.json
    assert record["split"] == {"parts": [{"path": str(parts[1]), "start_pfn": 0x102, "end_pfn": 0x105}],
                               "max_mapnr": 0x110,
                               "missing": [{"start_pfn": 0, "end_pfn": 0x102},
                                           {"start_pfn": 0x105, "end_pfn": 0x110}]}
    assert "parts" not in record  # one file: not a set


def test_lone_part_failure_names_the_missing_pfns(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("-a", tmp_path / "out", parts[1])  # holds the archive's middle only
    assert run.code in (1, 3)
    assert run.stderr.count("\n") == 1
    assert ("this file is one part of a makedumpfile --split dump and holds only its pfns 0x102-0x104 of 0x110; "
            "the other parts are needed for the rest") in run.stderr
    human = run_cli("--info", parts[1]).stdout.decode()
    assert ("split:    one part of a makedumpfile --split dump; pfns 0x0-0x101, 0x105-0x10f (of 0x0-0x10f) are in "
            "parts not given, which are needed for the rest") in human


def test_set_with_a_part_missing_is_damaged_and_says_so(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("-a", tmp_path / "out", parts[1], parts[0])  # the archive runs on into the third
    assert run.code == 3, run.stderr
    assert run.stderr.startswith(f"extract-ikheaders: {parts[0]} + {parts[1]}: ")
    assert "pfn 0x105-0x10f: in a part of the makedumpfile --split dump that was not given" in run.stderr
    assert "the given parts of this makedumpfile --split dump lack pfns 0x105-0x10f (of 0x110)" in run.stderr
    record = run_cli("--json", "-a", tmp_path / "out", parts[0], parts[1]).json
    assert record["parts"] == [str(parts[0]), str(parts[1])] and record["error"]["exit"] == 3
    assert record["error"]["message"] == run.stderr.removeprefix("extract-ikheaders: ").rstrip("\n")


def test_parts_of_different_dumps_are_refused(tmp_path: Path) -> None:
    first = _write_parts(tmp_path, prefix="a")
    second = _write_parts(tmp_path, timestamp=1_700_000_999, prefix="b")
    run = run_cli("--json", "-a", "/dev/null", first[0], second[1], first[2])
    assert run.code == 2
    reports = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(reports) == 3 and {r["error"]["kind"] for r in reports} == {"usage"}
    assert (f"{second[1]}: is a part of another makedumpfile --split dump than {first[0]} "
            f"(their headers differ: timestamp)") in run.stderr


def test_whole_sets_of_two_dumps_are_two_inputs(tmp_path: Path) -> None:
    first = _write_parts(tmp_path, prefix="a")
    second = _write_parts(tmp_path, timestamp=1_700_000_999, prefix="b")
    run = run_cli("--json", "--info", second[2], *first, second[0], second[1])
    assert run.code == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["parts"] for r in records] == [[str(p) for p in second], [str(p) for p in first]]
    assert {r["headers"]["sha256"] for r in records} == {SHA}


def test_overlapping_parts_are_refused(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    pages = pages_of(memory_image(16 * PAGE, {ARCHIVE_AT: ARCHIVE}), base_pfn=BASE_PFN)
    overlapping = tmp_path / "overlapping"
    overlapping.write_bytes(kdump_file(pages, max_mapnr=0x110, split=(0x104, 0x108), info=vmcoreinfo("6.1.9-split"),
                                       timestamp=1_700_000_000))
    run = run_cli("-a", "/dev/null", parts[0], parts[1], overlapping)
    assert run.code == 2
    assert (f"{overlapping}: its pfns 0x104-0x107 of 0x110 overlap the pfns 0x102-0x104 of 0x110 of {parts[1]}: "
            f"the parts of one dump hold disjoint pfn ranges") in run.stderr


def test_a_part_given_twice_is_refused(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    run = run_cli("-a", "/dev/null", parts[0], parts[1], parts[0])
    assert run.code == 2
    assert f"{parts[0]}: is given twice: give each part of a makedumpfile --split dump once" in run.stderr


def test_range_beyond_the_dump_is_damaged(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    data = bytearray(parts[2].read_bytes())
    data[PAGE + 0x58 : PAGE + 0x60] = (1 << 62).to_bytes(8, "little")  # end_pfn_64
    parts[2].write_bytes(data)
    run = run_cli("--json", "-a", "/dev/null", *parts)
    assert run.code == 3
    assert "does not lie within the dump's 0x110 pfns" in run.stderr
    assert len(run.stdout.splitlines()) == 3


def test_empty_parts_count_for_nothing(tmp_path: Path) -> None:
    # makedumpfile gives the last parts empty ranges when the first splitblock holds every page
    parts = _write_parts(tmp_path, bounds=(0, 0x110, 0x110, 0x110))
    run = run_cli("--json", "-a", "/dev/null", parts[2], parts[1], parts[0])
    assert run.code == 0, run.stderr
    assert run.json["archive"]["sha256"] == SHA and run.json["parts"][0] == str(parts[0])


def test_memory_reads_across_parts_and_explains_holes(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    bufs = [p.read_bytes() for p in (parts[0], parts[2])]
    mem = split.open_set(bufs, [str(parts[0]), str(parts[2])])
    assert mem.missing == [(0x102, 0x105)]
    start = BASE_PFN * PAGE
    assert list(mem.ranges()) == [(start, 0x102 * PAGE), (0x105 * PAGE, 0x110 * PAGE)]
    assert mem.read_some(start + ARCHIVE_AT, 3) == ARCHIVE[:3]
    assert mem.read_some(start + ARCHIVE_AT, 10) == ARCHIVE[:3]  # stops where the missing part begins
    gap = mem.gap(0x102 * PAGE)
    assert (gap.start, gap.end) == (0x102 * PAGE, 0x105 * PAGE)
    assert "not given" in gap.why
    whole = split.open_set([p.read_bytes() for p in parts], [str(p) for p in parts])
    assert whole.find(ARCHIVE[:6], 0, 1 << 40) == start + ARCHIVE_AT  # the magic straddles two parts
    assert whole.read(start + ARCHIVE_AT, len(ARCHIVE)) == ARCHIVE


def test_open_set_refuses_a_whole_dump(tmp_path: Path) -> None:
    whole = kdump_file(pages_of(memory_image(4 * PAGE, {})))
    with pytest.raises(UsageError, match="a whole kdump file"):
        split.open_set([whole, whole], ["a", "b"])


def test_grouping_leaves_other_inputs_alone(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path)
    other = tmp_path / "other"
    other.write_bytes(b"not a dump")
    grouped = pipeline.group_inputs([str(other), str(parts[1]), "missing", str(parts[0]), "-", str(parts[2]),
                                     str(other)])
    assert grouped == (str(other), " + ".join(map(str, parts)), "missing", "-", str(other))
    assert pipeline.group_inputs([str(parts[0])]) == (str(parts[0]),)


# Real sets: makedumpfile --split of the corpus' kdump captures -------------------------------


def _makedumpfile_split(vmcore: Path, dest: Path, *options: str, prefix: str = "part") -> list[Path]:
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile not installed")
    parts = [dest / f"{prefix}{i}" for i in (1, 2, 3)]
    # --splitblock-size (KiB): the default 1 GiB block holds all of the guests' RAM, which would put
    # every page in the first part
    subprocess.run(["makedumpfile", "--split", "--splitblock-size", "4096", *options, str(vmcore), *map(str, parts)],
                   check=True, capture_output=True, timeout=300)
    return parts


def _ranges(parts: list[Path]) -> list[tuple[int, int]]:
    name = pipeline.group_inputs([str(p) for p in parts])[0]
    report = pipeline.split_report(name)
    assert report is not None
    return [(p["start_pfn"], p["end_pfn"]) for p in report["parts"]]


@pytest.mark.parametrize("codec", ["-c", "-l"])
def test_real_split_kdump_gives_the_archive(corpus: Corpus, tmp_path: Path, codec: str) -> None:
    kdump = corpus.manifest["kdump"]
    parts = _makedumpfile_split(corpus.root / kdump["dir"] / "vmcore", tmp_path, codec, "-d", "31")
    assert all(start < end for start, end in _ranges(parts))  # three real ranges
    shuffled = random.Random(5).sample(parts, 3)
    out = tmp_path / "out.tar.xz"
    run = run_cli("-a", out, *shuffled)
    assert run.code == 0, run.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == kdump["ground_truth"]["sha256"]
    record = run_cli("--json", "--info", *shuffled).json
    assert record["parts"] == [str(p) for p in parts]
    assert record["headers"]["sha256"] == kdump["ground_truth"]["sha256"]
    assert record["split"]["missing"] == [] and record["release"] == kdump["ground_truth"]["release"]


def test_real_split_kdump_symbols_equal_the_whole_dumps(corpus: Corpus, tmp_path: Path) -> None:
    kdump = corpus.manifest["kdump"]
    kdir = corpus.root / kdump["dir"]
    parts = _makedumpfile_split(kdir / "vmcore", tmp_path, "-c", "-d", "31")
    run = run_cli("--symbols", tmp_path / "split.map", parts[1], parts[0], parts[2])
    assert run.code == 0, run.stderr
    whole = kdir / kdump["makedumpfile_outputs"]["kdump-zlib-d31"]
    assert run_cli("--symbols", tmp_path / "whole.map", whole).code == 0
    assert (tmp_path / "split.map").read_bytes() == (tmp_path / "whole.map").read_bytes()
    assert len((tmp_path / "split.map").read_bytes().splitlines()) > 10000


def test_real_split_kdump_missing_part_is_named(corpus: Corpus, tmp_path: Path) -> None:
    kdump = corpus.manifest["kdump"]
    parts = _makedumpfile_split(corpus.root / kdump["dir"] / "vmcore", tmp_path, "-c", "-d", "31")
    offset = run_cli("--json", "-a", "/dev/null", *parts).json["archive"]["offset"]
    holder = next(i for i, (start, end) in enumerate(_ranges(parts)) if start <= offset // PAGE < end)
    given = [p for i, p in enumerate(parts) if i != holder]
    run = run_cli("-a", tmp_path / "out", *given)
    assert run.code in (1, 3) and run.stderr.count("\n") == 1
    assert "the given parts of this makedumpfile --split dump lack pfns" in run.stderr
    assert "the parts holding them are needed too" in run.stderr
    lone = run_cli("-a", tmp_path / "out", parts[holder - 1] if holder else parts[1])
    assert lone.code in (1, 3) and "the other parts are needed for the rest" in lone.stderr


def test_real_split_parts_of_two_runs_are_refused(corpus: Corpus, tmp_path: Path) -> None:
    vmcore = corpus.root / corpus.manifest["kdump"]["dir"] / "vmcore"
    zlib_parts = _makedumpfile_split(vmcore, tmp_path, "-c", "-d", "31", prefix="zlib")
    lzo_parts = _makedumpfile_split(vmcore, tmp_path, "-l", "-d", "31", prefix="lzo")
    run = run_cli("-a", tmp_path / "out", zlib_parts[0], lzo_parts[1], zlib_parts[2])
    assert run.code == 2
    assert f"{lzo_parts[1]}: is a part of another makedumpfile --split dump than {zlib_parts[0]}" in run.stderr


def test_real_split_kdump_of_a_loaded_module(corpus: Corpus, tmp_path: Path) -> None:
    capture = corpus.manifest["kdump_m"]["kdump-6.1-m"]
    parts = _makedumpfile_split(corpus.root / capture["dir"] / "vmcore", tmp_path, "-l", "-d", "1")
    out = tmp_path / "out.tar.xz"
    run = run_cli("--json", "-a", out, parts[2], parts[0], parts[1])
    assert run.code == 0, run.stderr
    assert run.json["archive"]["method"] == "pagewalk"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == capture["ground_truth"]["sha256"]
