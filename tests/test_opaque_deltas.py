"""Deltas of bytes that are not a tensor's (codec 8): a pickled training state edited
in place at every save is stored as zstd frames on the next save's blocks, paired by
place (counterparts.py); lossless, bounded like tensor deltas, kept alive by GC."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptstore.store.catalog.records import BlockRecord, FileRecord
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import Codec, DecodeError
from ckptstore.store.counterparts import Placed, counterparts
from ckptstore.store.rebase import chain_depths
from tests.conftest import TEST_CONFIG, restore_bytes

VALUES = 150_000  # floats and ints of the pickled state: a pickle of about 2 MB
EDITS = 300  # values changed per save


def training_state(step: int, seed: int = 0) -> bytes:
    """A pickled data-loader and scheduler state where ``EDITS`` values change per save,
    scattered over the whole file (a few ints grow a byte in their pickle)."""
    rng = np.random.default_rng(seed)
    losses = rng.standard_normal(VALUES)
    counts = rng.integers(0, 200, VALUES)
    for k in range(1, step + 1):
        edits = np.random.default_rng(seed + 1000 * k)
        at = edits.integers(0, VALUES, EDITS)
        losses[at] += edits.standard_normal(EDITS)
        counts[at[: EDITS // 3]] += 300  # an int that needs a wider pickle opcode
    state = {
        "step": step,
        "losses": losses.tolist(),
        "counts": counts.tolist(),
        "sampler": {"epoch": step // 10, "seed": seed},
    }
    return pickle.dumps(state, protocol=4)


def save_states(store, steps: int, job: str = "run") -> list[tuple[str, bytes]]:
    saved = []
    for step in range(steps):
        data = training_state(step)
        saved.append((store.put(job, data, step=step).checkpoint_id, data))
    store.settle()
    return saved


def codecs_of(store, checkpoint_id: str) -> list[int]:
    return [r.codec for _, r in store.context.catalog.manifest(checkpoint_id)]


def test_scattered_edits_are_stored_as_deltas_on_the_next_save(open_store, tmp_path):
    whole = open_store(tmp_path / "whole", dataclasses.replace(TEST_CONFIG, delta_max_depth=0))
    whole_saved = save_states(whole, 4)
    store = open_store(tmp_path / "deltas")
    saved = save_states(store, 4)
    *older, (newest, _) = saved
    for checkpoint_id, _ in older:
        assert Codec.ZSTD_PREFIX in codecs_of(store, checkpoint_id)
    assert Codec.ZSTD_PREFIX not in codecs_of(store, newest)
    # every block of a save was touched: stored whole, four saves cost four copies
    assert whole.stats().stored_bytes > 3 * whole.get(whole_saved[-1][0]).stored_bytes
    assert store.stats().stored_bytes < 0.4 * whole.stats().stored_bytes
    for checkpoint_id, data in saved:
        assert restore_bytes(store, checkpoint_id) == data
    assert store.verify(read_data=True).ok


def test_chains_of_opaque_deltas_stay_within_the_configured_depth(open_store):
    store = open_store(config=dataclasses.replace(TEST_CONFIG, delta_max_depth=2))
    saved = save_states(store, 5)
    for checkpoint_id, data in saved:
        records = [r for _, r in store.context.catalog.manifest(checkpoint_id)]
        depths = chain_depths(store.context.catalog, records, limit=100)
        assert max(depths.values()) <= 2
        assert restore_bytes(store, checkpoint_id) == data


def test_gc_keeps_the_bases_of_opaque_deltas(store, clock):
    (first, data1), (second, _), (third, data3) = save_states(store, 3)
    catalog = store.context.catalog
    bases = {r.base_id for _, r in catalog.manifest(first) if r.codec == Codec.ZSTD_PREFIX}
    assert bases
    store.delete(second)  # its blocks are the bases of the first's deltas
    assert store.gc().blocks_materialized == 0  # within the grace period: kept as they are
    assert {r.block_id for r in catalog.iter_blocks()} >= bases
    assert restore_bytes(store, first) == data1
    clock.advance(TEST_CONFIG.gc_grace_s + 1)
    assert store.gc().blocks_materialized > 0  # then the first's deltas are stored whole
    assert Codec.ZSTD_PREFIX not in codecs_of(store, first)
    assert restore_bytes(store, first) == data1
    assert restore_bytes(store, third) == data3
    assert store.verify(read_data=True).ok


def test_folder_files_are_paired_by_path(store, tmp_path):
    def folder(step: int, name: str) -> Path:
        root = tmp_path / f"ckpt{step}"
        (root / "sub").mkdir(parents=True)
        (root / name).write_bytes(training_state(step))
        (root / "sub" / "rng_state.pth").write_bytes(os.urandom(10_000))
        return root

    first = store.put("run", folder(0, "state.pkl")).checkpoint_id
    second = store.put("run", folder(1, "state.pkl")).checkpoint_id
    third = store.put("run", folder(2, "renamed.pkl")).checkpoint_id  # no file to pair
    store.settle()
    assert Codec.ZSTD_PREFIX in codecs_of(store, first)
    assert Codec.ZSTD_PREFIX not in codecs_of(store, second)
    for step, checkpoint_id in enumerate((first, second, third)):
        out = tmp_path / f"out{step}"
        store.restore(checkpoint_id, out)
        name = "renamed.pkl" if step == 2 else "state.pkl"
        assert (out / name).read_bytes() == training_state(step)
    assert store.verify(read_data=True).ok


def test_bytes_inserted_early_still_pair_the_blocks_after_them(store):
    base = training_state(0)
    grown = base[:1000] + os.urandom(50_000) + base[1000:]
    edited = bytearray(grown)
    for at in range(5_000, len(edited), 20_000):  # scattered edits in every block
        edited[at] ^= 0xFF
    first = store.put("run", base).checkpoint_id
    second = store.put("run", bytes(edited)).checkpoint_id
    store.settle()
    catalog = store.context.catalog
    deltas = [r for _, r in catalog.manifest(first) if r.codec == Codec.ZSTD_PREFIX]
    whole = [r for _, r in catalog.manifest(first) if r.base_id is None]
    assert sum(r.stored_len for r in deltas) < 0.1 * sum(r.raw_len for r in deltas)
    assert len(deltas) > len(whole)
    assert restore_bytes(store, first) == base
    assert restore_bytes(store, second) == bytes(edited)


def record(n: int, raw_len: int, codec: int = Codec.ZSTD) -> BlockRecord:
    return BlockRecord(n.to_bytes(32, "big"), "p", 0, raw_len, raw_len, codec, header_len=0)


def placed(blocks: list[BlockRecord], path: str = "f", single: bool = True) -> Placed:
    manifest, at = [], 0
    for block in blocks:
        manifest.append((at, block))
        at += block.raw_len
    return Placed(manifest, [FileRecord(path, 0, at, 0o644)], single)


def test_counterparts_follow_shared_blocks_and_skip_tensor_and_shared_ones():
    a, b, c, d, e = (record(n, 100) for n in range(1, 6))
    grown = record(6, 300)  # 200 bytes inserted: the blocks after it moved
    old = placed([a, b, c, d, e])
    new = placed([a, grown, record(7, 100), record(8, 100), e])
    pairs = {x.block_id[-1]: y.block_id[-1] for x, y in counterparts(old, new, {d.block_id})}
    # b's middle (150) falls in the grown block; c's (250), shifted by nothing yet, too;
    # d is a tensor's block; a and e are held by both
    assert pairs == {2: 6, 3: 6}
    twice = placed([b, b])  # a block a file holds twice is re-encoded once
    assert len(counterparts(twice, placed([record(7, 200)]), set())) == 1
    moved = placed([a, record(9, 200), b, c, d, e])
    assert {x.block_id[-1]: y.block_id[-1] for x, y in counterparts(old, moved, set())} == {}


def test_counterparts_leave_raw_blocks_of_a_file_that_shares_no_block():
    """Random bytes rewritten each save: not read and compressed for nothing; but a raw
    block next to a block both files hold may hold bytes the newer one has too."""
    fresh = placed([record(1, 100, Codec.RAW), record(2, 100)])
    new = placed([record(3, 100), record(4, 100)])
    assert [x.block_id[-1] for x, _ in counterparts(fresh, new, set())] == [2]
    shared = placed([record(1, 100, Codec.RAW), record(4, 100)])
    assert [x.block_id[-1] for x, _ in counterparts(shared, new, set())] == [1]


def test_counterparts_pair_files_of_a_tree_by_path_only():
    old = placed([record(1, 100)], "a.pkl", single=False)
    assert counterparts(old, placed([record(2, 100)], "b.pkl", single=False), set()) == []
    pairs = counterparts(old, placed([record(2, 100)], "a.pkl", single=False), set())
    assert [(x.block_id[-1], y.block_id[-1]) for x, y in pairs] == [(1, 2)]
    # checkpoints of one file pair whatever the file's name (it names the checkpoint)
    assert len(counterparts(placed([record(1, 100)], "x"), placed([record(2, 9)], "y"), set()))


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=5000), st.binary(min_size=8, max_size=5000), st.integers(0, 50))
def test_prefixed_codec_round_trips_any_bytes(raw, base, flips):
    codec = BlockCodec()
    edited = bytearray(base[: len(raw)]) + raw[len(base) :] if flips else bytearray(raw)
    for i in range(min(flips, len(edited))):
        edited[(i * 97) % len(edited)] ^= 0x5A
    encoded = codec.encode_prefixed(memoryview(bytes(edited)), base, limit=10**9)
    assert encoded is not None and encoded[0] == Codec.ZSTD_PREFIX
    assert bytes(codec.decode(encoded[0], encoded[1], len(edited), base)) == edited


def test_prefixed_codec_finds_the_base_across_a_large_block():
    codec = BlockCodec()
    base = os.urandom(4 * 1024 * 1024)
    raw = bytearray(base)
    raw[100] ^= 1  # an edit at the start: its match lies a whole block back
    encoded = codec.encode_prefixed(memoryview(bytes(raw)), base, limit=len(raw))
    assert encoded is not None and len(encoded[1]) < len(raw) // 100
    assert bytes(codec.decode(encoded[0], encoded[1], len(raw), base)) == raw


def test_prefixed_codec_needs_its_base_and_keeps_only_what_pays():
    """(A wrong base decodes to wrong bytes: the block id, checked on every read, tells.)"""
    codec = BlockCodec()
    raw = os.urandom(10_000)
    assert codec.encode_prefixed(memoryview(raw), os.urandom(10_000), limit=10_000) is None
    assert codec.encode_prefixed(memoryview(raw), raw[:7], limit=10**9) is None  # too short
    codec_id, payload = codec.encode_prefixed(memoryview(raw), raw, limit=10_000)  # type: ignore[misc]
    with pytest.raises(DecodeError):
        codec.decode(codec_id, payload, len(raw))


def test_an_opaque_delta_that_does_not_decode_back_is_never_kept(store, monkeypatch, caplog):
    real = BlockCodec.decode

    def corrupting(self, codec, payload, raw_len, base=None, out=None):
        decoded = bytearray(real(self, codec, payload, raw_len, base))
        if codec == Codec.ZSTD_PREFIX:
            decoded[0] ^= 1
        return decoded

    monkeypatch.setattr(BlockCodec, "decode", corrupting)
    (first, data1), _ = save_states(store, 2)
    monkeypatch.setattr(BlockCodec, "decode", real)
    assert "does not decode back" in caplog.text
    assert Codec.ZSTD_PREFIX not in codecs_of(store, first)
    assert restore_bytes(store, first) == data1


def test_counterparts_never_pair_with_a_tensor_block():
    """A small header whose place moved into a tensor's block: zstd would read the
    whole tensor block as a prefix for a few bytes that it cannot hold."""
    header, tensor = record(1, 100), record(2, 1000)
    old = placed([header, record(3, 1000)])
    new = placed([tensor, record(4, 100)])
    assert [y.block_id[-1] for _, y in counterparts(old, new, set())] == [2, 2]
    assert counterparts(old, new, {tensor.block_id, record(3, 1000).block_id}) == []


def test_blocks_stored_in_a_few_bytes_are_not_tried(store, tmp_path, monkeypatch):
    """A zstd frame that refers to its prefix is not smaller than a block stored in
    OPAQUE_MIN_STORED bytes: such a block (a zip header between tensors) is left as it
    is, its base not read and compressed for nothing."""
    tried: list[int] = []
    real = BlockCodec.encode_prefixed

    def counted(self, raw, base, limit):
        tried.append(len(raw))
        return real(self, raw, base, limit)

    monkeypatch.setattr(BlockCodec, "encode_prefixed", counted)
    # zeros find no cut before the largest block: one block both saves hold, then 16
    # bytes that change (stored raw, and tried since the files share a block)
    for step, fill in enumerate((b"\1", b"\2")):
        folder = tmp_path / f"step{step}"
        folder.mkdir()
        (folder / "flag.bin").write_bytes(bytes(1 << 20) + fill * 16)
        (folder / "state.pkl").write_bytes(training_state(step))
        store.put("run", folder, step=step)
    store.settle()
    assert tried and min(tried) > 16
