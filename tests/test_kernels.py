"""The C loops of the byte-plane transforms (kernels/loops.c, through _kernels.c) against
their numpy twins."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.codecs import estimate, native, planes
from ckptstore.store.codecs.grouping import (
    CONTEXTS,
    EXPONENT_KEYS,
    SAMPLE_STRIDE,
    Grouping,
    exponent_bounds,
    exponent_counts,
    exponent_keys,
    group_biases,
    group_keys,
    group_sizes,
    grouping,
)
from ckptstore.store.codecs.ids import UINTS, Codec
from ckptstore.store.codecs.planes import join_planes, split_planes
from ckptstore.store.packs.format import parse_entry
from ckptstore.store.rebase import chain_depths
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
            patch.setattr(native, "kernels", kernels)
            function(*inputs, out)
        results.append(out.tobytes())
    return results


def assert_round_trip_agrees(split, join, raw: bytes, whole: int) -> None:
    """``split(raw, out)`` then ``join(planes, out)`` write the same bytes with the C
    loops and with numpy, and give back ``raw``'s whole elements."""
    in_c, numpy = both_ways(split, raw, np.zeros(whole, np.uint8))
    assert in_c == numpy
    grouped = np.frombuffer(in_c, np.uint8).copy()
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
        biases = biases.view(f"<u{width}").ravel().astype(UINTS[width])
    whole = len(raw) // width * width  # the planes hold whole elements only
    base_arg = base.tobytes() if delta else None
    assert_round_trip_agrees(
        lambda r, out: split_planes(r, width, out, base_arg, groups, biases),
        lambda p, out: join_planes(p, width, out, base_arg, groups, biases),
        raw,
        whole,
    )


def vector_and_scalar(function):
    """What ``function()`` returns with the C loops' vector instructions (where the CPU
    has them) and without."""
    kernels = require_kernels()
    results = []
    for enabled in (True, False):
        was = kernels.vector_loops(enabled)
        try:
            results.append(function())
        finally:
            kernels.vector_loops(was)
    return results


