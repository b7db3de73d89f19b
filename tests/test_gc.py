"""Delete and GC: space comes back, nothing live or leased is ever lost."""

from __future__ import annotations

import dataclasses

import pytest

from ckptstore.store.packs.format import HEADER
from tests.conftest import (
    PER_TENSOR_CONFIG,
    TEST_CONFIG,
    client_blocks,
    random_bytes,
    restore_bytes,
)

MB = 1_000_000
GRACE = TEST_CONFIG.gc_grace_s


def test_gc_after_delete_matches_store_that_never_held_it(open_store, tmp_path, clock):
    shared = random_bytes(6 * MB, seed=10)
    only_a = random_bytes(6 * MB, seed=11)
    only_b = random_bytes(6 * MB, seed=12)
    a_data, b_data = shared + only_a, only_b + shared

    both = open_store(tmp_path / "both")
    a = both.put("job", a_data)
    b = both.put("job", b_data)
    both.delete(a.checkpoint_id)
    clock.advance(GRACE + 1)
    report = both.gc()
    assert report.blocks_removed > 0

    never = open_store(tmp_path / "never")
    never.put("job", b_data)
    # the packs' bytes, wherever the store keeps them (a directory or a bucket)
    used, baseline = (sum(o.size for o in s.context.blocks.list()) for s in (both, never))
    assert abs(used - baseline) <= 0.05 * baseline
    assert restore_bytes(both, b.checkpoint_id) == b_data
    assert both.verify(read_data=True).ok


def test_gc_within_grace_keeps_deleted_blocks(store, clock):
    ck = store.put("job", random_bytes(2 * MB, seed=1))
    before = store.stats().stored_bytes
    store.delete(ck.checkpoint_id)
    clock.advance(GRACE - 1)
    assert store.gc().blocks_removed == 0
    assert store.stats().stored_bytes == before
    clock.advance(2)
    report = store.gc()
    assert report.blocks_removed > 0 and report.packs_deleted > 0
    assert store.stats().stored_bytes == 0


def test_deleting_everything_empties_the_store(store, clock, tmp_path):
    ids = [store.put("job", random_bytes(MB, seed=i)).checkpoint_id for i in range(3)]
    for checkpoint_id in ids:
        store.delete(checkpoint_id)
    clock.advance(GRACE + 1)
    store.gc()
    stats = store.stats()
    assert (stats.blocks, stats.packs, stats.stored_bytes) == (0, 0, 0)
    assert list(store.context.blocks.list()) == []


def test_partially_dead_pack_is_compacted(open_store, tmp_path, clock):
    from dataclasses import replace

    store = open_store(config=replace(TEST_CONFIG, pack_target_bytes=64 * MB))
    keep_part = random_bytes(2 * MB, seed=20)
    drop_part = random_bytes(2 * MB, seed=21)
    both = store.put("job", keep_part + drop_part)  # one pack holds both halves
    keep = store.put("job", keep_part)
    store.settle()  # the rebase of the first onto the second writes no pack meanwhile
    store.delete(both.checkpoint_id)
    clock.advance(GRACE + 1)
    report = store.gc()
    assert report.packs_compacted == 1
    packs = store.context.catalog.pack_usage()
    assert all(p.size - HEADER.size == p.live_bytes for p in packs)  # nothing dead left
    assert sum(p.size for p in packs) < 2.2 * MB
    assert restore_bytes(store, keep.checkpoint_id) == keep_part
    assert store.verify(read_data=True).ok


def test_reader_survives_compaction_of_its_pack(open_store, clock):
    from dataclasses import replace

    store = open_store(config=replace(TEST_CONFIG, pack_target_bytes=64 * MB, readahead_bytes=0))
    keep_part, drop_part = random_bytes(2 * MB, seed=30), random_bytes(2 * MB, seed=31)
    both = store.put("job", drop_part + keep_part)
    keep = store.put("job", keep_part)
    reader = store.open_reader(keep.checkpoint_id)  # holds pre-compaction locations
    store.delete(both.checkpoint_id)
    clock.advance(GRACE + 1)
    assert store.gc().packs_compacted == 1
    assert reader.read() == keep_part
    reader.close()


