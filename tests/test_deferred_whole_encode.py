"""Tensor blocks stored raw by the put and encoded once, by the rebase that follows
the next save (as deltas or whole), or whole when no save follows."""

from __future__ import annotations

import dataclasses

import numpy as np

from ckptstore.store.codecs.ids import DELTA_CODECS, Codec
from ckptstore.store.rebase import chain_depths, deferred
from ckptstore.testing.formats import safetensors_bytes
from tests.conftest import restore_bytes
from tests.test_deltas import CONFIG as DELTAS_CONFIG
from tests.test_deltas import model

CONFIG = dataclasses.replace(DELTAS_CONFIG, defer_whole_encode=True)
WHOLE = dataclasses.replace(DELTAS_CONFIG, defer_whole_encode=False)


def tensor_codecs(store, checkpoint_id: str) -> list[int]:
    return [r.codec for r in store.context.catalog.slots(checkpoint_id).values()]


def raw_left(store, checkpoint_id: str) -> int:
    """How many of a checkpoint's tensor blocks are stored raw, still to be encoded."""
    return sum(deferred(r) for r in store.context.catalog.slots(checkpoint_id).values())


def save(store, step: int, job: str = "run") -> tuple[str, bytes]:
    data = safetensors_bytes(model(1, step), {"step": str(step)})
    return store.put(job, data, step=step).checkpoint_id, data


def test_put_stores_tensor_blocks_raw_and_the_rebase_encodes_them(open_store):
    store = open_store(config=CONFIG)
    first, data1 = save(store, 0)
    assert raw_left(store, first) > 0
    assert restore_bytes(store, first) == data1
    second, data2 = save(store, 1)
    store.settle()
    after = tensor_codecs(store, first)
    assert raw_left(store, first) == 0  # each block a delta or whole with the full codec
    assert any(codec in DELTA_CODECS for codec in after)
    assert raw_left(store, second) > 0  # the newest: until encoded
    assert restore_bytes(store, first) == data1
    assert restore_bytes(store, second) == data2
    assert store.verify(read_data=True).ok


def test_encode_deferred_encodes_the_newest_checkpoint_whole(open_store):
    store = open_store(config=CONFIG)
    ids = [save(store, step) for step in range(3)]
    store.settle()
    before = store.stats().stored_bytes
    store.encode_deferred()
    newest, data = ids[-1]
    assert raw_left(store, newest) == 0
    depths = chain_depths(store.context.catalog, store.context.catalog.slots(newest).values(), 8)
    assert set(depths.values()) == {0}  # the newest decodes no chain
    assert store.stats().stored_bytes < before
    for checkpoint_id, saved in ids:
        assert restore_bytes(store, checkpoint_id) == saved
    assert store.verify(read_data=True).ok


def test_close_encodes_the_raw_blocks_left(open_store, tmp_path):
    store = open_store(tmp_path / "s", config=CONFIG)
    newest, data = save(store, 0)
    store.close()
    store = open_store(tmp_path / "s", config=CONFIG)
    assert raw_left(store, newest) == 0
    assert restore_bytes(store, newest) == data


def test_gc_encodes_raw_blocks_of_checkpoints_older_than_its_grace(open_store, clock):
    store = open_store(config=CONFIG)
    newest, _ = save(store, 0)
    store.gc()
    assert raw_left(store, newest) > 0  # saved just now
    clock.advance(CONFIG.gc_grace_s + 1)
    store.gc()
    assert raw_left(store, newest) == 0
    assert store.verify(read_data=True).ok


def test_deferring_stores_each_block_in_no_more_bytes_than_encoding_at_each_put(
    open_store, tmp_path
):
    """Block by block (the packs around them may number one more or less)."""
    stored = {}
    for name, config in (("deferred", CONFIG), ("whole", WHOLE)):
        store = open_store(tmp_path / name, config=config)
        ids = [save(store, step)[0] for step in range(4)]
        store.settle()
        store.encode_deferred()
        catalog = store.context.catalog
        stored[name] = {r.block_id: r.stored_len for c in ids for _, r in catalog.manifest(c)}
    assert stored["deferred"].keys() == stored["whole"].keys()
    assert all(stored["deferred"][b] <= stored["whole"][b] for b in stored["whole"])
    assert sum(stored["deferred"].values()) <= sum(stored["whole"].values())


def test_a_raw_block_whose_delta_does_not_pay_is_encoded_whole(open_store):
    """Two unrelated tensors in one slot: no delta pays, so the older is stored whole
    with the full codec, as a put that encodes whole would have stored it."""
    stored = {}
    for name, config in (("deferred", CONFIG), ("whole", WHOLE)):
        store = open_store(config=config)
        rng = np.random.default_rng(0)
        tensors = [(rng.standard_normal(100_000) * 0.02).astype(np.float32) for _ in range(2)]
        first = store.put("run", safetensors_bytes({"w": tensors[0]}), step=0).checkpoint_id
        store.put("run", safetensors_bytes({"w": tensors[1]}), step=1)
        store.settle()
        stored[name] = store.context.catalog.slots(first)
        assert not any(r.codec in (*DELTA_CODECS, Codec.RAW) for r in stored[name].values())
    assert {s: r.stored_len for s, r in stored["deferred"].items()} == {
        s: r.stored_len for s, r in stored["whole"].items()
    }


