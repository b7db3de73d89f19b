"""Garbage collection: forget dead blocks, then compact or delete their packs.

Order matters for safety: dead block rows leave the catalog (the dedup
index) before any pack bytes are deleted, and a compacted pack's live blocks
are durable in their new pack and re-pointed before the old pack goes.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ckptstore.errors import CheckpointNotFound, CorruptBlockError, InvalidArgument
from ckptstore.store.catalog.base import ExclusiveLock
from ckptstore.store.catalog.records import BlockRecord, PackUsage, adjacent_runs
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import new_pack_id, upload_holder
from ckptstore.store.packs.format import PackBuilder, parse_entry
from ckptstore.store.packs.usage import reclaimable
from ckptstore.store.packs.writer import block_record
from ckptstore.store.rebase import materialize_orphans


@dataclass
class GcReport:
    pending_expired: int = 0  # pending checkpoints that got no data in time
    blocks_materialized: int = 0  # deltas stored whole because their bases were dead
    blocks_removed: int = 0
    packs_deleted: int = 0
    packs_compacted: int = 0
    packs_merged: int = 0  # small packs copied together into fewer
    orphan_packs_deleted: int = 0
    temp_files_deleted: int = 0
    bytes_freed: int = 0


class GcLock:
    """One GC (or compaction) at a time per store: the catalog's own lock where it has
    one (a catalog that processes on several machines share), else an advisory lock on
    ``gc.lock`` in the store's directory, or nothing for a store without one."""

    def __init__(self, lock_dir: Path | None, shared: ExclusiveLock | None = None) -> None:
        self._lock_dir = lock_dir
        self._shared = shared

    def run(self, work: Callable[[], GcReport], *, wait: bool) -> GcReport | None:
        """``work`` holding the lock; None if ``wait`` is False and a GC holds it."""
        if self._shared is not None:
            with self._shared.exclusive(wait=wait) as taken:
                return work() if taken else None
        if self._lock_dir is None:
            return work()
        with open(self._lock_dir / "gc.lock", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return None  # the running GC compacts these packs too
            try:
                return work()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def collect_garbage(ctx: StoreContext, grace_s: float | None = None) -> GcReport:
    """One GC pass; safe beside concurrent ingests, uploads and readers (not beside another
    GC). ``grace_s``: this pass's grace period (default: the store's ``gc_grace_s``)."""
    report = GcReport()
    now = ctx.clock()
    if grace_s is None:
        grace_s = ctx.config.gc_grace_s
    if not (isinstance(grace_s, int | float) and 0 <= grace_s < float("inf")):
        raise InvalidArgument("grace", grace_s, "a number of seconds, 0 or more")
    report.pending_expired = _expire_pending(ctx, now - ctx.config.pending_ttl_s, now)
    # Deltas whose bases only they keep alive are stored whole first, so the bases go too.
    report.blocks_materialized = materialize_orphans(ctx, now - grace_s).blocks_reencoded
    report.blocks_removed = len(ctx.catalog.remove_dead_blocks(now, grace_s))
    objects = list(ctx.blocks.list())  # listed before the catalog is read: see orphans below
    usages = ctx.catalog.pack_usage()
    reclaimed = _reclaim(ctx, usages, report)
    reclaimed |= _merge_small_packs(ctx, [u for u in usages if u.pack_id not in reclaimed], report)
    # A pack object the catalog does not know is the leftover of a crash between
    # the durable put and the catalog insert (or of a compaction), or the pack of a
    # writer still between the two: only one untouched for longer than a running
    # writer may take is a leftover (so are temporary files).
    leftover_before = now - leftover_age_s(ctx)
    known = {usage.pack_id for usage in ctx.catalog.pack_usage()}
    for obj in objects:
        # (a pack this pass deleted or compacted is gone from both, and counted already)
        if obj.name not in known | reclaimed and obj.modified_at < leftover_before:
            ctx.blocks.delete(obj.name)
            report.orphan_packs_deleted += 1
            report.bytes_freed += obj.size
    report.temp_files_deleted = ctx.blocks.sweep_incomplete(leftover_before)
    ctx.catalog.maintenance()
    return report


def leftover_age_s(ctx: StoreContext) -> float:
    """How long a pack object the catalog does not know, or a temporary file, must be
    untouched before GC deletes it as a crash's leftover: the grace period, and never
    less than the lease TTL. A running ingest or upload writes its packs and holds its
    leases for that long; a grace period shorter than that (even 0, to reclaim dead
    blocks at once) must not take the pack it is about to record."""
    return max(ctx.config.gc_grace_s, ctx.config.lease_ttl_s)


def _expire_pending(ctx: StoreContext, created_before: float, now: float) -> int:
    """Delete the pending checkpoints created before ``created_before`` and end their
    uploads' leases; how many."""
    expired = 0
    for record in ctx.catalog.pending_since(created_before):
        try:
            ctx.catalog.delete_checkpoint(record.checkpoint_id, now)
        except CheckpointNotFound:
            continue  # deleted, or filled and then deleted, meanwhile
        ctx.catalog.release_leases(upload_holder(record.checkpoint_id))
        expired += 1
    return expired


def compact_packs(ctx: StoreContext, pack_ids: set[str]) -> GcReport:
    """Delete or compact those of ``pack_ids`` that GC would (the packs a rebase left
    with dead entries); the caller holds the GC lock."""
    report = GcReport()
    _reclaim(ctx, ctx.catalog.pack_usage(pack_ids), report)
    return report


def _reclaim(ctx: StoreContext, usages: list[PackUsage], report: GcReport) -> set[str]:
    """Delete the packs with nothing live, compact those more than the configured
    fraction dead; the ids of the packs deleted or compacted away."""
    reclaimed: set[str] = set()
    for usage in usages:
        if usage.live_bytes == 0:
            # a block may have moved in since pack_usage looked (a rebase): keep the pack then
            if ctx.catalog.remove_pack(usage.pack_id):
                ctx.blocks.delete(usage.pack_id)
                report.packs_deleted += 1
                report.bytes_freed += usage.size
                reclaimed.add(usage.pack_id)
        elif reclaimable(usage, ctx.config.compact_dead_fraction):
            report.bytes_freed += usage.size - _compact(ctx, usage.pack_id)
            report.packs_compacted += 1
            reclaimed.add(usage.pack_id)
    return reclaimed


def _compact(ctx: StoreContext, pack_id: str) -> int:
    """Copy a pack's live entries into a new pack, switch the catalog, delete the old one.

    Returns the size of the new pack (0 if nothing was live any more).
    """
    live = ctx.catalog.blocks_in_pack(pack_id)
    if not live:
        if ctx.catalog.remove_pack(pack_id):
            ctx.blocks.delete(pack_id)
            return 0
        live = ctx.catalog.blocks_in_pack(pack_id)
    builder = PackBuilder()
    _copy_entries(ctx, pack_id, live, builder)
    new_id = new_pack_id()
    ctx.blocks.put(new_id, builder.getbuffer())
    moved = [
        block_record(e, new_id, record.width)
        for record, e in zip(live, builder.entries, strict=True)
    ]
    ctx.catalog.relocate_blocks(pack_id, new_id, builder.size, moved, ctx.clock())
    ctx.blocks.delete(pack_id)
    return builder.size


def _copy_entries(
    ctx: StoreContext, pack_id: str, live: list[BlockRecord], builder: PackBuilder
) -> None:
    """Append the entries of ``live`` (blocks of ``pack_id``, by offset) to ``builder``,
    each checked to be the block it should be."""
    for record, entry_bytes in _live_entries(ctx, pack_id, live):
        try:
            entry, payload = parse_entry(entry_bytes)
        except ValueError as exc:
            raise CorruptBlockError(record.block_id.hex(), pack_id, str(exc)) from None
        if entry.block_id != record.block_id:
            raise CorruptBlockError(record.block_id.hex(), pack_id, "entry names another block")
        builder.add(entry.block_id, entry.codec, entry.raw_len, payload, entry.base_id)


def _merge_small_packs(ctx: StoreContext, usages: list[PackUsage], report: GcReport) -> set[str]:
    """Copy the live entries of small packs (each under half the target pack size)
    together into packs of about the target size, oldest first; the ids of the packs
    merged away.

    Each ingest or upload seals its own packs, so a run of small saves leaves one small
    pack each (and each rebase one more): merging keeps the pack count near stored
    bytes / target size. A new pack is durable before the catalog points at it, and
    the old ones are deleted only after the catalog has forgotten them, as in
    compaction (FORMAT.md, invariant 6). A group of one pack is left alone."""
    target = ctx.config.pack_target_bytes
    small = sorted(
        (u for u in usages if u.live_bytes > 0 and u.size < target // 2),
        key=lambda u: (u.created_at, u.pack_id),
    )
    merged: set[str] = set()
    group: list[PackUsage] = []
    for usage in [*small, None]:
        if usage is not None and sum(u.live_bytes for u in group) + usage.live_bytes <= target:
            group.append(usage)
            continue
        if len(group) > 1:
            merged |= _merge(ctx, group, report)
        group = [] if usage is None else [usage]
    return merged


def _merge(ctx: StoreContext, group: list[PackUsage], report: GcReport) -> set[str]:
    """One new pack of the live entries of ``group``'s packs; the catalog switched to it
    in one transaction, then the old packs deleted."""
    builder = PackBuilder()
    live = {usage.pack_id: ctx.catalog.blocks_in_pack(usage.pack_id) for usage in group}
    for pack_id, records in live.items():
        _copy_entries(ctx, pack_id, records, builder)
    new_id = new_pack_id()
    ctx.blocks.put(new_id, builder.getbuffer())
    entries = iter(builder.entries)
    moves = {
        pack_id: [block_record(next(entries), new_id, r.width) for r in records]
        for pack_id, records in live.items()
    }
    ctx.catalog.relocate_packs(moves, new_id, builder.size, ctx.clock())
    for usage in group:
        ctx.blocks.delete(usage.pack_id)
    report.packs_merged += len(group)
    report.bytes_freed += sum(u.size for u in group) - builder.size
    return set(live)


def _live_entries(
    ctx: StoreContext, pack_id: str, live: list[BlockRecord]
) -> Iterator[tuple[BlockRecord, memoryview]]:
    """Each live block (by offset) with its entry bytes, read one run of adjacent entries
    at a time: a pack that a rebase left mostly dead is not read whole."""
    for run in adjacent_runs(live):
        first = run[0].offset
        data = memoryview(ctx.blocks.get(pack_id, first, run[-1].entry_end - first))
        for record in run:
            yield record, data[record.offset - first : record.entry_end - first]
