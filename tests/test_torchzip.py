"""Tensor-aware cutting of torch.save archives, found entry by entry in the stream."""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, ChunkerParams
from ckptstore.store.chunking.fingerprint import fingerprint
from ckptstore.store.chunking.torchzip import ZipSegmenter, storage_layout, storage_widths
from tests.conftest import restore_bytes
from tests.test_segments import cut_all

SMALL = ChunkerParams(16 * 1024, 64 * 1024, 256 * 1024, tensor_block_bytes=100_000)


def state(head_seed: int) -> dict:
    torch.manual_seed(0)
    frozen = torch.randn(500_000)  # the same in every save
    torch.manual_seed(head_seed)
    return {
        "frozen": frozen,
        "head": torch.randn(200_003),
        "half": torch.randn(3000).half(),
        "bf": torch.randn(5000).bfloat16(),
        "ids": torch.arange(1000),
        "step": head_seed,
    }


def saved(obj, name: str = "checkpoint") -> bytes:
    """torch.save output as written to a file named ``name``.pt (the archive takes the name)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pt"
        torch.save(obj, path)
        return path.read_bytes()


def segment(data: bytes):
    segmenter = ZipSegmenter()
    segmenter.advance(memoryview(data), 0, final=True)
    return segmenter.regions


def test_pickle_scan_finds_every_storage_width():
    data = saved(state(1))
    archive = zipfile.ZipFile(io.BytesIO(data))
    pickle = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert sorted(storage_widths(pickle).values()) == [2, 2, 4, 4, 8]


def test_storage_lengths_from_the_pickle_match_the_entries():
    data = saved(state(1), name="ck")
    archive = zipfile.ZipFile(io.BytesIO(data))
    pickle = archive.read("ck/data.pkl")
    layout = storage_layout(pickle)
    assert {key: size for key, (_, size) in layout.items()} == {
        name.removeprefix("ck/data/"): archive.getinfo(name).file_size
        for name in archive.namelist()
        if name.startswith("ck/data/")
    }


def test_a_pickle_that_lies_about_lengths_still_restores_bit_exact(store):
    data = bytearray(saved(state(4), name="ck"))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("ck/data.pkl")
    pickle = archive.read(info)
    key, (width, size) = next(iter(storage_layout(pickle).items()))
    # shrink one storage's element count in place (same encoding length), so the
    # descriptor is not where the pickle says; zip CRCs are not checked on this path
    numel = size // width
    start = data.index(pickle)
    packed = numel.to_bytes(4, "little")
    at = data.index(packed, start, start + len(pickle))
    data[at : at + 4] = (numel - 1).to_bytes(4, "little")
    assert storage_layout(bytes(data[start : start + len(pickle)]))[key][1] == size - width
    assert restore_bytes(store, store.put("job", bytes(data)).checkpoint_id) == bytes(data)
    assert cut_all(SMALL, bytes(data), 70_000) == cut_all(SMALL, bytes(data), len(data))


def test_tensor_regions_are_the_archive_entries():
    data = saved(state(2), name="epoch_2")
    archive = zipfile.ZipFile(io.BytesIO(data))
    tensors = {r.name: r for r in segment(data) if r.width}
    storages = [n for n in archive.namelist() if "/data/" in n]
    assert all(n.startswith("epoch_2/data/") for n in storages)
    # regions are named inside the archive folder, which takes the file's name
    assert {f"epoch_2/{name}" for name in tensors} == set(storages)
    for name, region in tensors.items():
        assert data[region.start : region.end] == archive.read(f"epoch_2/{name}")
    widths = sorted(r.width for r in tensors.values())
    assert widths == [2, 2, 4, 4, 8]


@settings(max_examples=20, deadline=None)
@given(window=st.integers(50_000, 600_000))
def test_cuts_do_not_depend_on_the_window_size(window):
    data = saved(state(3))
    assert cut_all(SMALL, data, window) == cut_all(SMALL, data, len(data))


def test_frozen_tensor_dedups_across_saves_with_other_names(store):
    first = saved(state(4), name="step_100")
    second = saved(state(5), name="step_200")  # other archive name in every entry header
    store.put("job", first)
    again = store.put("job", second)
    frozen_bytes = 500_000 * 4
    assert again.stored_bytes < len(second) - 0.95 * frozen_bytes
    assert restore_bytes(store, again.checkpoint_id) == second
    assert store.verify(read_data=True).ok


def test_client_fingerprint_matches_the_store_on_torch_archives(store):
    data = saved(state(6))
    record = store.put("job", data)
    stored = [
        (r.block_id, r.raw_len) for _, r in store.context.catalog.manifest(record.checkpoint_id)
    ]
    with ThreadPoolExecutor(2) as pool:
        assert fingerprint(data, store.context.chunker, pool, window_bytes=300_000) == stored


def test_zip_with_sizes_in_its_headers_is_segmented_too(store):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model/data.pkl", b"not a pickle")
        archive.writestr("model/data/0", bytes(range(256)) * 4000)
    data = buf.getvalue()
    regions = segment(data)
    assert any(
        r.name == "data/0" and data[r.start : r.end] == bytes(range(256)) * 4000 for r in regions
    )
    assert restore_bytes(store, store.put("job", data).checkpoint_id) == data


@pytest.mark.parametrize("data", [b"PK\x03\x04" + bytes(10), b"PK\x03\x04" + b"\xff" * 5000])
def test_broken_zips_still_round_trip(store, data):
    assert restore_bytes(store, store.put("job", data).checkpoint_id) == data


def test_default_block_size_is_used_for_torch_tensors():
    data = saved(state(7))
    ends = {end for end, _ in cut_all(DEFAULT_CHUNKER, data, 4 << 20)}
    frozen = next(r for r in segment(data) if r.width == 4 and r.end - r.start == 2_000_000)
    assert frozen.start + DEFAULT_CHUNKER.tensor_block_bytes in ends and frozen.end in ends
