"""The C loops of the byte-plane transforms (_kernels.c) against their numpy twins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store import planes
from ckptstore.store.codecs import Codec
from ckptstore.store.planes import CONTEXTS, Grouping, grouping, join_planes, split_planes
from tests.conftest import require_kernels, restore_bytes
from tests.test_deltas import CONFIG, codecs_of, put_steps


def test_the_c_loops_are_built():
    assert require_kernels().key_counts(bytes([1, 0x85, 2, 0x05]), 2, 1)[5] == 2


def both_ways(function, *args):
    """What ``function`` writes into its last argument, with the C loops and with numpy."""
    *inputs, target = args
    results = []
    for kernels in (require_kernels(), None):
        out = np.array(target)  # a fresh copy of the target for each run
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(planes, "_kernels", kernels)
            function(*inputs, out)
        results.append(out.tobytes())
    return results


def assert_round_trip_agrees(split, join, raw: bytes, whole: int) -> None:
    """``split(raw, out)`` then ``join(planes, out)`` write the same bytes with the C
    loops and with numpy, and give back ``raw``'s whole elements."""
    native, numpy = both_ways(split, raw, np.zeros(whole, np.uint8))
    assert native == numpy
    grouped = np.frombuffer(native, np.uint8).copy()
    native_out, numpy_out = both_ways(join, grouped, np.zeros(whole, np.uint8))
    assert native_out == numpy_out == raw[:whole]