def test_leased_block_survives_gc_and_upload_commits(store, clock):
    data = random_bytes(3 * MB, seed=40)
    old = store.put("job", data)
    ids = [rec.block_id for _, rec in store.context.catalog.manifest(old.checkpoint_id)]
    upload = store.begin_upload("job")
    assert upload.missing(ids) == []  # every block present, now leased
    store.delete(old.checkpoint_id)
    clock.advance(GRACE + 1)  # past the grace period, within the lease
    assert store.gc().blocks_removed == 0
    new = upload.commit(ids)
    assert restore_bytes(store, new.checkpoint_id) == data


def test_expired_lease_no_longer_protects(store, clock):
    data = random_bytes(MB, seed=41)
    old = store.put("job", data)
    ids = [rec.block_id for _, rec in store.context.catalog.manifest(old.checkpoint_id)]
    upload = store.begin_upload("job")
    upload.missing(ids)
    store.delete(old.checkpoint_id)
    clock.advance(TEST_CONFIG.lease_ttl_s + 1)
    assert store.gc().blocks_removed == len(set(ids))
    import pytest

    from ckptstore.errors import BlocksNotUploaded

    with pytest.raises(BlocksNotUploaded):
        upload.commit(ids)


@pytest.mark.local_blocks_only  # reaches into the pack files
def test_gc_without_grace_leaves_the_pack_a_writer_is_about_to_record(open_store, clock):
    """Found by test_stress: with gc_grace_s 0, GC deleted a durable pack before its
    writer recorded it, and the temporary file of a pack being written; the
    checkpoint then committed on blocks whose bytes were gone."""
    import os
    from dataclasses import replace

    store = open_store(config=replace(TEST_CONFIG, gc_grace_s=0.0))
    blocks = store.context.blocks
    blocks.put("deadbeef02", b"durable, the catalog insert still to come")
    pending = blocks.begin("deadbeef03")
    pending.write(b"half a pack")
    for path in blocks.root.glob("de/deadbeef0*"):  # written a moment before GC looks
        os.utime(path, (clock.now - 1, clock.now - 1))
    report = store.gc()
    assert (report.orphan_packs_deleted, report.temp_files_deleted) == (0, 0)
    pending.commit()  # the writer goes on: both packs are there to record
    assert {"deadbeef02", "deadbeef03"} <= {obj.name for obj in blocks.list()}


@pytest.mark.local_blocks_only  # reaches into the pack files
def test_orphan_pack_and_temp_files_are_reclaimed_after_grace_and_lease_ttl(store, clock):
    blocks = store.context.blocks
    store.put("job", random_bytes(MB, seed=50))
    blocks.put("deadbeef00", b"a pack the catalog never heard of")
    temp = blocks.root / "de" / "deadbeef01.pack.tmp-x"
    temp.write_bytes(b"half a pack")
    import os

    os.utime(temp, (clock.now, clock.now))
    os.utime(blocks.root / "de" / "deadbeef00.pack", (clock.now, clock.now))
    assert store.gc().orphan_packs_deleted == 0
    clock.advance(GRACE + 1)  # a writer may still be working on them
    report = store.gc()
    assert (report.orphan_packs_deleted, report.temp_files_deleted) == (0, 0)
    clock.advance(TEST_CONFIG.lease_ttl_s)
    report = store.gc()
    assert (report.orphan_packs_deleted, report.temp_files_deleted) == (1, 1)
    assert store.verify(read_data=True).ok


def test_long_upload_renews_its_leases(store, clock):
    data = random_bytes(MB, seed=60)
    old = store.put("job", data)
    ids = [rec.block_id for _, rec in store.context.catalog.manifest(old.checkpoint_id)]
    upload = store.begin_upload("job")
    assert upload.missing(ids) == []
    store.delete(old.checkpoint_id)
    for _ in range(4):  # the client keeps working for longer than one lease TTL
        clock.advance(TEST_CONFIG.lease_ttl_s / 2)
        upload.put_block(*_block(b"keepalive"))
        assert store.gc().blocks_removed == 0
    assert restore_bytes(store, upload.commit(ids).checkpoint_id) == data


def _block(data: bytes) -> tuple[bytes, bytes]:
    from ckptstore.store.ids import block_id

    return block_id(data), data


PER_TENSOR = PER_TENSOR_CONFIG  # the small tensors below: hundreds of tiny blocks in a row


