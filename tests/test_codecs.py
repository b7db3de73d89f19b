"""Block codecs: every encoding decodes bit-exact; the choice follows the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.errors import FormatError
from ckptstore.store.codecs import block, native
from ckptstore.store.codecs.block import DELTA_GROUP_LOG, BlockCodec
from ckptstore.store.codecs.estimate import grouping_gain_bits, plane_width
from ckptstore.store.codecs.grouping import (
    CONTEXTS,
    SAMPLE_STRIDE,
    exponent_bounds,
    exponent_keys,
    group_bounds,
    group_keys,
    group_members,
    grouping,
    key_counts,
)
from ckptstore.store.codecs.ids import Codec, DecodeError
from ckptstore.store.codecs.planes import (
    delta_of,
    from_planes,
    split_exponents,
    split_planes,
    to_planes,
)
from tests.conftest import require_kernels

codec = BlockCodec()
rng = np.random.default_rng(0)


@pytest.fixture(scope="module", autouse=True, params=["C loops", "numpy loops"])
def plane_loops(request):
    """Every test here runs with the C loops (native.py) and with their numpy twins."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "numpy loops":
            patch.setattr(native, "kernels", None)
        else:
            require_kernels()  # fails in CI, skips elsewhere when the C loops are not built
        yield request.param