@settings(max_examples=120, deadline=None)
@given(
    width=st.sampled_from([1, 2, 4, 8]),
    n=st.integers(0, 5000),
    delta=st.booleans(),
    group_log=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_c_loops_and_numpy_agree_byte_for_byte(width, n, delta, group_log, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, n * width + 3, dtype=np.uint8)
    base[width - 1 : n * width : width][rng.random(n) < 0.5] &= 0x83  # few keys: groups form
    raw = np.where(rng.random(len(base)) < 0.3, rng.integers(0, 256, len(base)), base)
    raw = raw.astype(np.uint8).tobytes()
    groups = grouping(base.tobytes(), width, group_log) if delta else None
    biases = None
    if groups is not None and rng.random() < 0.5:  # drifts of any size, wrapping
        biases = rng.integers(0, 256, (len(groups.sizes), width), dtype=np.uint8)
        biases = biases.view(f"<u{width}").ravel().astype(planes.UINTS[width])
    whole = len(raw) // width * width  # the planes hold whole elements only
    base_arg = base.tobytes() if delta else None
    assert_round_trip_agrees(
        lambda r, out: split_planes(r, width, out, base_arg, groups, biases),
        lambda p, out: join_planes(p, width, out, base_arg, groups, biases),
        raw,
        whole,
    )


def test_c_loops_check_what_they_are_given():
    kernels = require_kernels()
    base = bytes(range(256)) * 16
    planes_out = np.zeros(len(base), np.uint8)
    with pytest.raises(ValueError, match="width"):
        kernels.split(base, 3, None, None, (), None, planes_out)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.split(base[:10], 4, None, None, (), None, planes_out)
    with pytest.raises(ValueError, match="needs the base"):
        kernels.split(base, 4, None, bytes(CONTEXTS), (1024,), None, planes_out)
    with pytest.raises(ValueError, match="128 bytes"):
        kernels.assemble(planes_out, 4, base, bytes(5), (1024,), None, bytearray(len(base)))
    with pytest.raises(ValueError, match="add up"):
        kernels.assemble(planes_out, 4, base, bytes(CONTEXTS), (1000,), None, bytearray(len(base)))
    with pytest.raises(ValueError, match="no group"):
        kernels.assemble(planes_out, 4, base, bytes([1]) * CONTEXTS, (1024,), None, bytearray(4096))
    with pytest.raises(ValueError, match="one value per group"):
        kernels.assemble(planes_out, 4, base, bytes(CONTEXTS), (1024,), bytes(3), bytearray(4096))
    # Sizes that add up but do not match the keys: a group overflows, nothing is overrun.
    wrong = Grouping((64, CONTEXTS), (1, 1023), bytes([0] * 64 + [1] * 64))
    with pytest.raises(ValueError, match="more elements of a group"):
        join_planes(planes_out, 4, np.zeros(len(base), np.uint8), base, wrong)


@settings(max_examples=120, deadline=None)
@given(
    width=st.sampled_from([2, 4, 8]),
    n=st.integers(0, 5000),
    group_log=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_exponent_loops_of_c_and_numpy_agree_byte_for_byte(width, n, group_log, seed):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, n * width + 1, dtype=np.uint8)
    raw[width - 1 : n * width : width][rng.random(n) < 0.7] &= 0x41  # few keys: groups form
    raw = raw.tobytes()
    groups = planes.exponent_grouping(raw, width, group_log)
    if groups is None:  # one group: codec 4's loops serve
        groups = Grouping.sized([planes.EXPONENT_KEYS], [n])
    whole = n * width
    assert_round_trip_agrees(
        lambda r, out: planes.split_exponents(r, width, groups, out),
        lambda p, out: planes.join_exponents(p, width, groups, out),
        raw,
        whole,
    )
    with pytest.MonkeyPatch.context() as patch:
        counts = planes.exponent_counts(raw, width, 3)
        patch.setattr(planes, "_kernels", None)
        assert planes.exponent_counts(raw, width, 3) == counts


def test_exponent_loops_check_what_they_are_given():
    kernels = require_kernels()
    raw = bytes(range(256)) * 16
    planes_out = np.zeros(len(raw), np.uint8)
    one = bytes(planes.EXPONENT_KEYS)
    with pytest.raises(ValueError, match="width"):
        kernels.split_exponents(raw, 1, one, (4096,), planes_out)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.split_exponents(raw[:10], 4, one, (1024,), planes_out)
    with pytest.raises(ValueError, match="always grouped"):
        kernels.split_exponents(raw, 4, None, (1024,), planes_out)
    with pytest.raises(ValueError, match="256 bytes"):
        kernels.assemble_exponents(planes_out, 4, bytes(CONTEXTS), (1024,), bytearray(len(raw)))
    with pytest.raises(ValueError, match="add up"):
        kernels.assemble_exponents(planes_out, 4, one, (1000,), bytearray(len(raw)))
    with pytest.raises(ValueError, match="width 2 to 8"):
        kernels.exponent_counts(raw, 1, 1)
    # Sizes that add up but do not match the keys: a group overflows, nothing is overrun.
    wrong = Grouping.sized([128, 256], [1, 1023])
    for kernels_used in (kernels, None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(planes, "_kernels", kernels_used)
            with pytest.raises(ValueError, match="more elements of a group"):
                planes.join_exponents(planes_out, 4, wrong, np.zeros(len(raw), np.uint8))


@pytest.mark.parametrize("writer", ["C loops", "numpy loops"])
def test_a_store_written_by_either_loops_reads_back_with_the_other(open_store, writer):
    """The C loops and numpy write the same payloads, so a store moved to a machine
    without a compiler (or back) reads, verifies and rebases as before."""
    kernels = require_kernels()
    loops = {"C loops": kernels, "numpy loops": None}
    other = "numpy loops" if writer == "C loops" else "C loops"
    store = open_store(config=CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(planes, "_kernels", loops[writer])
        saved = put_steps(store, 3)
    assert Codec.BIASED_DELTA in codecs_of(store, saved[0][0])
    assert Codec.EXPONENT_PLANES in codecs_of(store, saved[-1][0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(planes, "_kernels", loops[other])
        for checkpoint_id, data in saved:
            assert restore_bytes(store, checkpoint_id) == data
        assert store.verify(read_data=True).ok
        saved += put_steps(store, 1, start=3)  # rebases the third onto the fourth
        assert restore_bytes(store, saved[2][0]) == saved[2][1]
