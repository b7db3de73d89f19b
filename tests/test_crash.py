"""SIGKILL at any named point of ingest, commit, uploads, rebase, GC, compaction,
policies and delete leaves every acknowledged checkpoint readable.

A child process (crash_child.py) runs one scenario and kills itself with SIGKILL
at a chosen call; the parent reopens the store, verifies it, restores every
checkpoint acknowledged before the kill bit-exact, checks that nothing deleted
before the kill came back, and that a GC past the grace period leaves no pack
the catalog does not know and no leftover file.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from ckptstore import CheckpointStore
from ckptstore.errors import CheckpointNotFound
from ckptstore.store.blockstore.durable import TEMP_MARKER
from ckptstore.store.codecs.ids import Codec
from tests.conftest import TEST_CONFIG, client_blocks, random_bytes, restore_bytes
from tests.crash_child import KEEP, data_for, tensor_data_for

ROOT = Path(__file__).resolve().parent.parent
CAT = "ckptstore.store.catalog.sqlite:SQLiteCatalog."
BLOCKS = "ckptstore.store.blockstore.local:LocalBlockStore."
DURABLE = "ckptstore.store.blockstore.durable:"
UPLOAD = "ckptstore.store.uploads:Upload."
LATER = 10 * 24 * 3600.0  # far past every grace period, lease and pending TTL


@dataclass(frozen=True)
class KillPoint:
    name: str  # where the process dies, as the test id
    mode: str  # the child's scenario (crash_child.py)
    target: str  # the call wrapped
    call: int  # killed on this call (1-based)
    when: str  # before | after the call runs
    setup: str = ""  # the store the parent makes first (SETUPS)


@dataclass
class Before:
    """What the parent stored before the child ran."""

    kept: dict[str, bytes] = field(default_factory=dict)  # in creation order
    deleted: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)


@dataclass
class Printed:
    """What the child was told was done before it died."""

    acked: dict[str, int] = field(default_factory=dict)  # checkpoint id -> epoch
    pending: set[str] = field(default_factory=set)
    deleted: list[str] = field(default_factory=list)
    finished: bool = False


KILL_POINTS = [
    # ingest: a pack's way to disk and into the catalog
    KillPoint("ingest/pack-half-written", "ingest", DURABLE + "_datasync", 3, "after"),
    KillPoint("ingest/pack-put-before-rename", "ingest", DURABLE + "os.link", 2, "before"),
    KillPoint("ingest/pack-renamed-before-dir-fsync", "ingest", DURABLE + "fsync_dir", 3, "before"),
    KillPoint("ingest/pack-durable-before-catalog-add", "ingest", CAT + "add_pack", 3, "before"),
    KillPoint("ingest/after-catalog-add-pack", "ingest", CAT + "add_pack", 4, "after"),
    KillPoint("ingest/after-lease-existing", "ingest", CAT + "lease_existing", 5, "after"),
    # commit
    KillPoint("commit/before-catalog-commit", "ingest", CAT + "commit_checkpoint", 2, "before"),
    KillPoint("commit/after-catalog-commit", "ingest", CAT + "commit_checkpoint", 3, "after"),
    # dedup-aware uploads
    KillPoint("upload/missing-after-lease", "upload", UPLOAD + "missing", 2, "after"),
    KillPoint("upload/after-flush-before-commit", "upload", UPLOAD + "flush", 3, "after"),
    KillPoint("upload/before-catalog-commit", "upload", CAT + "commit_checkpoint", 2, "before"),
    KillPoint("upload/after-catalog-commit", "upload", CAT + "commit_checkpoint", 2, "after"),
    # pending checkpoints filled later
    KillPoint("pending/created-before-fill", "pending", CAT + "create_checkpoint", 2, "after"),
    KillPoint(
        "pending/fill-after-catalog-commit", "pending", CAT + "commit_checkpoint", 2, "after"
    ),
    # job policies after a commit
    KillPoint("policy/before-best-copy", "policy", CAT + "replace_best", 2, "before"),
    KillPoint("policy/after-best-copy", "policy", CAT + "replace_best", 3, "after"),
    KillPoint("policy/after-retention-delete", "policy", CAT + "delete_checkpoint", 1, "after"),
    # delete
    KillPoint(
        "delete/before-catalog-delete", "delete", CAT + "delete_checkpoint", 2, "before", "job"
    ),
    KillPoint(
        "delete/after-catalog-delete", "delete", CAT + "delete_checkpoint", 2, "after", "job"
    ),
    # rebase, and the compaction that follows it
    KillPoint("rebase/after-reencode-pack-durable", "rebase", CAT + "reencode_blocks", 1, "before"),
    KillPoint(
        "rebase/after-reencode-before-compaction", "rebase", CAT + "reencode_blocks", 2, "after"
    ),
    KillPoint(
        "compaction/after-rebase-new-pack-durable-before-relocate",
        "rebase",
        BLOCKS + "put",
        1,
        "after",
    ),
    KillPoint(
        "compaction/after-relocate-before-old-pack-delete",
        "rebase",
        CAT + "relocate_blocks",
        1,
        "after",
    ),
    KillPoint(
        "rebase/after-compaction-before-finish-rebase", "rebase", CAT + "finish_rebase", 1, "before"
    ),
    # GC: dead blocks, whole and shared packs
    KillPoint(
        "gc/after-remove-dead-blocks-before-pack-delete",
        "gc",
        CAT + "remove_dead_blocks",
        1,
        "after",
        "gc",
    ),
    KillPoint(
        "gc/after-remove-pack-before-file-delete", "gc", BLOCKS + "delete", 1, "before", "gc"
    ),
    KillPoint("gc/after-first-pack-delete", "gc", BLOCKS + "delete", 1, "after", "gc"),
    KillPoint(
        "gc/compaction-new-pack-durable-before-relocate", "gc", BLOCKS + "put", 1, "after", "gc"
    ),
    KillPoint(
        "gc/compaction-after-relocate-before-old-pack-delete",
        "gc",
        CAT + "relocate_blocks",
        1,
        "after",
        "gc",
    ),
    KillPoint("gc/before-catalog-maintenance", "gc", CAT + "maintenance", 1, "before", "gc"),
    # GC storing deltas whole whose bases only they keep alive
    KillPoint(
        "gc/whole-copies-durable-before-repoint",
        "gc",
        DURABLE + "DurableFile.commit",
        1,
        "after",
        "orphaned-deltas",
    ),
    KillPoint(
        "gc/after-repoint-before-base-removal",
        "gc",
        CAT + "reencode_blocks",
        1,
        "after",
        "orphaned-deltas",
    ),
    # GC expiring pending checkpoints that never got their data
    KillPoint(
        "gc/pending-expiry-after-delete-before-lease-release",
        "gc",
        CAT + "release_leases",
        1,
        "before",
        "pending",
    ),
    KillPoint(
        "gc/pending-expiry-before-second-delete",
        "gc",
        CAT + "delete_checkpoint",
        2,
        "before",
        "pending",
    ),
]
IDS = [point.name for point in KILL_POINTS]
assert len(set(IDS)) == len(IDS) >= 20


def run_child(
    store_dir: Path,
    point: KillPoint,
    *,
    call: int | None = None,
    when: str = "",
    scale: int = 1,
    first: int = 0,
) -> subprocess.CompletedProcess[str]:
    offset = LATER / 2 if point.mode == "gc" else 0.0
    args = [point.mode, point.target, str(call or point.call), when or point.when]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.crash_child",
            str(store_dir),
            *args,
            str(offset),
            str(scale),
            str(first),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def parse(stdout: str) -> Printed:
    printed = Printed()
    for line in stdout.splitlines():
        word, *rest = line.split()
        if word == "ack":
            printed.acked[rest[0]] = int(rest[1])
        elif word == "pending":
            printed.pending.add(rest[0])
        elif word == "deleted":
            printed.deleted.append(rest[0])
        elif word == "finished":
            printed.finished = True
    return printed


# -- the stores the parent makes before the child runs -------------------------------
def make_gc_store(store_dir: Path, scale: int = 1) -> Before:
    """A store where GC must delete whole packs, compact shared ones and drop rows."""
    shared = random_bytes(1_200_000, seed=1)
    store = CheckpointStore.open(store_dir, config=replace(TEST_CONFIG, pack_target_bytes=8 << 20))
    doomed = store.put("job", shared + random_bytes(900_000, seed=2))
    before = Before()
    for seed in (3, 4):
        data = random_bytes(700_000, seed=seed) + shared
        before.kept[store.put("job", data).checkpoint_id] = data
    gone = store.put("job", random_bytes(800_000, seed=5))
    for record in (doomed, gone):
        store.delete(record.checkpoint_id)
        before.deleted.add(record.checkpoint_id)
    store.close()
    return before


def make_rolled_back_store(store_dir: Path, scale: int = 1) -> Before:
    """Tensor checkpoints whose newest two were deleted: GC must store the oldest's
    deltas whole before it can remove their bases."""
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG)
    records = [store.put("job", tensor_data_for(step), epoch=step) for step in range(3)]
    store.settle()
    for record in records[1:]:
        store.delete(record.checkpoint_id)
    store.close()
    deleted = {record.checkpoint_id for record in records[1:]}
    return Before({records[0].checkpoint_id: tensor_data_for(0)}, deleted)


def make_job_store(store_dir: Path, scale: int = 1) -> Before:
    """Four checkpoints of one job, for the child to delete."""
    before = Before()
    with CheckpointStore.open(store_dir, config=TEST_CONFIG) as store:
        for epoch in range(4):
            data = data_for(epoch, scale)
            before.kept[store.put("job", data, epoch=epoch).checkpoint_id] = data
    return before


def make_pending_store(store_dir: Path, scale: int = 1) -> Before:
    """One ready checkpoint and two pending ones that never get their data, one of them
    with blocks already sent (leased to its upload)."""
    before = Before()
    with CheckpointStore.open(store_dir, config=TEST_CONFIG) as store:
        data = data_for(0, scale)
        before.kept[store.put("job", data, epoch=0).checkpoint_id] = data
        empty = store.create_pending("job")
        started = store.create_pending("job")
        up = store.resume_upload(started.checkpoint_id)
        blocks = client_blocks(store, random_bytes(400_000 * scale, seed=77))
        up.missing([bid for bid, _ in blocks])
        up.put_blocks([(bid, raw, None, None) for bid, raw in blocks])
        up.flush()  # neither committed nor aborted: the client went away
        before.pending = {empty.checkpoint_id, started.checkpoint_id}
    return before


SETUPS = {
    "": lambda store_dir, scale: Before(),
    "gc": make_gc_store,
    "orphaned-deltas": make_rolled_back_store,
    "job": make_job_store,
    "pending": make_pending_store,
}


# -- the checks after a kill ---------------------------------------------------------
def required_ids(point: KillPoint, printed: Printed, before: Before) -> set[str]:
    """The checkpoints that must have survived the kill."""
    if point.mode == "delete":  # deletes in creation order; the one under way may be gone
        order = list(before.kept)
        done = len(printed.deleted)
        assert printed.deleted == order[:done]
        return set(order[done + 1 :])
    if point.mode == "policy":
        # retention keeps the newest KEEP automatic checkpoints, and one commit may have
        # landed unacknowledged: the newest KEEP - 1 acknowledged ones are safe
        return set(list(printed.acked)[len(printed.acked) - (KEEP - 1) :]) | set(before.kept)
    return (set(printed.acked) | set(before.kept)) - before.deleted - set(printed.deleted)


def check_recovery(
    store_dir: Path, point: KillPoint, printed: Printed, before: Before, scale: int = 1
) -> dict[str, bytes]:
    """Everything acknowledged is there and restores; nothing deleted came back; a GC
    past every grace period leaves the store clean. Returns the checkpoints' data."""
    gone = before.deleted | set(printed.deleted)
    with CheckpointStore.open(store_dir, config=TEST_CONFIG) as store:
        listed = store.list("job", limit=None).checkpoints
        ready = {c.checkpoint_id: c for c in listed if c.status == "ready"}
        for checkpoint_id in gone:
            with pytest.raises(CheckpointNotFound):
                store.get(checkpoint_id)
        assert required_ids(point, printed, before) <= ready.keys()
        assert sum(c.type == "best" for c in ready.values()) <= 1
    expected = {}
    for checkpoint_id, record in ready.items():
        if checkpoint_id in before.kept:
            expected[checkpoint_id] = before.kept[checkpoint_id]
        elif point.mode == "rebase":
            expected[checkpoint_id] = tensor_data_for(record.epoch)
        else:
            expected[checkpoint_id] = data_for(record.epoch, scale)
    expired = (before.pending | printed.pending) - ready.keys()
    assert_recovers(store_dir, expected, gone | expired)
    return expected