def special_floats(dtype, n: int) -> np.ndarray:
    """Weights-like values with NaN, infinities, signed zeros and denormals mixed in."""
    values = (rng.standard_normal(n) * 0.02).astype(dtype)
    info = np.finfo(dtype)
    specials = np.array(
        [
            np.nan,
            np.inf,
            -np.inf,
            0.0,
            -0.0,
            info.smallest_subnormal,
            -info.smallest_subnormal,
            info.max,
            info.min,
        ],
        dtype=dtype,
    )
    values[:: max(1, n // 50)][: len(specials)] = specials[: len(values[:: max(1, n // 50)])]
    return values


def arrays():
    yield "float16", special_floats(np.float16, 100_003)
    yield "float32", special_floats(np.float32, 65_537)
    yield "float64", special_floats(np.float64, 40_001)
    bf16 = (special_floats(np.float32, 80_001).view(np.uint32) >> 16).astype(np.uint16)
    yield "bfloat16", bf16
    yield "int8", rng.integers(-128, 128, 70_001, dtype=np.int8)
    yield "int32", rng.integers(-1000, 1000, 50_001, dtype=np.int32)
    yield "int64", rng.integers(-(2**40), 2**40, 30_001, dtype=np.int64)


@pytest.mark.parametrize("name, values", list(arrays()), ids=[n for n, _ in arrays()])
@pytest.mark.parametrize("cut", [0, 1, 3])
def test_every_dtype_round_trips_bit_exact(name, values, cut):
    raw = memoryview(values.tobytes()[cut:])  # odd lengths and starts inside an element
    kind, payload = codec.encode(raw)
    assert codec.decode(kind, payload, len(raw)) == raw.tobytes()
    # as a tensor block of its dtype (a caller that says so wrongly loses no bytes either)
    kind, payload = codec.encode(raw, values.itemsize, aligned=True)
    assert codec.decode(kind, payload, len(raw)) == raw.tobytes()


def test_float_weights_take_byte_planes_and_store_smaller():
    raw = memoryview((rng.standard_normal(1 << 16, dtype=np.float32) * 0.02).tobytes())
    plain = len(BlockCodec(byte_planes=False).encode(raw)[1])
    kind, payload = codec.encode(raw, 4, aligned=True)  # a tensor block
    assert kind == Codec.EXPONENT_PLANES and payload[0] == 4
    assert len(payload) < 0.97 * plain
    for kind, payload in (
        codec.encode(raw),  # bytes that look like numbers, elements not known
        BlockCodec(exponent_group_log=0).encode(raw, 4, aligned=True),  # grouping off
    ):
        assert kind == Codec.FRAMED_PLANES and payload[0] == 4
        assert len(payload) < 0.97 * plain


def test_bf16_weights_take_byte_planes():
    bf16 = (rng.standard_normal(1 << 17, dtype=np.float32) * 0.02).view(np.uint32) >> 16
    raw = memoryview(bf16.astype(np.uint16).tobytes())
    assert codec.encode(raw)[0] == Codec.FRAMED_PLANES
    assert codec.encode(raw, 2, aligned=True)[0] == Codec.EXPONENT_PLANES


def uniform_init(n: int, bound: float) -> np.ndarray:
    """fp32 weights drawn as PyTorch draws nn.Linear's: 24 random bits scaled to
    [-bound, bound), so that small values end in zero bits."""
    units = rng.integers(0, 1 << 24, n).astype(np.float32) * np.float32(2.0**-24)
    return units * np.float32(2 * bound) - np.float32(bound)


def test_grouping_by_exponent_stores_whole_weights_smaller():
    raw = memoryview(uniform_init(1 << 18, 1 / 32).tobytes())
    kind, payload = codec.encode(raw, 4, aligned=True)
    _, framed = codec.encode(raw, 4)
    assert kind == Codec.EXPONENT_PLANES
    assert len(payload) < 0.97 * len(framed)
    assert codec.decode(kind, payload, len(raw)) == raw.tobytes()


def test_exponent_groups_close_at_their_minimum_and_hold_each_key_whole():
    values = np.concatenate([np.full(5000, 1.5), np.full(3000, -1.75), np.full(9000, 3e-8)])
    raw = values.astype(np.float32).tobytes()
    keys = exponent_keys(raw, 4)
    assert keys[0] == keys[5000] == 127 and keys[9000] == 102  # the exponent, sign apart
    bounds = exponent_bounds(raw, 4, 12)
    assert bounds == [103, 256]
    assert exponent_bounds(raw, 4, 13) is None  # too few for two groups
    split = np.empty(len(raw), np.uint8)
    groups = split_exponents(raw, 4, bounds, split, np.empty(len(raw), np.uint8))
    assert groups.bounds == (103, 256) and groups.sizes == (9000, 8000)
    n = len(values)
    assert split[3 * n :].tobytes() == keys.tobytes()  # the key plane, in element order
    rotated = np.frombuffer(raw, np.uint32)[np.r_[8000:17000, 0:8000]]
    rotated = (rotated << 1) | (rotated >> 31)  # the group of 3e-8 first, then the others
    assert split[: 3 * n].tobytes() == to_planes(rotated.view(np.uint8), 4)[: 3 * n].tobytes()


@settings(max_examples=60, deadline=None)
@given(
    width=st.sampled_from([2, 4, 8]),
    n=st.integers(0, 3000),
    keys=st.integers(1, 8),
    group_log=st.integers(1, 8),
    tail=st.integers(0, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_block_grouped_by_exponent_round_trips(width, n, keys, group_log, tail, seed):
    local = np.random.default_rng(seed)
    data = local.integers(0, 256, n * width + tail % width, dtype=np.uint8)
    tops = local.integers(0, 256, keys, dtype=np.uint8)  # few keys, so that groups form
    data[width - 1 : n * width : width] = tops[local.integers(0, keys, n)]
    raw = memoryview(data.tobytes())
    kind, payload = BlockCodec(exponent_group_log=group_log).encode(raw, width, aligned=True)
    assert codec.decode(kind, payload, len(raw)) == raw.tobytes()


def test_damaged_exponent_payloads_raise_decode_errors():
    raw = memoryview(uniform_init(1 << 16, 0.05).tobytes() + b"xy")
    kind, payload = codec.encode(raw, 4, aligned=True)
    assert kind == Codec.EXPONENT_PLANES
    count = payload[1] + 1
    assert count >= 2
    damaged = bytearray(payload)
    damaged[2], damaged[3] = damaged[3], damaged[2]
    with pytest.raises(DecodeError, match="out of order"):
        codec.decode(kind, bytes(damaged), len(raw))
    with pytest.raises(DecodeError, match="elements, expected"):
        codec.decode(kind, payload, len(raw) + 4)
    # keys that do not fill the groups as stated: frames of the right sizes all the same
    table_at = 2 + 5 * count
    (key_frame,) = np.frombuffer(payload, "<u4", 1, table_at)
    keys = zstandard.ZstdDecompressor().decompress(payload[table_at + 4 : table_at + 4 + key_frame])
    moved = 255 if keys[0] <= payload[2] else 0  # the first element, to another group
    keys = bytes([moved]) + keys[1:]
    frame = zstandard.ZstdCompressor().compress(keys)
    damaged = b"".join(
        (
            payload[:table_at],
            np.array([len(frame)], "<u4").tobytes(),
            frame,
            payload[table_at + 4 + key_frame :],
        )
    )
    with pytest.raises(DecodeError, match="more elements of a group"):
        codec.decode(kind, damaged, len(raw))
    with pytest.raises(DecodeError, match="too short"):
        codec.decode(kind, payload[: 2 + count], len(raw))
    with pytest.raises(DecodeError, match="past the end"):
        codec.decode(kind, payload[:-10], len(raw))
    with pytest.raises(DecodeError, match="after the frames"):
        codec.decode(kind, payload + b"x", len(raw))
    with pytest.raises(DecodeError, match="width"):
        codec.decode(kind, b"\x01" + payload[1:], len(raw))


@pytest.mark.parametrize("raw", [b"epoch loss accuracy " * 5000, bytes(100_000), b"x" * 100])
def test_text_zeros_and_tiny_blocks_keep_plain_zstd(raw):
    assert plane_width(memoryview(raw)) == 0
    assert codec.encode(memoryview(raw))[0] == Codec.ZSTD


def test_random_bytes_are_stored_raw():
    raw = memoryview(rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    kind, payload = codec.encode(raw)
    assert kind == Codec.RAW and payload == raw


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), width=st.sampled_from([2, 4]))
def test_planes_are_a_permutation(data, width):
    assert from_planes(to_planes(memoryview(data), width).tobytes(), width).tobytes() == data


def test_bad_payloads_raise_decode_errors():
    with pytest.raises(DecodeError, match="width"):
        codec.decode(Codec.FRAMED_PLANES, b"\x03" + b"junk", 10)
    with pytest.raises(DecodeError, match="zstd"):
        codec.decode(Codec.ZSTD_PLANES, b"\x04not zstd", 10)
    with pytest.raises(DecodeError, match="frame lengths"):
        codec.decode(Codec.FRAMED_PLANES, b"\x04short", 10)
    raw = memoryview(special_floats(np.float32, 10_000).tobytes() + b"ab")
    kind, payload = BlockCodec(exponent_group_log=0).encode(raw)
    assert kind == Codec.FRAMED_PLANES
    with pytest.raises(DecodeError, match="past the end"):
        codec.decode(kind, payload[:-10], len(raw))
    with pytest.raises(DecodeError, match="after the frames"):
        codec.decode(kind, payload + b"x", len(raw))
    with pytest.raises(DecodeError):
        codec.decode(kind, payload, len(raw) + 4)
    with pytest.raises(DecodeError):
        codec.decode(Codec.RAW, b"short", 10)
    with pytest.raises(FormatError, match="unknown codec id 9"):
        codec.decode(9, b"", 0)


def test_older_plane_codecs_still_decode():
    """Codecs 2 and 3 are no longer written; blocks stored by them stay readable."""
    base = special_floats(np.float32, 20_001).tobytes() + b"xyz"
    raw = bytearray(base)
    raw[400:800] = bytes(400)
    raw = bytes(raw)
    zstd = zstandard.ZstdCompressor(level=1)
    planes = bytes([4]) + zstd.compress(to_planes(memoryview(raw), 4).tobytes())
    assert codec.decode(Codec.ZSTD_PLANES, planes, len(raw)) == raw
    delta = bytes([4]) + zstd.compress(to_planes(delta_of(raw, base, 4), 4).tobytes())
    assert codec.decode(Codec.DELTA_PLANES, delta, len(raw), base) == raw


def wide_floats(n: int, dtype) -> np.ndarray:
    """Floats across many exponents, so that a delta block falls into many groups."""
    values = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)
    with np.errstate(over="ignore"):
        return np.concatenate([values.astype(dtype), special_floats(dtype, 1000)])


def stepped(values: np.ndarray) -> np.ndarray:
    """The values after a step of about the same size everywhere (an optimizer's), and
    some left as they were: the change in a value's bits follows its exponent."""
    step = rng.standard_normal(len(values)) * 1e-4
    with np.errstate(all="ignore"):  # infinities and NaN among the values
        changed = (values + step.astype(values.dtype)).astype(values.dtype)
    changed[::7] = values[::7]
    return changed


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("tail", [0, 3])
def test_grouped_delta_round_trips_bit_exact_across_groups(width, tail):
    if width == 1:  # bytes whose base's high bits tell whether they changed
        base_array = rng.integers(0, 256, 200_000, dtype=np.uint8)
        noise = rng.integers(0, 256, len(base_array), dtype=np.uint8)
        changed = np.where(base_array & 0x40, noise, base_array).astype(np.uint8)
    else:
        dtype = {2: np.float16, 4: np.float32, 8: np.float64}[width]
        base_array = wide_floats(400_000 // width, dtype)
        changed = stepped(base_array)
    base = base_array.tobytes() + bytes(range(tail))
    raw = memoryview(changed.tobytes() + bytes(range(5, 5 + tail)))
    kind, payload = codec.encode_delta(raw, base, width)
    assert kind == Codec.BIASED_DELTA and payload[:2] == bytes([width, DELTA_GROUP_LOG])
    assert len(grouping(base, width, DELTA_GROUP_LOG).sizes) > 1
    assert codec.decode(kind, payload, len(raw), base) == raw.tobytes()
    out = np.empty(len(raw), np.uint8)
    codec.decode(kind, payload, len(raw), base, out=out)
    assert out.tobytes() == raw.tobytes()


@settings(max_examples=80, deadline=None)
@given(
    width=st.sampled_from([1, 2, 4, 8]),
    n=st.integers(0, 3000),
    group_log=st.integers(1, 6),
    changed=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_grouped_delta_round_trips(width, n, group_log, changed, seed):
    """Whatever the bytes and however many groups, a grouped delta decodes back."""
    local = np.random.default_rng(seed)
    base = local.integers(0, 256, n, dtype=np.uint8)
    raw = np.where(local.random(n) < changed, local.integers(0, 256, n), base).astype(np.uint8)
    writer = BlockCodec(delta_group_log=group_log)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(block, "GROUPING_MIN_GAIN", -100.0)  # keep grouping wherever tried
        encoded = writer.encode_delta(memoryview(raw.tobytes()), base.tobytes(), width, 1 << 40)
    kind, payload = encoded
    assert kind == Codec.BIASED_DELTA
    expect_grouped = grouping(base.tobytes(), width, group_log) is not None
    assert payload[1] == (group_log if expect_grouped else 0)
    assert codec.decode(kind, payload, n, base.tobytes()) == raw.tobytes()


def test_deltas_stay_ungrouped_where_grouping_does_not_pay():
    values = wide_floats(200_000, np.float32)
    base = values.tobytes()
    with np.errstate(all="ignore"):  # a relative change: the same bits change everywhere
        raw = memoryview((values * np.float32(1.0001)).tobytes())
    kind, payload = codec.encode_delta(raw, base, 4)
    assert kind == Codec.BIASED_DELTA and payload[1] == 0
    assert codec.decode(kind, payload, len(raw), base) == raw.tobytes()


def test_grouping_shrinks_float_deltas_that_span_exponents():
    """An optimizer step of about the same size everywhere changes more low bits of
    small weights than of large ones: grouped by exponent, each frame's statistics
    are sharper (bench: entropy measures it on trained checkpoints)."""
    n = 300_000
    values = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(np.float32)
    base, raw = values.tobytes(), memoryview(stepped(values).tobytes())
    _, grouped = codec.encode_delta(raw, base, 4)
    _, ungrouped = BlockCodec(delta_group_log=0).encode_delta(raw, base, 4)
    assert grouped[1] == DELTA_GROUP_LOG and ungrouped[1] == 0
    assert len(grouped) < 0.95 * len(ungrouped)


def test_a_sure_grouping_gain_encodes_the_grouped_delta_alone(monkeypatch):
    """Where both estimates say grouping saves GROUPING_SURE_GAIN or more, the
    ungrouped payload is not encoded only to be beaten (a rebase's largest cost)."""
    n = 300_000
    values = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(np.float32)
    base, raw = values.tobytes(), memoryview(stepped(values).tobytes())
    encoded: list[int] = []
    payload_of = BlockCodec._delta_payload

    def counted(self, *args, **kwargs):
        payload = payload_of(self, *args, **kwargs)
        encoded.append(payload[1])
        return payload

    monkeypatch.setattr(BlockCodec, "_delta_payload", counted)
    kind, payload = codec.encode_delta(raw, base, 4)
    assert encoded == [DELTA_GROUP_LOG] and payload[1] == DELTA_GROUP_LOG
    assert codec.decode(kind, payload, len(raw), base) == raw.tobytes()


def test_grouping_gain_estimate_follows_how_magnitude_depends_on_the_base():
    values = wide_floats(300_000, np.float32)
    base = values.tobytes()
    groups = grouping(base, 4, DELTA_GROUP_LOG)
    with np.errstate(all="ignore"):
        relative = (values * np.float32(1.0001)).astype(np.float32)  # same bits change
    absolute = stepped(values)  # low bits of small values, nothing of large ones
    gains = [
        grouping_gain_bits(changed.tobytes(), base, 4, groups) for changed in (relative, absolute)
    ]
    assert gains[0] < 0.05 < 1.0 < gains[1]


def test_grouping_can_be_turned_off_and_any_reader_follows_the_payload():
    values = wide_floats(100_000, np.float32)
    base = values.tobytes()
    raw = memoryview((values[::-1]).tobytes())
    kind, payload = BlockCodec(delta_group_log=0).encode_delta(raw, base, 4)
    assert kind == Codec.BIASED_DELTA and payload[1] == 0
    assert codec.decode(kind, payload, len(raw), base) == raw.tobytes()
    with pytest.raises(ValueError, match="delta_group_log"):
        BlockCodec(delta_group_log=32)
    with pytest.raises(ValueError, match="exponent_group_log"):
        BlockCodec(exponent_group_log=-1)


def test_group_bounds_close_at_the_minimum_and_fold_in_the_remainder():
    sampled = np.array([5] * 10 + [1] * 3 + [2] * 4 + [127] * 2, np.uint8)
    keys = np.repeat(sampled, 16)  # every 16th key is counted, for 16 elements each
    base = np.zeros((len(keys), 2), np.uint8)
    base[:, 1] = keys
    counts = key_counts(base.tobytes(), 2, 16)
    assert counts == np.bincount(sampled, minlength=CONTEXTS).tolist()
    assert group_bounds(counts, 7 * 16) == [3, 128]  # keys 1-2: 7; keys 5 and 127: 10 + 2
    assert group_bounds(counts, 100 * 16) == []  # one group
    assert group_bounds(counts, 16) == [2, 3, 6, 128]


def test_grouping_orders_groups_by_key_and_elements_within_a_group_by_index():
    keys = np.repeat(np.array([9, 3, 9, 40, 3, 90, 40, 3], np.uint8), 4096)
    base = np.zeros((len(keys), 2), np.uint8)
    base[:, 1] = keys | 0x80  # a sign bit the key ignores
    groups = grouping(base.tobytes(), 2, 12)
    assert groups.sizes == (3 * 4096, 2 * 4096, 2 * 4096, 4096)
    members = group_members(base.tobytes(), 2, groups)
    for indices, key in zip(members, (3, 9, 40, 90), strict=True):  # keys 3, 9, 40, 90
        assert np.all(np.diff(indices) > 0) and np.all(keys[indices] == key)
    assert sorted(np.concatenate(members).tolist()) == list(range(len(keys)))
    values = rng.integers(0, 1 << 16, len(keys), dtype=np.uint16).tobytes()
    planes = np.empty(len(values), np.uint8)
    split_planes(values, 2, planes, base.tobytes(), groups)
    grouped = np.frombuffer(delta_of(values, base.tobytes(), 2), np.uint16)[np.concatenate(members)]
    assert planes.tobytes() == to_planes(grouped.view(np.uint8), 2).tobytes()
    assert grouping(base.tobytes(), 2, 0) is None
    assert grouping(base[:8000].tobytes(), 2, 12) is None  # too few for two groups


def test_delta_group_keys_drop_the_sign():
    base = np.array([1.5, -1.5, 3.0e-8, -3.0e-8], np.float32).tobytes()
    keys = group_keys(base, 4)
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]


def test_engine_stores_float_checkpoints_smaller_with_planes(open_store, tmp_path):
    from dataclasses import replace

    from tests.conftest import TEST_CONFIG, restore_bytes

    weights = (rng.standard_normal(1_000_000, dtype=np.float32) * 0.02).tobytes()
    with_planes = open_store(tmp_path / "planes")
    without = open_store(tmp_path / "plain", config=replace(TEST_CONFIG, byte_planes=False))
    a = with_planes.put("job", weights)
    b = without.put("job", weights)
    assert a.stored_bytes < 0.97 * b.stored_bytes
    assert restore_bytes(with_planes, a.checkpoint_id) == weights
    assert with_planes.verify(read_data=True).ok


@pytest.mark.parametrize("width", [4, 8])
def test_each_groups_drift_is_taken_off_its_differences(width):
    """Elements that moved by about one amount per group (their base's top byte), as
    moments decaying or weights shrinking move a float's bits: codec 6 stores each
    group's amount once and codes only the noise around it, in fewer planes."""
    count = 100_000  # 25,000 of each key: a group each
    uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    top = rng.choice(np.array([0x10, 0x30, 0x50, 0x70], np.uint64), count)
    low_bits = 8 * width - 8
    base = (top << np.uint64(low_bits)) | rng.integers(0, 1 << min(low_bits, 62), count).astype(
        np.uint64
    )
    drift = (top >> np.uint64(4)) * np.uint64(1 << (low_bits - 2))  # its own per group
    noise = rng.integers(-100, 101, count).astype(np.int64).astype(np.uint64)
    moved = (base + drift + noise).astype(uint)
    base_bytes, raw = base.astype(uint).tobytes() + b"z", memoryview(moved.tobytes() + b"y")
    kind, payload = codec.encode_delta(raw, base_bytes, width)
    groups = grouping(base_bytes, width, DELTA_GROUP_LOG)
    assert kind == Codec.BIASED_DELTA and payload[1] == DELTA_GROUP_LOG
    biases = np.frombuffer(payload, f"<u{width}", len(groups.sizes), 2)
    assert np.count_nonzero(biases) >= 2
    assert codec.decode(kind, payload, len(raw), base_bytes) == raw.tobytes()
    out = np.empty(len(raw), np.uint8)
    codec.decode(kind, payload, len(raw), base_bytes, out=out)
    assert out.tobytes() == raw.tobytes()
    unbiased = codec._delta_payload(raw, base_bytes, width, DELTA_GROUP_LOG, groups)
    assert len(payload) < 0.9 * len(unbiased)


def test_grouped_deltas_of_codec_5_still_decode():
    """Codec 5 is codec 6 without the biases: blocks it stored stay readable."""
    values = wide_floats(100_000, np.float32)
    base = values.tobytes() + b"ab"
    raw = memoryview(stepped(values).tobytes() + b"cd")
    groups = grouping(base, 4, DELTA_GROUP_LOG)
    legacy = codec._delta_payload(raw, base, 4, DELTA_GROUP_LOG, groups)  # no biases
    assert codec.decode(Codec.GROUPED_DELTA, legacy, len(raw), base) == raw.tobytes()
    with pytest.raises(DecodeError):  # read as codec 6, the frame table is off
        assert codec.decode(Codec.BIASED_DELTA, legacy, len(raw), base) != raw.tobytes()


def test_a_payload_cut_in_its_biases_is_a_decode_error():
    values = wide_floats(100_000, np.float32)
    base = values.tobytes()
    raw = memoryview(stepped(values).tobytes())
    kind, payload = codec.encode_delta(raw, base, 4)
    assert kind == Codec.BIASED_DELTA and payload[1] == DELTA_GROUP_LOG
    with pytest.raises(DecodeError, match="group biases"):
        codec.decode(kind, payload[:5], len(raw), base)


DAMAGED_BASE = wide_floats(60_000, np.float32)
DAMAGED_RAW = stepped(DAMAGED_BASE)


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), max_size=6),
    keep=st.floats(0.0, 1.0),
)
def test_a_damaged_delta_payload_never_decodes_to_the_wrong_length(cuts, keep):
    """Flipped bytes and cut payloads give a DecodeError or bytes of the block's length
    (which the caller's hash check then rejects): never a crash of the C loops."""
    base = DAMAGED_BASE.tobytes() + b"q"
    raw = memoryview(DAMAGED_RAW.tobytes() + b"r")
    kind, payload = codec.encode_delta(raw, base, 4)
    assert payload[1] == DELTA_GROUP_LOG  # grouped, with biases
    damaged = bytearray(payload)
    for position, value in cuts:
        damaged[position % len(damaged)] = value
    damaged = bytes(damaged[: max(1, int(len(damaged) * keep))] if keep < 1 else damaged)
    try:
        out = codec.decode(kind, damaged, len(raw), base)
    except DecodeError:
        return
    assert len(out) == len(raw)