def small_tensors(seed: int, count: int = 300, scratch: int = 0) -> bytes:
    """A safetensors file of many small tensors (hundreds of small blocks in a row),
    then ``scratch`` random bytes as one more tensor."""
    import numpy as np

    from ckptstore.testing.formats import safetensors_bytes

    rng = np.random.default_rng(seed)
    sizes = rng.integers(100, 3000, count)
    tensors = {
        f"norm.{i}": rng.standard_normal(int(n)).astype(np.float32) for i, n in enumerate(sizes)
    }
    if scratch:
        tensors["scratch"] = np.frombuffer(random_bytes(scratch, seed=seed + 1), np.uint8)
    return safetensors_bytes(tensors)


def test_small_blocks_in_a_row_are_read_at_once(open_store, monkeypatch):
    store = open_store(config=PER_TENSOR)
    data = small_tensors(seed=40)
    record = store.put("job", data)
    blocks = store.context.catalog.manifest(record.checkpoint_id)
    reads: list[int] = []
    real_get = store.context.blocks.get

    def get(name, offset=0, length=None):
        reads.append(length)
        return real_get(name, offset, length)

    monkeypatch.setattr(store.context.blocks, "get", get)
    assert restore_bytes(store, record.checkpoint_id) == data
    assert len(blocks) > 300 and len(reads) < len(blocks) / 10


def test_reader_of_small_blocks_survives_compaction_of_their_pack(open_store, clock):
    # Puts that encode whole: raw blocks would have the background rebase re-encode
    # the first checkpoint and compact its pack before GC comes to it.
    config = dataclasses.replace(
        PER_TENSOR, pack_target_bytes=64 * MB, readahead_bytes=0, defer_whole_encode=False
    )
    store = open_store(config=config)
    keep_part = small_tensors(seed=41)
    both = store.put("job", small_tensors(seed=41, scratch=2 * MB))  # one pack: both
    keep = store.put("job", keep_part)  # the same small blocks, deduplicated
    reader = store.open_reader(keep.checkpoint_id)  # holds pre-compaction locations
    store.delete(both.checkpoint_id)
    clock.advance(GRACE + 1)
    assert store.gc().packs_compacted == 1
    assert reader.read() == keep_part  # each run's pack is gone: its blocks are followed
    reader.close()