def assert_recovers(store_dir: Path, expected: dict[str, bytes], gone: set[str]) -> None:
    """Reopen, verify, restore; then GC must leave no leftovers behind."""
    clock_s = time.time() + LATER
    store = CheckpointStore.open(store_dir, config=TEST_CONFIG, clock=lambda: clock_s)
    try:
        store.settle()  # rebases a crash cut short run again on open
        report = store.verify(read_data=True)
        assert report.ok, report.findings
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
            leases = conn.execute("SELECT COUNT(*) FROM leases").fetchone()
        assert unreferenced == (0,) and leases == (0,)
        for checkpoint_id, data in expected.items():
            assert restore_bytes(store, checkpoint_id) == data
        for checkpoint_id in gone:  # pending ones expired; deleted ones stay deleted
            with pytest.raises(CheckpointNotFound):
                store.get(checkpoint_id)
        listed = {c.checkpoint_id for c in store.list("job", limit=None).checkpoints}
        assert listed == set(expected)
    finally:
        store.close()


def check_rebase_finished(store_dir: Path) -> None:
    """The rebase cut short was done on reopening: all but the newest are deltas."""
    with CheckpointStore.open(store_dir, config=TEST_CONFIG) as store:
        *older, _ = sorted(store.list("job", limit=None).checkpoints, key=lambda c: c.epoch)
        assert older  # a rebase had something to re-encode
        for record in older:
            codecs = [r.codec for _, r in store.context.catalog.manifest(record.checkpoint_id)]
            assert Codec.BIASED_DELTA in codecs
        assert store.context.catalog.pending_rebases() == []