DAMAGED_WHOLE = memoryview(uniform_init(40_000, 0.05).tobytes() + b"w")


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), max_size=6),
    keep=st.floats(0.0, 1.0),
)
def test_a_damaged_exponent_payload_never_decodes_to_the_wrong_length(cuts, keep):
    """Codec 7 likewise: a DecodeError or bytes of the block's length, never a crash."""
    kind, payload = codec.encode(DAMAGED_WHOLE, 4, aligned=True)
    assert kind == Codec.EXPONENT_PLANES
    damaged = bytearray(payload)
    for position, value in cuts:
        damaged[position % len(damaged)] = value
    damaged = bytes(damaged[: max(1, int(len(damaged) * keep))] if keep < 1 else damaged)
    try:
        out = codec.decode(kind, damaged, len(DAMAGED_WHOLE))
    except DecodeError:
        return
    assert len(out) == len(DAMAGED_WHOLE)


def test_codec_7_payloads_with_huffman_key_frames_still_decode():
    """Until 2026-12-06 the writer stored codec 7's key plane as a zstd frame of
    Huffman-coded literals alone, written by its own coder: such payloads decode as
    before. The fixture is this block encoded by that writer (commit 6123d0d)."""
    payload = (Path(__file__).parent / "fixtures" / "codec7-huffman-key-frame.bin").read_bytes()
    local = np.random.default_rng(7)
    n = 8192
    exponents = np.clip(np.round(local.normal(120, 4, n)), 100, 140).astype(np.uint32)
    signs = local.integers(0, 2, n).astype(np.uint32)
    mantissas = local.integers(0, 4, n).astype(np.uint32) << 21
    raw = ((signs << 31) | (exponents << 23) | mantissas).astype("<u4").tobytes()
    assert bytes(codec.decode(Codec.EXPONENT_PLANES, payload, len(raw))) == raw
    assert codec.encode(memoryview(raw), 4, aligned=True)[1] != payload  # zstd's frame now


def _group_bounds_by_key(sampled: list[int], minimum: int) -> list[int]:
    """group_bounds as its docstring says it, one key at a time."""
    bounds: list[int] = []
    held = 0
    for key, count in enumerate(sampled):
        held += count * SAMPLE_STRIDE
        if held >= minimum:
            bounds.append(key + 1)
            held = 0
    if len(bounds) < 2:
        return []
    bounds[-1] = len(sampled)
    return bounds


@settings(max_examples=300, deadline=None)
@given(
    sampled=st.lists(st.sampled_from([0, 0, 0, 1, 2, 7, 60, 1000]), max_size=256),
    minimum=st.integers(0, 40_000),
)
def test_group_bounds_close_each_group_once_it_holds_the_minimum(sampled, minimum):
    assert group_bounds(sampled, minimum) == _group_bounds_by_key(sampled, minimum)
