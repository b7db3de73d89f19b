"""Consecutive small tensors share blocks (chunker algorithm 3), and those blocks pair
with the same group of the next save for deltas."""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.chunking import segments
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, BlockCutter, ChunkerParams, Cut
from ckptstore.store.chunking.fingerprint import iter_blocks
from ckptstore.store.chunking.segments import Region, group_small_tensors, sniff_regions
from ckptstore.store.codecs.ids import Codec
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import TEST_CONFIG, restore_bytes

GROUP = DEFAULT_CHUNKER.tensor_group_bytes
PER_TENSOR = dataclasses.replace(DEFAULT_CHUNKER, tensor_group_bytes=0)  # algorithm 2


def small_model(count: int, seed: int, changed: float = 0.0) -> dict[str, np.ndarray]:
    """``count`` float32 tensors of 64 to 1,024 elements; with ``changed``, that share
    of them (the same layout and names) took a small step from the seed-0 values."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(64, 1025, count)
    tensors = {
        f"layer.{i}.norm": (rng.standard_normal(n) * 0.02).astype(np.float32)
        for i, n in enumerate(sizes)
    }
    step = np.random.default_rng(seed)
    for values in tensors.values():
        if step.random() < changed:
            values += (step.standard_normal(len(values)) * 1e-3 * values).astype(np.float32)
    return tensors


def cuts_of(data: bytes, params: ChunkerParams, window: int) -> list[tuple[int, Cut]]:
    """(start, cut) of every block, with absolute ends, cut window by window."""
    with ThreadPoolExecutor(2) as pool:
        out, start = [], 0
        for blocks in iter_blocks(data, params, pool, window_bytes=window):
            for _, view, cut in blocks:
                out.append((start, cut._replace(end=start + len(view))))
                start += len(view)
    return out


def test_small_tensors_share_blocks_of_at_least_the_group_size():
    tensors = small_model(2_000, seed=0)
    data = safetensors_bytes(tensors)
    cuts = [(s, c) for s, c in cuts_of(data, DEFAULT_CHUNKER, 1 << 20) if c.width]
    assert len(cuts) < len(tensors) / 20
    assert all(c.end - s >= GROUP for s, c in cuts[:-1])  # only the last one is shorter
    assert all(c.end - s < 2 * GROUP for s, c in cuts)
    starts = {r.start for r in sniff_regions(memoryview(data)) if r.width}
    assert all(s in starts for s, _ in cuts)  # a block starts where a tensor starts
    assert all(
        c.width == 4 and re.fullmatch(r"layer\.\d+\.norm#0\+\d+", c.slot or "")
        for _, c in cuts[:-1]
    )
    assert sum(c.end - s for s, c in cuts) == sum(t.nbytes for t in tensors.values())


def test_stores_made_with_algorithm_2_keep_a_block_per_tensor():
    tensors = small_model(300, seed=0)
    cuts = [c for _, c in cuts_of(safetensors_bytes(tensors), PER_TENSOR, 1 << 20) if c.width]
    assert [c.slot for c in cuts] == [f"{name}#0" for name in tensors]
    stored = ChunkerParams.from_dict(PER_TENSOR.as_dict())
    assert stored == PER_TENSOR and stored.algorithm_version == 2
    assert ChunkerParams.from_dict(DEFAULT_CHUNKER.as_dict()) == DEFAULT_CHUNKER
    assert DEFAULT_CHUNKER.as_dict()["algorithm_version"] == 3


def test_group_slots_and_lengths_are_the_same_in_a_later_save():
    first = safetensors_bytes(small_model(1_000, seed=0), {"step": "1"})
    later = safetensors_bytes(small_model(1_000, seed=1, changed=0.3), {"step": "2"})
    a = [(c.slot, c.end - s) for s, c in cuts_of(first, DEFAULT_CHUNKER, 1 << 20) if c.width]
    b = [(c.slot, c.end - s) for s, c in cuts_of(later, DEFAULT_CHUNKER, 1 << 20) if c.width]
    assert a == b
    assert len({slot for slot, _ in a}) == len(a)
    assert a[0][0] == "layer.0.norm#0+" + a[0][0].split("+")[1]  # <first tensor>#<index>+<n>


def test_groups_close_at_gaps_dtype_changes_and_large_tensors():
    def t(start: int, n: int, dtype: str = "F32", width: int = 4) -> Region:
        return Region(start, start + n, width, f"t{start}", dtype)

    regions = [
        Region(0, 100, 0),
        t(100, 40),
        t(140, 40),
        Region(180, 200, 0),  # opaque bytes between: a new group
        t(200, 40),
        t(240, 40, "I32"),  # another dtype of the same width
        t(280, 40, "I32"),
        t(320, 100),  # not small: a block of its own
        t(420, 60),
        t(480, 60),  # the group reaches 100 bytes: it closes
        t(540, 8),
        Region(548, None, 0),
    ]
    grouped = group_small_tensors(regions, 100, 100, 200)
    assert [(r.start, r.end, r.tensors) for r in grouped] == [
        (0, 100, 1),
        (100, 180, 2),
        (180, 200, 1),
        (200, 240, 1),
        (240, 320, 2),
        (320, 420, 1),
        (420, 540, 2),
        (540, 548, 1),
        (548, None, 1),
    ]
    assert grouped[1].slot(0) == "t100#0+2" and grouped[3].slot(0) == "t200#0"
    capped = group_small_tensors(regions, 100, 100, max_bytes=110)  # a group stays one block
    # tensors of 60 bytes are not small under 50: alone, though under the group size
    fewer = group_small_tensors(regions, 50, 100, 200)
    assert [r.tensors for r in fewer] == [1, 2, 1, 1, 2, 1, 1, 1, 1, 1]
    assert [(r.start, r.end) for r in capped[6:8]] == [(420, 480), (480, 548)]


@settings(max_examples=20, deadline=None)
@given(window=st.integers(20_000, 600_000))
def test_cuts_do_not_depend_on_the_window_size_even_within_the_header(window):
    # ~2,500 tensors: a header of about 200 KB, longer than the smallest windows
    data = safetensors_bytes(small_model(2_500, seed=2))
    whole = cuts_of(data, DEFAULT_CHUNKER, len(data))
    assert cuts_of(data, DEFAULT_CHUNKER, window) == whole
    assert sum(1 for _, c in whole if c.width) < 200  # the tensors were found


def test_a_header_longer_than_the_first_window_still_finds_the_tensors():
    data = safetensors_bytes(small_model(2_500, seed=3))
    cutter = BlockCutter(DEFAULT_CHUNKER)
    assert cutter.cut(memoryview(data)[:50_000], 0, final=False) == []  # wait for it all
    cuts = cutter.cut(memoryview(data), 0, final=True)
    assert sum(1 for c in cuts if c.width) < 200


def test_a_header_longer_than_the_carried_limit_leaves_the_stream_opaque(monkeypatch):
    data = safetensors_bytes(small_model(2_500, seed=3))  # a header of about 200 KB
    monkeypatch.setattr(segments, "MAX_CARRIED_HEADER_BYTES", 100_000)
    cuts = cuts_of(data, DEFAULT_CHUNKER, 50_000)
    assert not any(c.width for _, c in cuts)  # cut as bytes, the way any window sees it


@pytest.fixture
def store(open_store):
    config = dataclasses.replace(TEST_CONFIG, chunker=DEFAULT_CHUNKER)
    return open_store(config=config)


def test_a_second_save_with_30_percent_changed_is_stored_as_deltas_on_groups(store):
    data1 = safetensors_bytes(small_model(3_000, seed=0), {"step": "1"})
    data2 = safetensors_bytes(small_model(3_000, seed=1, changed=0.3), {"step": "2"})
    first = store.put("job", data1).checkpoint_id
    store.settle()
    alone = store.stats().stored_bytes
    second = store.put("job", data2).checkpoint_id
    store.settle()
    manifest = store.context.catalog.manifest(first)
    grouped = [r for _, r in manifest if r.width and r.raw_len >= GROUP]
    assert len(grouped) > 10
    assert all(r.codec == Codec.BIASED_DELTA for r in grouped)  # paired with save 2's groups
    both = store.stats().stored_bytes
    assert both < 1.4 * alone  # the second save costs a small delta
    assert restore_bytes(store, first) == data1
    assert restore_bytes(store, second) == data2
    assert store.verify(read_data=True).ok