def check_only_kept_blocks(store_dir: Path, kept: dict[str, bytes]) -> None:
    """The next GC finished storing orphaned deltas whole: only the kept blocks are left."""
    with CheckpointStore.open(store_dir, config=TEST_CONFIG) as store:
        (checkpoint_id,) = kept
        ids = {r.block_id for _, r in store.context.catalog.manifest(checkpoint_id)}
        assert {r.block_id for r in store.context.catalog.iter_blocks()} == ids


@pytest.mark.parametrize("point", KILL_POINTS, ids=IDS)
def test_sigkill_keeps_every_acknowledged_checkpoint(tmp_path, point):
    store_dir = tmp_path / "store"
    before = SETUPS[point.setup](store_dir, 1)
    proc = run_child(store_dir, point)
    assert proc.returncode == -9, proc.stderr  # it really was killed at that point
    check_recovery(store_dir, point, parse(proc.stdout), before)
    if point.mode == "rebase":
        check_rebase_finished(store_dir)
    if point.setup == "orphaned-deltas":
        check_only_kept_blocks(store_dir, before.kept)


def test_gc_store_really_compacts_and_deletes(tmp_path):
    """Guards the GC kill points: the scenario must exercise compaction and deletion."""
    store_dir = tmp_path / "store"
    before = make_gc_store(store_dir)
    clock_s = time.time() + LATER
    with CheckpointStore.open(store_dir, config=TEST_CONFIG, clock=lambda: clock_s) as store:
        report = store.gc()
    assert report.packs_compacted >= 1 and report.packs_deleted >= 1 and report.blocks_removed
    assert_recovers(store_dir, before.kept, before.deleted)


def test_pending_store_really_expires_pending_checkpoints(tmp_path):
    """Guards the pending-expiry kill points: GC must expire both pending checkpoints."""
    store_dir = tmp_path / "store"
    before = make_pending_store(store_dir)
    clock_s = time.time() + LATER
    with CheckpointStore.open(store_dir, config=TEST_CONFIG, clock=lambda: clock_s) as store:
        report = store.gc()
    assert report.pending_expired == 2 and report.blocks_removed
    assert_recovers(store_dir, before.kept, before.pending)