@pytest.mark.local_blocks_only  # reaches into the pack files
def test_a_damaged_block_in_a_run_fails_alone(open_store):
    from ckptstore.errors import CorruptBlockError
    from ckptstore.store.packs.entries import load_each
    from ckptstore.store.packs.format import ENTRY

    store = open_store(config=PER_TENSOR)
    record = store.put("job", small_tensors(seed=43))
    blocks = [block for _, block in store.context.catalog.manifest(record.checkpoint_id)]
    run = blocks[10:40]
    assert len({b.pack_id for b in run}) == 1
    victim = run[15]
    path = store.context.blocks._path(victim.pack_id)
    with open(path, "r+b") as pack:
        pack.seek(victim.offset + ENTRY.size + victim.stored_len // 2)
        byte = pack.read(1)
        pack.seek(-1, 1)
        pack.write(bytes([byte[0] ^ 0xFF]))
    loaded = load_each(store.context, run)
    assert isinstance(loaded[15], CorruptBlockError)
    assert loaded[15].block_id == victim.block_id.hex()
    assert all(isinstance(data, bytes | memoryview) for i, data in enumerate(loaded) if i != 15)


def _block_ids(store, checkpoint_id):
    return [block.block_id for _, block in store.context.catalog.manifest(checkpoint_id)]


@pytest.mark.sqlite_only
def test_new_blocks_are_looked_up_without_the_write_lock(store, tmp_path):
    import sqlite3

    ids = _block_ids(store, store.put("job", random_bytes(MB, seed=30)).checkpoint_id)
    catalog = store.context.catalog
    catalog._conn().execute("PRAGMA busy_timeout = 0")  # a lock held elsewhere fails at once
    other = sqlite3.connect(tmp_path / "store" / "catalog.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer (a pack being recorded) holds the lock
    try:
        fresh = [bytes([i]) * 32 for i in range(40)]
        assert catalog.lease_existing(fresh, "holder", 1e12) == set()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            catalog.lease_existing(ids, "holder", 1e12)  # found ones are leased in a write
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert catalog.lease_existing(ids, "holder", 1e12) == set(ids)
    assert catalog.leased_to("holder", ids) == set(ids)


@pytest.mark.sqlite_only
def test_a_block_gone_between_lookup_and_lease_is_not_leased(store, tmp_path, monkeypatch):
    import sqlite3
    from contextlib import contextmanager

    ids = _block_ids(store, store.put("job", random_bytes(MB, seed=31)).checkpoint_id)
    catalog = store.context.catalog
    gone = ids[0]
    looked = catalog._read

    @contextmanager
    def read_then_gc():
        with looked() as conn:
            yield conn
        other = sqlite3.connect(tmp_path / "store" / "catalog.sqlite", isolation_level=None)
        other.execute("DELETE FROM blocks WHERE block_id = ?", (gone,))  # as GC would
        other.close()

    monkeypatch.setattr(catalog, "_read", read_then_gc)
    assert catalog.lease_existing(ids, "holder", 1e12) == set(ids[1:])
    assert catalog.leased_to("holder", ids) == set(ids[1:])


def test_gc_counts_each_freed_byte_once(open_store, tmp_path, clock):
    import time
    from dataclasses import replace

    store = open_store(config=replace(TEST_CONFIG, pack_target_bytes=64 * MB))
    keep_part = random_bytes(2 * MB, seed=30)
    both = store.put("job", keep_part + random_bytes(2 * MB, seed=31))
    store.put("job", keep_part)
    store.settle()  # the rebase of the first onto the second writes a pack of its own
    store.delete(both.checkpoint_id)
    # past the grace period of the pack files' own modification times, as on a
    # server whose packs are older than the grace period
    clock.advance(max(0.0, time.time() - clock.now) + GRACE + 1)
    before = sum(o.size for o in store.context.blocks.list())
    report = store.gc()
    after = sum(o.size for o in store.context.blocks.list())
    assert report.packs_compacted == 1 and report.orphan_packs_deleted == 0
    assert report.bytes_freed == before - after
    assert store.verify(read_data=True).ok


def test_a_pending_checkpoint_left_without_data_expires_with_its_leases(open_store, clock):
    from dataclasses import replace

    from ckptstore.errors import CheckpointNotFound

    # expiring before its upload's leases would: the expiry is what ends them
    store = open_store(config=replace(TEST_CONFIG, pending_ttl_s=TEST_CONFIG.lease_ttl_s / 2))
    stale = store.create_pending("job", tenant="t")
    upload = store.resume_upload(stale.checkpoint_id, tenant="t")
    blocks = client_blocks(store, random_bytes(300_000, seed=40))
    upload.put_blocks([(bid, data, None, None) for bid, data in blocks])
    upload.flush()  # its blocks are stored and leased to the upload, never committed
    clock.advance(store.context.config.pending_ttl_s - 10)
    fresh = store.create_pending("job", tenant="t")
    assert store.gc().pending_expired == 0
    clock.advance(20)
    report = store.gc()
    # the same pass takes the blocks: unreferenced since long before the grace period
    assert report.pending_expired == 1 and report.blocks_removed == len(blocks)
    with pytest.raises(CheckpointNotFound):
        store.get(stale.checkpoint_id, tenant="t")
    assert store.get(fresh.checkpoint_id, tenant="t").status == "pending"
    assert not store.context.catalog.leased_to(
        f"upl_{stale.checkpoint_id}", [bid for bid, _ in blocks]
    )
    assert store.verify().ok


def test_gc_merges_the_small_packs_of_small_saves(store, clock):
    """Each save seals its own packs: 105 small saves leave 105 small packs or more; GC
    copies them together, so the pack count follows the stored bytes."""
    target = TEST_CONFIG.pack_target_bytes
    saved = {}
    for i in range(105):
        data = random_bytes(4000 + 97 * i, seed=100 + i)
        saved[store.put(f"job{i % 5}", data).checkpoint_id] = data
        clock.advance(1)
    store.settle()
    reader = store.open_reader(next(iter(saved)))  # open across the merge
    before = store.context.catalog.pack_usage()
    assert len(before) >= 105 and all(u.size < target // 2 for u in before)
    report = store.gc()
    after = store.context.catalog.pack_usage()
    stored = sum(u.size for u in after)
    assert report.packs_merged == len(before) and len(after) <= stored // target + 1
    assert sum(u.size < target // 2 for u in after) <= 1
    assert report.bytes_freed == sum(u.size for u in before) - stored
    assert sorted(o.name for o in store.context.blocks.list()) == sorted(u.pack_id for u in after)
    assert reader.read() == saved[next(iter(saved))]
    reader.close()
    for checkpoint_id, data in saved.items():
        assert restore_bytes(store, checkpoint_id) == data
    assert store.verify(read_data=True).ok
    assert store.gc().packs_merged == 0  # nothing left to merge
