"""Codec 7's key-plane frames of Huffman-coded literals (_huffman.c): any zstd decoder
gives the bytes back, and data that suits zstd better is left to it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.codecs import registry
from ckptstore.store.codecs.planes import exponent_keys
from ckptstore.store.codecs.registry import BlockCodec, Codec
from tests.conftest import require_huffman

BLOCK = 128 * 1024  # the most a zstd block holds: frames of more hold several
unzstd = zstandard.ZstdDecompressor()


def frame_of(data: np.ndarray) -> bytes | None:
    """The Huffman frame of ``data``, checked to decode back (with libzstd) smaller."""
    frame = require_huffman()(data.astype(np.uint8))
    if frame is not None:
        assert unzstd.decompress(frame) == data.astype(np.uint8).tobytes()
        assert len(frame) < len(data)
    return frame


@settings(max_examples=150, deadline=None)
@given(
    n=st.one_of(
        st.integers(1024, 5000),
        st.integers(BLOCK - 3, BLOCK + 1100),  # a second block, raw when under 1 KiB
        st.integers(2 * BLOCK, 3 * BLOCK + 7),
    ),
    symbols=st.integers(2, 256),
    top=st.sampled_from([128, 256]),  # weights written directly up to 128, else by FSE
    skew=st.sampled_from([0.03, 0.3, 3.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_frame_decodes_back_with_libzstd(n, symbols, top, skew, seed):
    rng = np.random.default_rng(seed)
    values = rng.permutation(top)[: min(symbols, top)]  # any values, not always the top one
    chances = rng.dirichlet(np.full(len(values), skew))
    data = values[rng.choice(len(values), n, p=chances)]
    frame = frame_of(data)
    if skew >= 3.0 and n >= 2 * BLOCK and len(values) <= 128:  # Huffman coding suits these
        assert frame is not None


def test_values_above_128_take_fse_coded_weights():
    rng = np.random.default_rng(4)
    exponents = np.clip(np.round(rng.normal(120, 4, 200_000)), 0, 255)  # some past 128
    assert exponents.max() > 128
    frame = frame_of(exponents)
    assert frame is not None
    assert frame[9 + 3 + 5] < 128  # the tree's header byte: FSE-coded weights, not direct


@pytest.mark.parametrize("n", [4096, 300_000])
def test_codes_longer_than_zstd_allows_are_cut_to_11_bits(n):
    rng = np.random.default_rng(1)
    chances = 0.5 ** np.arange(1, 41)  # Huffman would give the rarest 40 bits
    chances[-1] += 1 - chances.sum()
    assert frame_of(rng.choice(40, n, p=chances)) is not None


def test_data_that_does_not_suit_huffman_coding_alone_is_declined():
    rng = np.random.default_rng(2)
    declined = {
        "too short": rng.integers(0, 50, 1023),
        "one value": np.full(5000, 7),
        "every value alike": rng.integers(0, 256, 50_000),  # 8 bits each: nothing to gain
        "runs": np.repeat(rng.integers(0, 50, 500), 100),  # zstd's matches pay there
        "sorted": np.sort(rng.integers(0, 50, 50_000)),
    }
    for name, data in declined.items():
        assert frame_of(data) is None, name


def weights(n: int) -> bytes:
    """fp32 weights as PyTorch draws them: 24 random bits scaled."""
    rng = np.random.default_rng(3)
    units = rng.integers(0, 1 << 24, n).astype(np.float32) * np.float32(2.0**-24)
    return (units * np.float32(0.06) - np.float32(0.03)).tobytes()


def test_codec_7_stores_its_key_plane_in_a_huffman_frame():
    require_huffman()
    raw = memoryview(weights(1 << 18))
    kind, payload = BlockCodec().encode(raw, 4, aligned=True)
    assert kind == Codec.EXPONENT_PLANES
    frame = registry.huffman_frame(exponent_keys(raw, 4).astype(np.uint8))
    assert frame is not None and frame in payload
    assert BlockCodec().decode(kind, payload, len(raw)) == raw.tobytes()
    with pytest.MonkeyPatch.context() as patch:  # zstd's frame, where Huffman's is not there
        patch.setattr(registry, "huffman_frame", None)
        zstd_kind, zstd_payload = BlockCodec().encode(raw, 4, aligned=True)
    assert zstd_kind == kind and len(payload) < len(zstd_payload)


def test_a_frame_that_does_not_decode_back_is_replaced_by_zstds(caplog):
    require_huffman()
    raw = memoryview(weights(1 << 16))
    keys = exponent_keys(raw, 4).astype(np.uint8)
    good = registry.huffman_frame(keys)
    for wrong in (good[:-1] + bytes([good[-1] ^ 0x10]), good[: len(good) // 2]):
        with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.ERROR):
            patch.setattr(registry, "huffman_frame", lambda data, wrong=wrong: wrong)
            kind, payload = BlockCodec().encode(raw, 4, aligned=True)
        assert wrong not in payload
        assert BlockCodec().decode(kind, payload, len(raw)) == raw.tobytes()
        assert "did not decode back" in caplog.text
        caplog.clear()
