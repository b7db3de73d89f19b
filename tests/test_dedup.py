"""Identical and shifted data is stored once."""

from __future__ import annotations

from tests.conftest import disk_usage, random_bytes, restore_bytes

MB = 1_000_000


def test_same_data_twice_grows_store_by_less_than_one_percent(store, tmp_path):
    data = random_bytes(50 * MB, seed=1)
    first = store.put("job_d", data, epoch=1)
    store.context.catalog.maintenance()  # fold the transient SQLite WAL into the database
    after_first = disk_usage(tmp_path / "store")
    second = store.put("job_d", data, epoch=2)
    store.context.catalog.maintenance()
    growth = disk_usage(tmp_path / "store") - after_first
    assert growth < 0.01 * len(data)
    assert second.stored_bytes == 0
    assert first.stored_bytes >= len(data)  # random bytes do not compress
    assert restore_bytes(store, second.checkpoint_id) == data


def test_one_byte_inserted_at_front_reuses_most_blocks(store):
    data = random_bytes(20 * MB, seed=2)
    first = store.put("job_d", data)
    shifted = store.put("job_d", b"\x00" + data)
    catalog = store.context.catalog
    old_ids = {rec.block_id for _, rec in catalog.manifest(first.checkpoint_id)}
    new_ids = [rec.block_id for _, rec in catalog.manifest(shifted.checkpoint_id)]
    reused = sum(1 for bid in new_ids if bid in old_ids) / len(new_ids)
    assert reused > 0.95
    assert shifted.stored_bytes < 0.05 * len(data)
    assert restore_bytes(store, shifted.checkpoint_id) == b"\x00" + data


def test_repeated_block_inside_one_checkpoint_is_stored_once(store):
    unit = random_bytes(8 * MB, seed=3)
    ck = store.put("job_d", unit * 4)
    # only the blocks that straddle a repetition's start differ
    assert ck.stored_bytes < 1.25 * len(unit)
    assert restore_bytes(store, ck.checkpoint_id) == unit * 4


def test_stats_report_dedup_ratio(store):
    data = random_bytes(4 * MB, seed=5)
    for epoch in range(3):
        store.put("job_d", data, epoch=epoch)
    stats = store.stats()
    assert stats.checkpoints == 3
    assert stats.logical_bytes == 3 * len(data)
    assert stats.unique_raw_bytes == len(data)
    assert 2.9 < stats.dedup_ratio < 3.0