def test_a_best_copy_whose_source_retention_deleted_is_encoded(open_store, clock):
    """The best copy shares its source's raw blocks; retention deletes the source before
    the next save's rebase runs, so no rebase encodes them: GC past the grace and close
    still must."""
    from ckptstore.store.policies import JobSettings

    store = open_store(config=CONFIG)
    store.set_job_settings("run", JobSettings(keep_automatic=1))
    data = safetensors_bytes(model(1, 0))
    first = store.put("run", data, step=0, metrics={"validationLoss": 0.1}).checkpoint_id
    store.put("run", safetensors_bytes(model(1, 1)), step=1, metrics={"validationLoss": 0.5})
    store.settle()
    (best,) = [c for c in store.list("run").checkpoints if c.type == "best"]
    assert best.parent_id == first
    assert raw_left(store, best.checkpoint_id) > 0  # the source is gone, its blocks kept
    clock.advance(CONFIG.gc_grace_s + 1)
    store.gc()
    assert raw_left(store, best.checkpoint_id) == 0
    assert restore_bytes(store, best.checkpoint_id) == data
    assert store.verify(read_data=True).ok


def test_raw_blocks_a_gc_moved_during_the_rebase_are_encoded_later(open_store, clock):
    """A GC move between the rebase's read and its re-pointing makes the catalog refuse
    the re-encoded entries; the parent's blocks, still raw, must not stay so."""
    store = open_store(config=CONFIG)
    catalog = store.context.catalog
    first, data1 = save(store, 0)
    original = catalog.reencode_blocks
    moved = []

    def moved_first(pack_id, size, records, *args, **kwargs):
        if not moved:  # as a GC merge would: every raw block of the parent moves
            from ckptstore.store.gc import _compact

            moved.append(True)
            for pack in {old.pack_id for old, _ in records}:
                _compact(store.context, pack)
        return original(pack_id, size, records, *args, **kwargs)

    catalog.reencode_blocks = moved_first
    save(store, 1)
    store.settle()
    catalog.reencode_blocks = original
    assert moved
    clock.advance(CONFIG.gc_grace_s + 1)
    store.gc()
    assert raw_left(store, first) == 0
    assert restore_bytes(store, first) == data1
    assert store.verify(read_data=True).ok


def test_gc_of_another_process_encodes_raw_blocks_past_the_grace(open_store, clock, tmp_path):
    """The process that saved never closes (it died, or it is another replica): the GC
    of any process on the store encodes what it left raw, once past the grace."""
    saver = open_store(tmp_path / "s", config=CONFIG)
    newest, data = save(saver, 0)
    other = open_store(tmp_path / "s", config=CONFIG)
    other.gc()
    assert raw_left(other, newest) > 0  # saved just now: its next save may come
    clock.advance(CONFIG.gc_grace_s + 1)
    other.gc()
    assert raw_left(other, newest) == 0
    assert restore_bytes(other, newest) == data
    assert other.verify(read_data=True).ok


def test_raw_blocks_of_an_upload_committed_without_slots_are_encoded(open_store):
    """A client sent tensor blocks with their width and slot (stored raw) but committed
    without slots: no rebase pairs them, yet they must not stay raw."""
    from ckptstore.store.ids import block_id

    store = open_store(config=CONFIG)
    rng = np.random.default_rng(3)
    data = (rng.standard_normal(64 * 1024) * 0.02).astype(np.float32).tobytes()
    upload = store.begin_upload("run")
    upload.put_block(block_id(data), data, width=4, slot="w/0")
    record = upload.commit([block_id(data)])
    manifest = [r for _, r in store.context.catalog.manifest(record.checkpoint_id)]
    assert any(deferred(r) for r in manifest)  # stored raw
    store.encode_deferred()
    manifest = [r for _, r in store.context.catalog.manifest(record.checkpoint_id)]
    assert not any(deferred(r) for r in manifest)
    assert restore_bytes(store, record.checkpoint_id) == data
    assert store.verify(read_data=True).ok


def test_gc_tries_a_raw_block_that_no_encoding_shrinks_only_once(
    open_store, clock, tmp_path, monkeypatch
):
    """Random bits stay raw once encoded (nothing smaller): later GC passes do not
    decode and encode them again, though they look like blocks still to encode."""
    from ckptstore.store import rebase

    saver = open_store(tmp_path / "s", config=CONFIG)
    bits = np.random.default_rng(5).integers(0, 2**32, 200_000, dtype=np.uint32)
    saver.put("run", safetensors_bytes({"noise": bits.view(np.float32)}), step=0)
    other = open_store(tmp_path / "s", config=CONFIG)  # the saver never closes
    clock.advance(CONFIG.gc_grace_s + 1)
    other.gc()
    encoded = []
    original = rebase._whole
    monkeypatch.setattr(rebase, "_whole", lambda *a: encoded.append(1) or original(*a))
    other.gc()
    other.gc()
    assert encoded == []


def test_gc_of_a_store_whose_puts_encode_reads_no_block_rows(open_store, clock, monkeypatch):
    """Looking for raw blocks other processes left reads every block row: a store
    whose puts encode at once (the default) does not pay for it at each GC."""
    store = open_store(config=WHOLE)
    save(store, 0)
    clock.advance(WHOLE.gc_grace_s + 1)

    reads = []
    every_row = store.context.catalog.iter_blocks
    monkeypatch.setattr(
        store.context.catalog, "iter_blocks", lambda: reads.append(1) or every_row()
    )
    store.gc()
    assert reads == []
