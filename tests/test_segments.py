"""Tensor-aware cutting of safetensors: blocks align to tensors, identical tensors dedup."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, BlockCutter, ChunkerParams
from ckptstore.store.chunking.fingerprint import fingerprint
from ckptstore.store.chunking.segments import WHOLE_STREAM, sniff_regions
from ckptstore.store.codecs.ids import Codec
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import restore_bytes

rng = np.random.default_rng(0)
BLOCK = DEFAULT_CHUNKER.tensor_block_bytes
SMALL = ChunkerParams(16 * 1024, 64 * 1024, 256 * 1024, tensor_block_bytes=100_000)


def weights(n: int, seed: int, dtype=np.float32) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(dtype)


def model_file(seed: int, extra: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    tensors = {
        "embed.weight": weights(600_000, seed=1),  # the same in every file: frozen
        f"head_{extra}.weight": weights(300_001 + extra, seed=seed),  # changes, odd size
        "step": np.array([seed], dtype=np.int64),
        "scale": weights(5000, seed=seed, dtype=np.float16),
    }
    return safetensors_bytes(tensors, {"epoch": str(seed)}), tensors


def cut_all(params: ChunkerParams, data: bytes, window: int) -> list[tuple[int, int]]:
    """Absolute (end, width) cuts made window by window, as the ingest makes them: each
    buffer is the carry (from the last cut) plus ``window`` new bytes."""
    cutter, out, view = BlockCutter(params), [], memoryview(data)
    start = read = 0
    while True:
        read = min(len(data), read + window)
        final = read == len(data)
        cuts = cutter.cut(view[start:read], start, final)
        out += [(start + cut.end, cut.width) for cut in cuts]
        if final:
            return out
        start += cuts[-1].end if cuts else 0


def test_sniff_finds_every_tensor_with_its_width():
    data, tensors = model_file(1)
    regions = sniff_regions(memoryview(data))
    tensor_regions = {r.name: r for r in regions if r.width}
    assert set(tensor_regions) == set(tensors)
    assert {n: r.width for n, r in tensor_regions.items()} == {
        "embed.weight": 4,
        "head_0.weight": 4,
        "step": 8,
        "scale": 2,
    }
    for name, region in tensor_regions.items():
        assert data[region.start : region.end] == tensors[name].tobytes()
    assert regions[0].start == 0 and regions[-1].end is None


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x05" + bytes(7) + b"{}",
        b"PK\x03\x04" + bytes(100),
        (20).to_bytes(8, "little") + b'{"a": {"dtype": 1}}   ',
        (10**12).to_bytes(8, "little") + b"{" + bytes(50),
    ],
)
def test_anything_else_is_one_opaque_stream(head):
    assert sniff_regions(memoryview(head)) == WHOLE_STREAM


def test_tensor_blocks_start_at_tensor_starts():
    data, _ = model_file(2)
    regions = [r for r in sniff_regions(memoryview(data)) if r.width]
    ends = {end for end, _ in cut_all(DEFAULT_CHUNKER, data, len(data))}
    for region in regions:
        assert region.end in ends  # every tensor ends a block ...
        inner = range(region.start + BLOCK, region.end, BLOCK)
        assert set(inner) <= ends  # ... and is cut every BLOCK bytes from its start


@settings(max_examples=25, deadline=None)
@given(window=st.integers(70_000, 900_000))
def test_cuts_do_not_depend_on_the_window_size(window):
    data, _ = model_file(3)
    assert cut_all(SMALL, data, window) == cut_all(SMALL, data, len(data))


def test_identical_tensor_dedups_across_files_with_other_headers(store):
    first, _ = model_file(4)
    second, _ = model_file(5, extra=7)  # other header, other tensor sizes before/after
    a = store.put("job", first)
    b = store.put("job", second)
    embed = 600_000 * 4
    assert b.stored_bytes < a.stored_bytes - 0.9 * embed / 1.3  # the frozen tensor costs nothing
    assert restore_bytes(store, b.checkpoint_id) == second


def test_tensor_blocks_are_encoded_with_their_element_width(store):
    data, _ = model_file(6)
    record = store.put("job", data)
    store.encode_deferred()  # its tensor blocks, stored raw, encoded whole
    codecs = {
        (rec.codec, rec.raw_len) for _, rec in store.context.catalog.manifest(record.checkpoint_id)
    }
    assert any(codec == Codec.EXPONENT_PLANES for codec, _ in codecs)  # planes, by exponent
    assert restore_bytes(store, record.checkpoint_id) == data
    assert store.verify(read_data=True).ok


def test_client_fingerprint_matches_the_store_on_safetensors(store):
    data, _ = model_file(7)
    record = store.put("job", data)
    stored = [
        (r.block_id, r.raw_len) for _, r in store.context.catalog.manifest(record.checkpoint_id)
    ]
    with ThreadPoolExecutor(2) as pool:
        assert fingerprint(data, store.context.chunker, pool, window_bytes=300_000) == stored


def test_stores_made_with_algorithm_1_keep_plain_cdc():
    v1 = {
        "algorithm_version": 1,
        "min_size": 1,
        "avg_size": 2,
        "max_size": 3,
        "normalized_chunking": 1,
    }
    assert ChunkerParams.from_dict(v1).tensor_block_bytes == 0
    assert ChunkerParams.from_dict(DEFAULT_CHUNKER.as_dict()) == DEFAULT_CHUNKER
    with pytest.raises(ValueError, match="version 4"):
        ChunkerParams.from_dict({**v1, "algorithm_version": 4})