@settings(max_examples=150, deadline=None)
@given(
    width=st.sampled_from([1, 2, 4, 8]),
    n=st.integers(0, 3000),
    group_log=st.integers(1, 8),
    biased=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_vector_and_scalar_loops_ungroup_deltas_alike(width, n, group_log, biased, seed):
    """The grouped delta loops and the group counts give the same bytes with vector
    instructions as without, on any keys and drifts (a partial vector at the end too)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, n * width, dtype=np.uint8)
    base[width - 1 :: width][rng.random(n) < 0.6] &= 0x87  # few keys: groups form
    base = base.tobytes()
    groups = grouping(base, width, group_log)
    if groups is None:
        return
    keys = np.frombuffer(groups.group_of_key, np.uint8)[group_keys(base, width)]
    assert list(groups.sizes) == np.bincount(keys, minlength=len(groups.sizes)).tolist()
    assert (
        vector_and_scalar(lambda: group_sizes(base, width, list(groups.bounds)))
        == [list(groups.sizes)] * 2
    )
    biases = None
    if biased:
        biases = rng.integers(0, 256, (len(groups.sizes), width), dtype=np.uint8)
        biases = biases.view(f"<u{width}").ravel().astype(UINTS[width])
    codes = rng.integers(0, 256, n * width, dtype=np.uint8)
    codes[n * width // 2 :] = 0  # codes of zero among others: elements equal to the base's

    def join() -> bytes:
        out = np.zeros(n * width, np.uint8)
        join_planes(codes, width, out, base, groups, biases)
        return out.tobytes()

    in_vectors, scalar = vector_and_scalar(join)
    assert in_vectors == scalar
    planes_back = np.zeros(n * width, np.uint8)
    split_planes(in_vectors, width, planes_back, base, groups, biases)
    assert planes_back.tobytes() == codes.tobytes()


def test_groups_that_are_not_ranges_of_keys_ungroup_as_before():
    """A layout whose groups interleave keys (no codec writes one) takes the scalar
    loop, with or without vector instructions."""
    kernels = require_kernels()
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, 4096 * 4, dtype=np.uint8).tobytes()
    table = bytes(key % 3 for key in range(CONTEXTS))  # keys 0, 3, 6... in group 0
    keys = np.frombuffer(table, np.uint8)[group_keys(base, 4)]
    sizes = np.bincount(keys, minlength=3).tolist()
    assert vector_and_scalar(lambda: kernels.group_sizes(base, 4, table, 3)) == [sizes] * 2
    raw = rng.integers(0, 256, len(base), dtype=np.uint8).tobytes()
    planes_out = np.zeros(len(base), np.uint8)
    kernels.split(raw, 4, base, table, sizes, None, planes_out, np.empty(len(base), np.uint8))

    def join() -> bytes:
        out = np.zeros(len(base), np.uint8)
        kernels.assemble(
            planes_out, 4, base, table, sizes, None, out, np.empty(len(base), np.uint8)
        )
        return out.tobytes()

    assert vector_and_scalar(join) == [raw] * 2


@pytest.mark.parametrize("vector", [True, False])
def test_c_loops_check_what_they_are_given(vector):
    kernels = require_kernels()
    was = kernels.vector_loops(vector)
    try:
        check_what_they_are_given(kernels)
    finally:
        kernels.vector_loops(was)


def check_what_they_are_given(kernels):
    base = bytes(range(256)) * 16
    planes_out = np.zeros(len(base), np.uint8)
    with pytest.raises(ValueError, match="width"):
        kernels.split(base, 3, None, None, (), None, planes_out)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.split(base[:10], 4, None, None, (), None, planes_out)
    with pytest.raises(ValueError, match="needs the base"):
        kernels.split(base, 4, None, bytes(CONTEXTS), (1024,), None, planes_out)
    out, scratch = bytearray(len(base)), bytearray(len(base))
    with pytest.raises(ValueError, match="scratch of their size"):
        kernels.assemble(planes_out, 4, base, bytes(CONTEXTS), (1024,), None, out)
    with pytest.raises(ValueError, match="scratch of their size"):
        kernels.split(base, 4, base, bytes(CONTEXTS), (1024,), None, planes_out, scratch[:-1])
    with pytest.raises(ValueError, match="128 bytes"):
        kernels.assemble(planes_out, 4, base, bytes(5), (1024,), None, out, scratch)
    with pytest.raises(ValueError, match="add up"):
        kernels.assemble(planes_out, 4, base, bytes(CONTEXTS), (1000,), None, out, scratch)
    with pytest.raises(ValueError, match="no group"):
        kernels.assemble(planes_out, 4, base, bytes([1]) * CONTEXTS, (1024,), None, out, scratch)
    with pytest.raises(ValueError, match="one value per group"):
        kernels.assemble(planes_out, 4, base, bytes(CONTEXTS), (1024,), bytes(3), out, scratch)
    # One-byte elements need no scratch; ungrouped ones neither.
    kernels.split(base, 1, base, bytes(CONTEXTS), (4096,), None, np.zeros(4096, np.uint8))
    kernels.split(base, 4, base, None, (), None, planes_out)
    # Sizes that add up but do not match the keys: a group overflows, nothing is overrun.
    wrong = Grouping((64, CONTEXTS), (1, 1023), bytes([0] * 64 + [1] * 64))
    with pytest.raises(ValueError, match="more elements of a group"):
        join_planes(planes_out, 4, np.zeros(len(base), np.uint8), base, wrong)
    with pytest.raises(ValueError, match="width"):
        kernels.group_sizes(base, 3, bytes(CONTEXTS), 1)
    with pytest.raises(ValueError, match="each below groups"):
        kernels.group_sizes(base, 4, bytes([1]) * CONTEXTS, 1)
    with pytest.raises(ValueError, match="each below groups"):
        kernels.group_sizes(base, 4, bytes(5), 1)


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
    bounds = exponent_bounds(raw, width, group_log) or [EXPONENT_KEYS]
    whole = n * width
    found = []  # the grouping each split returns: the same both ways

    def split(r, out):
        found.append(planes.split_exponents(r, width, bounds, out, np.empty(whole, np.uint8)))

    def join(p, out):
        planes.join_exponents(p, width, found[0], out, np.empty(whole, np.uint8))

    assert_round_trip_agrees(split, join, raw, whole)
    keys = exponent_keys(raw, width)
    table = np.frombuffer(found[0].group_of_key, np.uint8)
    assert found[0] == found[1]
    assert list(found[0].sizes) == np.bincount(table[keys], minlength=len(bounds)).tolist()
    with pytest.MonkeyPatch.context() as patch:
        counts = exponent_counts(raw, width, 3)
        patch.setattr(native, "kernels", None)
        assert exponent_counts(raw, width, 3) == counts


def test_exponent_loops_check_what_they_are_given():
    kernels = require_kernels()
    raw = bytes(range(256)) * 16
    planes_out = np.zeros(len(raw), np.uint8)
    scratch = np.zeros(len(raw), np.uint8)
    one = bytes(EXPONENT_KEYS)
    with pytest.raises(ValueError, match="width"):
        kernels.split_exponents(raw, 1, one, 1, planes_out, scratch)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.split_exponents(raw[:10], 4, one, 1, planes_out, scratch)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.split_exponents(raw, 4, one, 1, planes_out, scratch[:-1])
    with pytest.raises(ValueError, match="each below groups"):
        kernels.split_exponents(raw, 4, bytes([0] * 255 + [1]), 1, planes_out, scratch)
    with pytest.raises(ValueError, match="each below groups"):
        kernels.split_exponents(raw, 4, one[:-1], 1, planes_out, scratch)
    assert kernels.split_exponents(raw, 4, one, 1, planes_out, scratch) == [1024]
    out = bytearray(len(raw))
    with pytest.raises(ValueError, match="always grouped"):
        kernels.assemble_exponents(planes_out, 4, None, (1024,), out, scratch)
    with pytest.raises(ValueError, match="256 bytes"):
        kernels.assemble_exponents(planes_out, 4, bytes(CONTEXTS), (1024,), out, scratch)
    with pytest.raises(ValueError, match="add up"):
        kernels.assemble_exponents(planes_out, 4, one, (1000,), out, scratch)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.assemble_exponents(planes_out, 4, one, (1024,), out, scratch[:-1])
    with pytest.raises(ValueError, match="width 2 to 8"):
        kernels.exponent_counts(raw, 1, 1)
    # Sizes that add up but do not match the keys: a group overflows, nothing is overrun.
    wrong = Grouping.sized([128, 256], [1, 1023])
    for kernels_used in (kernels, None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(native, "kernels", kernels_used)
            with pytest.raises(ValueError, match="more elements of a group"):
                planes.join_exponents(planes_out, 4, wrong, np.zeros(len(raw), np.uint8), scratch)


@settings(max_examples=100, deadline=None)
@given(
    width=st.sampled_from([1, 2, 4, 8]),
    n=st.integers(0, 20000),
    group_log=st.integers(1, 8),
    biased=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_grouping_estimate_counts_alike_in_c_and_numpy(width, n, group_log, biased, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, n * width + 1, dtype=np.uint8)
    base[width - 1 : n * width : width][rng.random(n) < 0.6] &= 0x83  # few keys: groups form
    # small changes, and (width 8) codes past 2**53, where a float64 rounds
    raw = base.copy()
    changed = rng.random(len(raw)) < 0.2
    raw[changed] = rng.integers(0, 256, int(changed.sum()), dtype=np.uint8)
    base, raw = base.tobytes(), raw.tobytes()
    groups = grouping(base, width, group_log)
    if groups is None:
        return
    biases = group_biases(raw, base, width, groups) if biased else None
    in_c = estimate.gain_counts(raw, base, width, groups, biases)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "kernels", None)
        twin = estimate.gain_counts(raw, base, width, groups, biases)
    assert np.array_equal(in_c[0], twin[0]) and np.array_equal(in_c[1], twin[1])
    assert in_c[2:] == twin[2:]
    assert in_c[1].sum() == len(range(0, len(base) // width, SAMPLE_STRIDE))


def test_code_lengths_are_exact_past_a_float64s_precision():
    ours = np.array([2**63 - 1, 2**62, 5, 0], np.uint64)
    theirs = np.zeros(4, np.uint64)
    # zigzag doubles a positive difference: 2**64 - 2, which a float64 rounds to 2**64
    lengths = estimate._code_lengths(ours, theirs, 8, None)
    assert lengths.tolist() == [64, 64, 4, 0]
    near = np.array([2**62 - 1], np.uint64)  # code 2**63 - 2: a float64 rounds it up to 2**63
    assert estimate._code_lengths(near, np.zeros(1, np.uint64), 8, None).tolist() == [63]


def test_the_estimate_loop_checks_what_it_is_given():
    kernels = require_kernels()
    base = bytes(range(256)) * 16
    table = bytes(CONTEXTS)
    with pytest.raises(ValueError, match="width"):
        kernels.gain_counts(base, base, 3, 16, table, 1, None)
    with pytest.raises(ValueError, match="positive stride"):
        kernels.gain_counts(base, base, 4, 0, table, 1, None)
    with pytest.raises(ValueError, match="as long as the raw"):
        kernels.gain_counts(base, base[:100], 4, 16, table, 1, None)
    with pytest.raises(ValueError, match="128 bytes"):
        kernels.gain_counts(base, base, 4, 16, bytes(5), 1, None)
    with pytest.raises(ValueError, match="no group"):
        kernels.gain_counts(base, base, 4, 16, bytes([2]) * CONTEXTS, 2, None)
    with pytest.raises(ValueError, match="one value per group"):
        kernels.gain_counts(base, base, 4, 16, table, 2, bytes(5))


@pytest.mark.parametrize("writer", ["C loops", "numpy loops"])
def test_a_store_written_by_either_loops_reads_back_with_the_other(open_store, writer):
    """The C loops and numpy write the same payloads, so a store moved to a machine
    without a compiler (or back) reads, verifies and rebases as before."""
    kernels = require_kernels()
    loops = {"C loops": kernels, "numpy loops": None}
    other = "numpy loops" if writer == "C loops" else "C loops"
    store = open_store(config=CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "kernels", loops[writer])
        saved = put_steps(store, 3)
        store.encode_deferred()  # the newest's tensor blocks, stored raw, encoded whole
    assert Codec.BIASED_DELTA in codecs_of(store, saved[0][0])
    assert Codec.EXPONENT_PLANES in codecs_of(store, saved[-1][0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "kernels", loops[other])
        for checkpoint_id, data in saved:
            assert restore_bytes(store, checkpoint_id) == data
        assert store.verify(read_data=True).ok
        saved += put_steps(store, 1, start=3)  # rebases the third onto the fourth
        assert restore_bytes(store, saved[2][0]) == saved[2][1]


@pytest.mark.parametrize("vector", [True, False])
def test_the_oldest_of_deep_chains_restores_byte_exact(open_store, vector):
    """Six saves of one job leave the oldest five deltas deep, grouped (small groups on
    the test's small blocks); every checkpoint reads back byte for byte, with the vector
    loops and without."""
    kernels = require_kernels()
    store = open_store(config=dataclasses.replace(CONFIG, delta_group_log=6))
    saved = put_steps(store, 6)
    oldest = [r for _, r in store.context.catalog.manifest(saved[0][0])]
    assert max(chain_depths(store.context.catalog, oldest, limit=100).values()) == 5
    payloads = [
        parse_entry(store.context.blocks.get(r.pack_id, r.offset, r.entry_len))[1]
        for r in oldest
        if r.codec == Codec.BIASED_DELTA
    ]
    assert any(payload[0] in (2, 4) and payload[1] for payload in payloads)  # grouped
    was = kernels.vector_loops(vector)
    try:
        for checkpoint_id, data in saved:
            assert restore_bytes(store, checkpoint_id) == data
    finally:
        kernels.vector_loops(was)
