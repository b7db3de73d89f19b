"""Block codecs: every encoding decodes bit-exact; the choice follows the data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.errors import FormatError
from ckptstore.store.codecs import (
    BlockCodec,
    Codec,
    DecodeError,
    from_planes,
    plane_width,
    to_planes,
)

codec = BlockCodec()
rng = np.random.default_rng(0)


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


def test_float_weights_take_byte_planes_and_store_smaller():
    raw = memoryview((rng.standard_normal(1 << 16, dtype=np.float32) * 0.02).tobytes())
    kind, payload = codec.encode(raw)
    plain = len(BlockCodec(byte_planes=False).encode(raw)[1])
    assert kind == Codec.ZSTD_PLANES and payload[0] == 4
    assert len(payload) < 0.97 * plain


def test_bf16_weights_take_byte_planes():
    bf16 = (rng.standard_normal(1 << 17, dtype=np.float32) * 0.02).view(np.uint32) >> 16
    kind, _ = codec.encode(memoryview(bf16.astype(np.uint16).tobytes()))
    assert kind == Codec.ZSTD_PLANES


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
        codec.decode(Codec.ZSTD_PLANES, b"\x03" + b"junk", 10)
    with pytest.raises(DecodeError, match="zstd"):
        codec.decode(Codec.ZSTD_PLANES, b"\x04not zstd", 10)
    with pytest.raises(DecodeError):
        codec.decode(Codec.RAW, b"short", 10)
    with pytest.raises(FormatError, match="unknown codec id 9"):
        codec.decode(9, b"", 0)


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
