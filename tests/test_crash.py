"""SIGKILL at any point of ingest, rebase or GC leaves every committed checkpoint readable.

A child process runs the operation and kills itself with SIGKILL at a chosen
call; the parent reopens the store, verifies it, restores every checkpoint
bit-exact, and checks that the next GC reclaims every leftover.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ckptstore import CheckpointStore
from ckptstore.store.blockstore.durable import TEMP_MARKER
from ckptstore.store.codecs.ids import Codec
from tests.conftest import TEST_CONFIG, random_bytes, restore_bytes
from tests.crash_child import CHECKPOINTS, data_for, tensor_data_for

ROOT = Path(__file__).resolve().parent.parent
CAT = "ckptstore.store.catalog.sqlite:SQLiteCatalog."
BLOCKS = "ckptstore.store.blockstore.local:LocalBlockStore."
LATER = 10 * 24 * 3600.0  # far past every grace period and lease


def run_child(store_dir: Path, mode: str, target: str, call: int, when: str, offset: float = 0):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.crash_child",
            str(store_dir),
            mode,
            target,
            str(call),
            when,
            str(offset),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc


def assert_recovers(store_dir: Path, expected: dict[str, bytes]) -> None:
    """Reopen, verify, restore; then GC must leave no leftovers behind."""
    clock_s = time.time() + LATER
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG, clock=lambda: clock_s)
    try:
        store.settle()  # rebases a crash cut short run again on open
        assert store.verify(read_data=True).ok
        for checkpoint_id, data in expected.items():
            assert restore_bytes(store, checkpoint_id) == data
        store.gc()
        report = store.verify(read_data=True)
        assert report.ok, report.findings
        known = {usage.pack_id for usage in store.context.catalog.pack_usage()}
        assert {obj.name for obj in store.context.blocks.list()} == known
        assert not list(store.context.blocks.root.glob(f"*/*{TEMP_MARKER}*"))
        with sqlite3.connect(store.context.catalog.path) as conn:
            unreferenced = conn.execute("SELECT COUNT(*) FROM blocks WHERE refcount = 0").fetchone()
        assert unreferenced == (0,)
        for checkpoint_id, data in expected.items():
            assert restore_bytes(store, checkpoint_id) == data
    finally:
        store.close()


INGEST_KILL_POINTS = [
    ("ckptstore.store.blockstore.durable:_datasync", 3, "after"),  # a pack half written
    ("ckptstore.store.blockstore.durable:os.link", 2, "before"),  # temp pack written, not renamed
    ("ckptstore.store.blockstore.durable:fsync_dir", 3, "before"),  # pack renamed, catalog unaware
    (CAT + "add_pack", 3, "before"),
    (CAT + "add_pack", 4, "after"),  # blocks recorded and leased, no checkpoint
    (CAT + "commit_checkpoint", 2, "before"),
    (CAT + "commit_checkpoint", 3, "after"),
    (CAT + "lease_existing", 5, "after"),
]


@pytest.mark.parametrize("target, call, when", INGEST_KILL_POINTS)
def test_sigkill_during_ingest(tmp_path, target, call, when):
    store_dir = tmp_path / "store"
    proc = run_child(store_dir, "ingest", target, call, when)
    assert proc.returncode == -9, proc.stderr  # it really was killed
    printed = dict(line.split() for line in proc.stdout.splitlines())
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG)
    committed = store.list("job", limit=None).checkpoints
    store.close()
    assert set(printed) <= {c.checkpoint_id for c in committed}
    assert len(committed) < CHECKPOINTS
    assert_recovers(store_dir, {c.checkpoint_id: data_for(c.epoch) for c in committed})


REBASE_KILL_POINTS = [
    (CAT + "reencode_blocks", 1, "before"),  # delta pack durable, blocks not re-pointed
    (CAT + "reencode_blocks", 2, "after"),  # re-pointed, whole copies not yet compacted
    (CAT + "relocate_blocks", 1, "after"),  # compacted, the old pack not deleted
]


@pytest.mark.parametrize("target, call, when", REBASE_KILL_POINTS)
def test_sigkill_during_rebase(tmp_path, target, call, when):
    store_dir = tmp_path / "store"
    proc = run_child(store_dir, "rebase", target, call, when)
    assert proc.returncode == -9, proc.stderr  # it really was killed
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG)
    committed = store.list("job", limit=None).checkpoints
    store.close()
    assert len(committed) >= 2  # a rebase had something to re-encode
    assert_recovers(store_dir, {c.checkpoint_id: tensor_data_for(c.epoch) for c in committed})
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG)
    try:  # the rebase cut short was done on reopening: all but the newest are deltas
        *older, newest = sorted(committed, key=lambda c: c.epoch)
        for record in older:
            codecs = [r.codec for _, r in store.context.catalog.manifest(record.checkpoint_id)]
            assert Codec.BIASED_DELTA in codecs
        assert store.context.catalog.pending_rebases() == []
    finally:
        store.close()


def make_gc_store(store_dir: Path) -> dict[str, bytes]:
    """A store where GC must delete whole packs, compact shared ones and drop rows."""
    shared = random_bytes(1_200_000, seed=1)
    store = CheckpointStore.open(store_dir, config=replace(TEST_CONFIG, pack_target_bytes=8 << 20))
    doomed = store.put("job", shared + random_bytes(900_000, seed=2))
    kept = {}
    for seed in (3, 4):
        data = random_bytes(700_000, seed=seed) + shared
        kept[store.put("job", data).checkpoint_id] = data
    gone = store.put("job", random_bytes(800_000, seed=5))
    store.delete(doomed.checkpoint_id)
    store.delete(gone.checkpoint_id)
    store.close()
    return kept


GC_KILL_POINTS = [
    (CAT + "remove_dead_blocks", 1, "after"),
    (BLOCKS + "delete", 1, "before"),
    (BLOCKS + "delete", 1, "after"),
    (BLOCKS + "put", 1, "after"),  # compacted pack durable, catalog not switched
    (CAT + "relocate_blocks", 1, "after"),  # switched, old pack not deleted
    (CAT + "maintenance", 1, "before"),
]


@pytest.mark.parametrize("target, call, when", GC_KILL_POINTS)
def test_sigkill_during_gc(tmp_path, target, call, when):
    store_dir = tmp_path / "store"
    kept = make_gc_store(store_dir)
    proc = run_child(store_dir, "gc", target, call, when, offset=LATER / 2)
    assert proc.returncode == -9, proc.stderr
    assert_recovers(store_dir, kept)


def make_rolled_back_store(store_dir: Path) -> dict[str, bytes]:
    """Tensor checkpoints whose newest two were deleted: GC must store the oldest's
    deltas whole before it can remove their bases."""
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG)
    records = [store.put("job", tensor_data_for(step), epoch=step) for step in range(3)]
    store.settle()
    for record in records[1:]:
        store.delete(record.checkpoint_id)
    store.close()
    return {records[0].checkpoint_id: tensor_data_for(0)}


@pytest.mark.parametrize(
    "target, call, when",
    [
        # whole copies durable, blocks not re-pointed
        ("ckptstore.store.blockstore.durable:DurableFile.commit", 1, "after"),
        (CAT + "reencode_blocks", 1, "after"),  # re-pointed, bases not yet removed
    ],
)
def test_sigkill_while_gc_stores_orphaned_deltas_whole(tmp_path, target, call, when):
    store_dir = tmp_path / "store"
    kept = make_rolled_back_store(store_dir)
    proc = run_child(store_dir, "gc", target, call, when, offset=LATER / 2)
    assert proc.returncode == -9, proc.stderr
    assert_recovers(store_dir, kept)
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG)
    try:  # the next GC finished the job: only the kept checkpoint's blocks are left
        (checkpoint_id,) = kept
        ids = {r.block_id for _, r in store.context.catalog.manifest(checkpoint_id)}
        assert {r.block_id for r in store.context.catalog.iter_blocks()} == ids
    finally:
        store.close()


def test_gc_store_really_compacts_and_deletes(tmp_path):
    """Guards the GC kill points: the scenario must exercise compaction and deletion."""
    store_dir = tmp_path / "store"
    kept = make_gc_store(store_dir)
    clock_s = time.time() + LATER
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG, clock=lambda: clock_s)
    report = store.gc()
    store.close()
    assert report.packs_compacted >= 1 and report.packs_deleted >= 1 and report.blocks_removed
    assert_recovers(store_dir, kept)
