"""verify beside GC: what GC changes while verify runs is never reported as damage."""

from __future__ import annotations

import shutil
import sqlite3

from tests.test_deltas import CONFIG, bases_of, put_steps


def test_verify_beside_gc_storing_an_orphaned_chain_whole(open_store, clock, tmp_path):
    """GC stores whole a delta whose base is dead (and removes the base) while verify
    runs: verify read the block rows before, and the old packs are still there. The
    deltas resting on the block stored whole are readable; no finding."""
    store = open_store(config=CONFIG)
    (first, _), (second, _), (third, _) = put_steps(store, 3)
    catalog = store.context.catalog
    assert bases_of(store, first) and bases_of(store, second)  # first -> second -> third
    store.delete(third)
    clock.advance(CONFIG.gc_grace_s + 1)
    before = list(catalog.iter_blocks())
    packs = store.context.blocks.root
    kept = tmp_path / "packs-before-gc"
    shutil.copytree(packs, kept)
    report = store.gc()
    assert report.blocks_materialized > 0 and report.blocks_removed > 0
    # verify read the rows before GC, and reads the packs before GC deletes the old ones
    shutil.copytree(kept, packs, dirs_exist_ok=True)
    catalog.iter_blocks = lambda: iter(before)
    report = store.verify(read_data=True)
    assert report.ok, report.findings


def test_verify_reports_deltas_whose_chain_never_reaches_a_whole_block(open_store):
    """A damaged catalog whose delta bases go round in a loop: the blocks of the loop,
    and the checkpoints using them, are reported (a read of them fails)."""
    store = open_store(config=CONFIG)
    (first, _), (second, _) = put_steps(store, 2)
    catalog = store.context.catalog
    delta = next(r for _, r in catalog.manifest(first) if r.base_id is not None)
    with sqlite3.connect(catalog.path) as conn:  # the base now rests on its delta
        conn.execute(
            "UPDATE blocks SET base_key = (SELECT block_key FROM blocks WHERE block_id = ?)"
            " WHERE block_id = ?",
            (delta.block_id, delta.base_id),
        )
    conn.close()
    report = store.verify(read_data=True)
    looped = {f.block_id for f in report.findings if f.kind == "corrupt_base"}
    assert {delta.block_id.hex(), delta.base_id.hex()} <= looped
    assert {first, second} <= set(report.affected_checkpoints)


def test_verify_without_data_beside_an_ingest(store):
    """A checkpoint saved while verify runs (without reading data): its pack is written
    after verify listed the objects and its rows are there when verify reads them. No
    finding."""
    from tests.conftest import random_bytes

    store.put("job", random_bytes(200_000, seed=1))
    catalog = store.context.catalog
    rows_of = catalog.iter_blocks

    def ingest_then_rows():
        store.put("job", random_bytes(200_000, seed=2))  # after verify listed the packs
        return rows_of()

    catalog.iter_blocks = ingest_then_rows
    report = store.verify(read_data=False)
    assert report.ok, report.findings
