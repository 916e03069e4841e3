"""Short, seeded fuzzing of every parser (tests/fuzz_harness.py): only the package's own errors escape.

Each target gets ~200 deterministic hypothesis examples (derandomize=True) built from valid seeds by
bit flips, truncations, insertions and header fields overwritten with extreme values. bench/fuzz/volume.py
drives the same targets for volume, under an address-space limit.
"""

from __future__ import annotations

import traceback
from datetime import timedelta
from pathlib import Path

import pytest
from fuzz_harness import (
    ARCHIVE,
    KINDS,
    TARGETS,
    WIDTHS,
    Mutation,
    apply,
    as_file,
    decode_input,
    extremes,
    run_one,
    seeds_of,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract_ikheaders import pipeline
from extract_ikheaders.errors import Damaged, NotFound

pytestmark = pytest.mark.slow  # a sweep: run by CI and on demand, outside the per-commit suite

EXAMPLES = 200
PER_EXAMPLE_SECONDS = 10.0  # the hang guard; hypothesis's own deadline flags slow (not hung) inputs

mutations = st.lists(
    st.builds(Mutation, kind=st.sampled_from(KINDS), pos=st.integers(0, 2**32 - 1), hot=st.booleans(),
              arg=st.integers(0, 2**32 - 1), width=st.sampled_from(WIDTHS), big=st.booleans()),
    min_size=1, max_size=4)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_only_project_errors_escape(name: str) -> None:
    target = TARGETS[name]
    seeds = seeds_of(name)
    assert seeds, f"no seeds for {name}"

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=timedelta(seconds=5),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=False)
    @given(index=st.integers(0, len(seeds) - 1), edits=mutations, knob=st.integers(0, 2**32 - 1))
    def check(index: int, edits: list[Mutation], knob: int) -> None:
        seed = seeds[index]
        data = apply(seed.data, seed.hot, edits)
        outcome = run_one(target, data, knob, seed.mode, timeout=PER_EXAMPLE_SECONDS)
        if outcome.crash:
            assert outcome.error is not None
            detail = "".join(traceback.format_exception(outcome.error))
            pytest.fail(f"{name}: {type(outcome.error).__name__} escaped on seed {seed.name} (knob {knob}, "
                        f"{len(data)} bytes):\n{detail}")

    check()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_valid_inputs(name: str) -> None:
    """Unmutated seeds must pass through their target cleanly, or the mutations start from nothing."""
    target = TARGETS[name]
    for seed in seeds_of(name):
        outcome = run_one(target, seed.data, 0, seed.mode)
        error = outcome.error
        if name == "api" and isinstance(error, NotFound) and "config" in str(error):
            continue  # these inputs hold headers only; find() succeeded before find_config() said so
        if "bigdict" in seed.name:  # valid xz asking for a 4 GiB dictionary: refused, not allocated
            assert isinstance(error, Damaged) and "limit" in str(error), f"{name}/{seed.name}: {error!r}"
            continue
        assert error is None, f"{name}/{seed.name}: {type(error).__name__}: {error}"


def test_api_seeds_yield_the_archive() -> None:
    for seed in seeds_of("api"):
        if "bigdict" in seed.name:
            continue
        assert pipeline.find(as_file(seed.data)).archive == ARCHIVE, seed.name


def test_mutations_do_what_they_say() -> None:
    data = bytes(range(16))
    assert apply(data, (), [Mutation("flip", 3, False, 1)]) == data[:3] + b"\x01" + data[4:]
    assert apply(data, (), [Mutation("truncate", 5, False, 0)]) == data[:5]
    assert apply(data, (10,), [Mutation("field", 0, True, 14, 4, False)]) == data[:10] + b"\xff\xff\xff\xff" + data[14:]
    assert apply(data, (), [Mutation("set", 20, False, 0xAB)]) == data[:3] + b"\xab" + data[4:]  # 20 % 17
    assert apply(data, (), [Mutation("delete", 2, False, 1)]) == data[:2] + data[4:]
    assert extremes(2, 16)[-5:] == [16, 15, 17, 32, 8]
    assert len(apply(data, (), [Mutation("insert", 0, False, 3)])) == 16 + 4


def test_a_crash_is_reported_as_one() -> None:
    """The oracle itself: an exception outside the contract is a crash, an allowed one is not."""
    target = TARGETS["markers"]
    assert not run_one(target, b"IKHD_ST" + ARCHIVE[:100], 0, "").crash
    broken = TARGETS["codecs"]
    outcome = run_one(broken, b"", 0, "no-such-codec")
    assert outcome.crash and isinstance(outcome.error, ValueError)
    damaged = run_one(broken, b"\x1f\x8b\x08\0" + bytes(20), 0, "gzip")
    assert not damaged.crash and isinstance(damaged.error, Damaged)


SAVED = Path(__file__).parent / "fuzz_saved"


def _saved_inputs() -> list[tuple[str, Path]]:
    return [(folder.name, path) for folder in sorted(SAVED.iterdir()) if folder.is_dir()
            for path in sorted(folder.iterdir())] if SAVED.is_dir() else []


def test_every_target_has_saved_inputs() -> None:
    """bench/fuzz/atheris_run.py --save keeps a sample of what coverage-guided fuzzing grew."""
    assert {name for name, _ in _saved_inputs()} == set(TARGETS)


@pytest.mark.parametrize(("name", "path"), _saved_inputs(), ids=[f"{n}/{p.name}" for n, p in _saved_inputs()])
def test_saved_fuzz_inputs_raise_only_project_errors(name: str, path: Path) -> None:
    mode, knob, data = decode_input(name, path.read_bytes())
    outcome = run_one(TARGETS[name], data, knob, mode, timeout=PER_EXAMPLE_SECONDS)
    assert not outcome.crash, f"{name}/{path.name}: {outcome.error!r}"
