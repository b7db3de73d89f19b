"""NumPy .npy and .npz checkpoints are cut per array, like safetensors and torch.save."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.chunking.cutter import ChunkerParams
from ckptstore.store.chunking.segments import WHOLE_STREAM, sniff_regions
from ckptstore.store.chunking.torchzip import ZipSegmenter
from ckptstore.store.codecs.ids import Codec
from tests.conftest import TEST_CONFIG, restore_bytes
from tests.test_segments import cut_all

SMALL = ChunkerParams(16 * 1024, 64 * 1024, 256 * 1024, tensor_block_bytes=64 * 1024)
CONFIG = dataclasses.replace(TEST_CONFIG, chunker=SMALL)


def arrays(step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    weights = (rng.standard_normal(150_001) * 0.02).astype(np.float32)
    weights += np.float32(1e-5) * step
    return {
        "weights": weights,
        "halves": (rng.standard_normal(70_001) * 0.1).astype(np.float16),
        "counts": np.arange(30_001, dtype=np.int64) + step,
    }


def npz(step: int, compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays(step))
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def zip_regions(data: bytes) -> list:
    segmenter = ZipSegmenter()
    segmenter.advance(memoryview(data), 0, final=True)
    return segmenter.regions


def test_npy_array_is_one_tensor_region_with_its_width():
    array = arrays(0)["weights"]
    data = npy(array)
    tensors = [r for r in sniff_regions(memoryview(data)) if r.width]
    assert [(r.width, r.name) for r in tensors] == [(4, "array")]
    assert data[tensors[0].start : tensors[0].end] == array.tobytes()


def test_bad_npy_headers_are_opaque_and_still_round_trip(open_store):
    store = open_store(config=CONFIG)
    good = npy(arrays(0)["counts"])
    header_end = good.index(b"}") + 1
    for bad in (
        good[:10] + b"{'descr': __import__('os')" + good[header_end:],  # not a literal
        good.replace(b"<i8", b"|O8"),  # object arrays are not numbers
        good[:8] + b"\xff\xff" + good[10:],  # header longer than the file
    ):
        assert sniff_regions(memoryview(bad)) == WHOLE_STREAM
        assert restore_bytes(store, store.put("job", bad).checkpoint_id) == bad


def test_npz_members_are_tensor_regions():
    data = npz(0)
    tensors = {r.name: r for r in zip_regions(data) if r.width}
    assert {n: r.width for n, r in tensors.items()} == {
        "weights.npy": 4,
        "halves.npy": 2,
        "counts.npy": 8,
    }
    for name, array in arrays(0).items():
        region = tensors[f"{name}.npy"]
        assert data[region.start : region.end] == array.tobytes()


def test_compressed_npz_is_opaque_and_round_trips(open_store):
    data = npz(0, compressed=True)
    assert not [r for r in zip_regions(data) if r.width]
    store = open_store(config=CONFIG)
    assert restore_bytes(store, store.put("job", data).checkpoint_id) == data


def test_npz_checkpoints_of_a_job_are_stored_as_deltas(open_store):
    store = open_store(config=CONFIG)
    first, second = npz(0), npz(1)
    a = store.put("job", first)
    b = store.put("job", second)
    store.settle()
    codecs = [r.codec for _, r in store.context.catalog.manifest(a.checkpoint_id)]
    assert Codec.BIASED_DELTA in codecs  # the older one, on the newer
    assert restore_bytes(store, a.checkpoint_id) == first
    assert restore_bytes(store, b.checkpoint_id) == second


@settings(max_examples=20, deadline=None)
@given(window=st.integers(20_000, 400_000))
def test_npz_cuts_do_not_depend_on_the_window_size(window):
    data = npz(2)
    assert cut_all(SMALL, data, window) == cut_all(SMALL, data, len(data))
