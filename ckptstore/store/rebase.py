"""Reverse deltas: a job's newest checkpoint stays whole; its parent becomes deltas on it.

New blocks are always stored whole. Once a checkpoint C of a job commits,
each tensor block X of the job's previous checkpoint P is re-encoded as its
difference from the block Y that holds the same slot (tensor name, block
index) in C, when both are whole, of one length, and the difference is
stored smaller than X is (codecs.encode_delta). Resuming a run reads the newest checkpoint,
which then decodes no chain at all; a checkpoint k saves older than a whole
block decodes k + 1 payloads per block.

Every other block X of P (bytes that are not a tensor's: pickled state, JSON) is
likewise re-encoded against the block Y of C at the same place of the same file
(counterparts.py), as one zstd frame with Y's bytes as its prefix (codec 8,
``codecs.encode_prefixed``), when that is OPAQUE_MAX_RATIO of X's stored size or
less: scattered edits to such a file leave most of its blocks changed, so without
it every save stored them whole again.

A block X stored raw by its put (``StoreConfig.defer_whole_encode``: a tensor
block that was never encoded) is always re-encoded: as a delta where one is
found clearly smaller than an estimate of its whole payload
(DEFERRED_DELTA_MARGIN), else whole with the full codec and the smaller of the
two kept. Whatever it becomes, it is encoded once.

Chains stay bounded: X is left whole (a keyframe) when blocks already depend
on it ``delta_max_depth`` deep, so no read decodes more than
``delta_max_depth + 1`` payloads.

Safety: the new entries are written to a fresh pack and made durable first;
one catalog transaction then records the pack and re-points each X, but only
if X is still whole where it was read and Y is still whole (catalog
``reencode_blocks``). So a rebase never races a GC move, and since a block only
ever becomes a delta against a block without a base, no chain can loop. X's
old entry becomes dead bytes, which ``compact_packs`` (gc.py) reclaims; a
crash before the transaction leaves an orphan pack for GC, and the rebase
itself stays listed in the catalog (``pending_rebases``) until it is done,
so the store runs it again when it is next opened.

Which checkpoint is rebased is decided here (``choose_rebase_parent``) and
evaluated by the catalog inside the commit's transaction, so the pending
rebase is recorded with the commit or not at all. The element width a delta
needs is the catalog's (``BlockRecord.width``); a store from before catalog
schema 4 has it read from each payload once, when it is opened
(``record_legacy_widths``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ckptstore.errors import (
    CheckpointNotFound,
    CorruptBlockError,
    MissingBlockError,
    PackNotFound,
)
from ckptstore.store.catalog.base import BlockIndex
from ckptstore.store.catalog.records import BlockRecord, CheckpointRecord
from ckptstore.store.codecs.block import min_delta_len
from ckptstore.store.codecs.encoder import deferrable
from ckptstore.store.codecs.estimate import whole_estimate
from ckptstore.store.codecs.ids import (
    DELTA_CODECS,
    DELTA_WIDTHS,
    PLANE_WIDTHS,
    WIDTH_PREFIXED,
    Codec,
)
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import block_id
from ckptstore.store.packs.entries import load_block
from ckptstore.store.packs.format import PackEntry
from ckptstore.store.packs.usage import reclaimable
from ckptstore.store.packs.writer import PackWriter, block_record

log = logging.getLogger("ckptstore.rebase")

IN_FLIGHT_BYTES = 16 * 1024 * 1024  # raw bytes of blocks being re-encoded at once
WIDTHS_SETTING = "legacy_widths"  # set once no block row lacks its width
WIDTH_BATCH = 10_000  # block rows whose width is read per catalog round trip
# A delta of opaque bytes is kept only when it stores clearly less than the whole
# block: reading it decodes its base first.
OPAQUE_MAX_RATIO = 0.9
# A zstd frame that names a match in its prefix took 15 bytes or more in every case
# measured (frame and block headers, one sequence), above OPAQUE_MAX_RATIO of 16: a
# block stored in 16 bytes or fewer is not read and compressed to find out (the
# small headers between the tensors of a torch.save file, none of which paid).
OPAQUE_MIN_STORED = 16
# A block stored raw by its put keeps a delta found below this share of the estimate
# of its whole payload without encoding it whole to compare: on the bench corpora no
# delta below it was larger than the whole payload (bench: ingest_designs).
DEFERRED_DELTA_MARGIN = 0.6
HOLDER_BATCH = 1000  # raw blocks whose checkpoints are looked up per catalog round trip
BASED_CODECS = (*DELTA_CODECS, Codec.ZSTD_PREFIX)  # payloads that name a base block


def choose_rebase_parent(others: Iterable[CheckpointRecord]) -> str | None:
    """Of a job's other ready checkpoints (newest first), the one to store as deltas on
    the checkpoint being committed: the newest that is not a best copy (a copy comes
    and goes; its source stays)."""
    return next((c.checkpoint_id for c in others if c.parent_id is None), None)


@dataclass(frozen=True)
class Pair:
    """A block to re-encode: as a delta on ``onto``, or whole when that is None."""

    block: BlockRecord  # X, as stored now
    onto: BlockRecord | None  # Y: the newer checkpoint's block at X's slot or place
    width: int | None  # element width (None: opaque bytes, or whole: let the codec judge)


def deferred(record: BlockRecord) -> bool:
    """Whether a block is a tensor block its put stored raw, still to be encoded."""
    return (
        record.codec == Codec.RAW
        and record.base_id is None
        and deferrable(record.raw_len, record.width)
    )


@dataclass
class RebaseReport:
    """What a rebase (or GC storing orphaned deltas whole) re-encoded."""

    blocks_reencoded: int = 0
    bytes_before: int = 0  # stored bytes of the entries replaced
    bytes_after: int = 0  # ... and of the entries replacing them
    packs_emptied: set[str] = field(default_factory=set)  # packs that lost entries
    # raw tensor blocks that no encoding stored smaller (or that could not be read):
    # still codec 0, not to be tried again
    left_raw: set[bytes] = field(default_factory=set)


def rebase_parent(
    ctx: StoreContext,
    parent: dict[str, BlockRecord],
    child: dict[str, BlockRecord],
    parent_id: str | None = None,
    opaque: Iterable[tuple[BlockRecord, BlockRecord]] = (),
) -> RebaseReport:
    """Re-encode the parent checkpoint's tensor blocks as deltas on the child's (both by
    slot), and its ``opaque`` blocks on their counterparts (counterparts.py). The bytes
    saved come off the stored bytes of checkpoint ``parent_id``."""
    limit = ctx.config.delta_max_depth
    opaque = list(opaque)
    if limit <= 0 or not ctx.codec.byte_planes or not (parent or opaque):
        return RebaseReport()
    pairs = _freeing(ctx, _pairs(ctx, parent, child, opaque, limit))
    return _reencode(ctx, pairs, parent_id)


def encode_deferred(
    ctx: StoreContext, checkpoint_id: str, skip: Collection[bytes] = ()
) -> RebaseReport:
    """Encode whole, with the full codec, the blocks of a checkpoint that its put
    stored raw (``StoreConfig.defer_whole_encode``) and no rebase has encoded since:
    those of a job's newest checkpoint, when no newer save came to rebase it. Read from
    its manifest, not its slots: an upload may name none, and a block left out of the
    slots would stay raw. ``skip``: blocks tried before (``RebaseReport.left_raw``)."""
    raw = {
        r.block_id: r
        for _, r in ctx.catalog.manifest(checkpoint_id)
        if deferred(r) and r.block_id not in skip
    }
    pairs = [Pair(record, None, record.width) for record in raw.values()]
    pairs.sort(key=lambda p: (p.block.pack_id, p.block.offset))
    return _reencode(ctx, pairs, checkpoint_id)


def stale_raw_holders(
    ctx: StoreContext, committed_before: float, skip: Collection[bytes] = ()
) -> list[str]:
    """The checkpoints committed before ``committed_before`` that hold tensor blocks
    stored raw: those whose process stopped before encoding them (it died, or never
    closed the store), or another process's, which no GC there will take up. Reads
    every block row. ``skip``: blocks tried before (``RebaseReport.left_raw``)."""
    raw = [
        record.block_id
        for record in ctx.catalog.iter_blocks()
        if deferred(record) and record.block_id not in skip
    ]
    holders: set[str] = set()
    for start in range(0, len(raw), HOLDER_BATCH):
        for using in ctx.catalog.checkpoints_using(raw[start : start + HOLDER_BATCH]).values():
            holders.update(using)
    stale = []
    for checkpoint_id in sorted(holders):
        try:
            record = ctx.catalog.get_checkpoint(checkpoint_id)
        except CheckpointNotFound:
            continue  # deleted since
        if record.status == "ready" and record.created_at < committed_before:
            stale.append(checkpoint_id)
    return stale


def materialize_orphans(ctx: StoreContext, dead_before: float) -> RebaseReport:
    """Store whole every block in use whose delta base is dead but for it (the newer
    checkpoints it hung on were deleted, as when a run is rolled back), so GC can
    take the base. Without this, deleting the newest checkpoints would free nothing
    while older ones remain."""
    orphans = ctx.catalog.orphaned_deltas(dead_before)
    return _reencode(ctx, [Pair(r, None, r.width) for r in orphans], None)


def _reencode(ctx: StoreContext, pairs: list[Pair], owner: str | None) -> RebaseReport:
    """Encode ``pairs`` on the pool, a bounded number of bytes at a time, into packs."""
    report = RebaseReport()
    sink = _PackSink(ctx, report, owner)
    pending: deque[tuple[Pair, Future[tuple[int, bytes | memoryview] | None]]] = deque()
    in_flight = 0
    try:
        for pair in pairs:
            pending.append((pair, ctx.pool.submit(_encode, ctx, pair)))
            in_flight += pair.block.raw_len
            while in_flight > IN_FLIGHT_BYTES:
                in_flight -= sink.take(*pending.popleft())
        while pending:
            sink.take(*pending.popleft())
        sink.seal()
    finally:
        for _, future in pending:
            future.cancel()
        sink.close()
    return report


class _PackSink:
    """Collects re-encoded entries into packs of the target size, written as they fill
    (writer.py), and re-points the blocks of each once it is durable."""

    def __init__(self, ctx: StoreContext, report: RebaseReport, owner: str | None) -> None:
        self._ctx = ctx
        self._report = report
        self._owner = owner
        self._old: dict[bytes, BlockRecord] = {}  # each block re-encoded, as stored before
        self._writer = PackWriter(ctx, "", recorder=self._repoint)

    def close(self) -> None:
        """Stop the writer (what was not sealed is dropped)."""
        self._writer.close()

    def take(self, pair: Pair, future: Future[tuple[int, bytes | memoryview] | None]) -> int:
        """Add one pair's encoding (if it pays); returns the raw bytes it stood for."""
        encoded = future.result()
        if encoded is None and deferred(pair.block):
            self._report.left_raw.add(pair.block.block_id)
        if encoded is not None:
            codec, payload = encoded
            base_id = None if pair.onto is None or codec not in BASED_CODECS else pair.onto.block_id
            self._old[pair.block.block_id] = pair.block
            self._writer.add(pair.block.block_id, codec, pair.block.raw_len, payload, base_id)
        return pair.block.raw_len

    def seal(self) -> None:
        """Seal the open pack and wait until every pack is durable and its blocks
        re-pointed."""
        self._writer.finish()

    def _repoint(self, pack_id: str, size: int, entries: list[PackEntry]) -> None:
        """Re-point the blocks of a durable pack (one transaction); on the writer's thread."""
        ctx, report = self._ctx, self._report
        olds = [self._old.pop(e.block_id) for e in entries]
        records = [
            (old, block_record(e, pack_id, old.width)) for old, e in zip(olds, entries, strict=True)
        ]
        applied = ctx.catalog.reencode_blocks(
            pack_id, size, records, ctx.clock(), self._owner, ctx.config.delta_max_depth
        )
        if not applied:
            ctx.blocks.delete(pack_id)
            return
        for old, new in records:
            if old.block_id in applied:
                report.blocks_reencoded += 1
                report.bytes_before += old.stored_len
                report.bytes_after += new.stored_len
                report.packs_emptied.add(old.pack_id)


def _pairs(
    ctx: StoreContext,
    parent: dict[str, BlockRecord],
    child: dict[str, BlockRecord],
    opaque: list[tuple[BlockRecord, BlockRecord]],
    limit: int,
) -> list[Pair]:
    candidates = [
        Pair(record, target, target.width)
        for slot, record in parent.items()
        if (target := child.get(slot)) is not None
        and record.base_id is None
        and target.base_id is None
        and target.block_id != record.block_id
        and target.raw_len == record.raw_len
        and target.width in DELTA_WIDTHS
        # no delta is that short (a scalar such as a step count): not read to find out
        and record.stored_len > min_delta_len(target.width)
    ]
    candidates += [
        Pair(record, target, None)
        for record, target in opaque
        if record.stored_len > OPAQUE_MIN_STORED
    ]
    heights = chain_heights(ctx.catalog, [p.block.block_id for p in candidates], limit)
    pairs: list[Pair] = []
    for pair in candidates:
        if heights[pair.block.block_id] >= limit:
            if deferred(pair.block):  # a keyframe: encoded whole
                pairs.append(Pair(pair.block, None, pair.block.width))
            continue  # older blocks already hang this deep below it: it stays a keyframe
        pairs.append(pair)
    # Raw blocks with no delta to try are encoded whole (each once: a block held by
    # several checkpoints is no longer raw by the next rebase).
    paired = {pair.block.block_id for pair in pairs}
    pairs += [
        Pair(record, None, record.width)
        for record in {r.block_id: r for r in parent.values()}.values()
        if deferred(record) and record.block_id not in paired
    ]
    pairs.sort(key=lambda p: (p.block.pack_id, p.block.offset))  # read packs in order
    return pairs


def _freeing(ctx: StoreContext, pairs: list[Pair]) -> list[Pair]:
    """The pairs whose whole copies GC would then take off disk: those in packs that
    their deaths would leave reclaimable. Next to a whole copy that stays, a delta
    only adds bytes (a frozen base with a few changing tensors in one pack)."""
    dying: dict[str, int] = {}
    for pair in pairs:
        dying[pair.block.pack_id] = dying.get(pair.block.pack_id, 0) + pair.block.entry_len
    fraction = ctx.config.compact_dead_fraction
    kept = {
        usage.pack_id
        for usage in ctx.catalog.pack_usage(dying)
        if reclaimable(usage, fraction, dying[usage.pack_id])
    }
    # A raw block is encoded whatever its pack: left raw, it would stay so.
    return [pair for pair in pairs if pair.block.pack_id in kept or deferred(pair.block)]


def record_legacy_widths(ctx: StoreContext) -> int:
    """Record the width of every block row written before catalog schema 4, once per
    store; returns how many rows that took.

    Such a row does not say its width, which the rebase needs. As the rebase did
    before the catalog held it, it is the element width a byte-plane payload
    records (its first byte), or None for other codecs and unreadable packs.
    """
    catalog = ctx.catalog
    if catalog.get_setting(WIDTHS_SETTING) is not None:
        return 0
    done, after = 0, b""
    while batch := catalog.unknown_widths(after, WIDTH_BATCH):
        in_order = sorted(batch, key=lambda r: (r.pack_id, r.offset))  # read packs in order
        catalog.record_widths({r.block_id: _payload_width(ctx, r) for r in in_order})
        done += len(batch)
        after = batch[-1].block_id
    catalog.set_setting_if_absent(WIDTHS_SETTING, "recorded")
    return done


def _payload_width(ctx: StoreContext, record: BlockRecord) -> int | None:
    """The element width a byte-plane payload records (its first byte), else None."""
    if record.codec not in WIDTH_PREFIXED or record.stored_len < 1:
        return None
    try:
        return ctx.blocks.get(record.pack_id, record.offset + record.header_len, 1)[0]
    except PackNotFound:
        return None


def _raw(ctx: StoreContext, record: BlockRecord, keep: bool) -> bytes | memoryview:
    """A block's raw bytes: from the base cache when they hash right, else decoded."""
    cache = ctx.base_cache
    raw = cache.peek(record.block_id) if keep else cache.take(record.block_id)
    if raw is not None and block_id(raw) == record.block_id:
        return raw
    return load_block(ctx, record)


def _encode(ctx: StoreContext, pair: Pair) -> tuple[int, bytes | memoryview] | None:
    try:
        raw = _raw(ctx, pair.block, keep=False)
        if pair.onto is None:  # whole, from a delta (a tensor block): its bytes were just checked
            return _whole(ctx, pair, raw)
        base = _raw(ctx, pair.onto, keep=True)  # the next rebase re-encodes this one
    except (CorruptBlockError, MissingBlockError) as exc:
        log.warning("not re-encoding block %s: %s", pair.block.block_id.hex(), exc)
        return None
    if deferred(pair.block):
        return _deferred(ctx, pair, raw, base)
    encoded: tuple[Codec, bytes | memoryview] | None
    if pair.width is None:
        limit = int(OPAQUE_MAX_RATIO * pair.block.stored_len)
        encoded = ctx.codec.encode_prefixed(memoryview(raw), base, limit)
    else:
        encoded = ctx.codec.encode_delta(memoryview(raw), base, pair.width, pair.block.stored_len)
    if encoded is None or not _decodes_back(ctx, pair, encoded, raw, base):
        return None
    return encoded


def _whole(
    ctx: StoreContext, pair: Pair, raw: bytes | memoryview
) -> tuple[int, bytes | memoryview] | None:
    """The block encoded whole; None where that stores it no smaller than it is."""
    width = pair.width if pair.width in PLANE_WIDTHS else None
    codec, payload = ctx.codec.encode(memoryview(raw), width, aligned=width is not None)
    if codec == pair.block.codec and len(payload) >= pair.block.stored_len:
        return None
    return codec, payload


def _deferred(
    ctx: StoreContext, pair: Pair, raw: bytes | memoryview, base: bytes | memoryview
) -> tuple[int, bytes | memoryview] | None:
    """A raw block encoded once: the delta where it is clearly smaller than an estimate
    of the whole payload, else the smaller of the delta and the whole payload."""
    assert pair.width is not None  # a deferred block is a tensor block
    estimate = whole_estimate(raw, pair.width)
    # Not bounded by the estimate: on short blocks it is too low (a small sample).
    delta = ctx.codec.encode_delta(memoryview(raw), base, pair.width)
    if delta is not None and len(delta[1]) < DEFERRED_DELTA_MARGIN * estimate:
        if _decodes_back(ctx, pair, delta, raw, base):
            return delta
        delta = None
    whole = _whole(ctx, pair, raw)
    if delta is None or (whole is not None and len(whole[1]) <= len(delta[1])):
        return whole
    return delta if _decodes_back(ctx, pair, delta, raw, base) else whole


def _decodes_back(
    ctx: StoreContext,
    pair: Pair,
    encoded: tuple[int, bytes | memoryview],
    raw: bytes | memoryview,
    base: bytes | memoryview,
) -> bool:
    """Whether a delta gives the block back: the whole copy is about to be dropped."""
    decoded = ctx.codec.decode(encoded[0], encoded[1], len(raw), base)
    if not same_bytes(decoded, raw):
        log.error("delta of block %s does not decode back; kept whole", pair.block.block_id.hex())
        return False
    return True


def same_bytes(a: bytes | memoryview, b: bytes | memoryview) -> bool:
    """Whether ``a`` and ``b`` hold the same bytes: compared eight at a time, which
    takes a fraction of comparing byte by byte (a memoryview compares element by
    element through the struct module, slower still)."""
    if len(a) != len(b):
        return False
    ours, theirs = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
    words = len(a) // 8 * 8
    return bool(
        np.array_equal(ours[:words].view(np.uint64), theirs[:words].view(np.uint64))
        and np.array_equal(ours[words:], theirs[words:])
    )


# -- delta chains ----------------------------------------------------------------
# A block stored as a delta names its base; reading it decodes the base first
# (restore.py). The rebase keeps chains at most ``delta_max_depth`` long.


def chain_depths(
    catalog: BlockIndex, records: Iterable[BlockRecord], limit: int
) -> dict[bytes, int]:
    """How many deltas lie between each block and a whole block; ``limit + 1`` stands
    for "more than ``limit``" (and for a chain whose base is missing)."""
    records = list(records)
    known = {record.block_id: record for record in records}
    wanted = {r.base_id for r in records if r.base_id is not None}
    for _ in range(limit):
        wanted -= known.keys()
        if not wanted:
            break
        found = catalog.get_blocks(sorted(wanted))
        known.update(found)
        wanted = {r.base_id for r in found.values() if r.base_id is not None}

    def depth(record: BlockRecord | None) -> int:
        steps = 0
        while record is not None and record.base_id is not None and steps <= limit:
            steps += 1
            record = known.get(record.base_id)
        return limit + 1 if record is None else min(steps, limit + 1)

    return {record.block_id: depth(record) for record in records}


def chain_heights(catalog: BlockIndex, ids: list[bytes], limit: int) -> dict[bytes, int]:
    """How many deltas deep blocks hang below each block (``limit`` stands for at
    least that many)."""
    heights = dict.fromkeys(ids, 0)
    owner = {bid: bid for bid in ids}  # a dependent -> the block of ``ids`` it hangs from
    level = list(ids)
    for depth in range(1, limit + 1):
        found = catalog.deltas_on(level)
        if not found:
            break
        level = []
        for record in found:
            if record.block_id in owner:
                continue  # seen already: only a corrupt catalog could loop
            root = owner[record.base_id]  # type: ignore[index]  # deltas_on: base_id is set
            owner[record.block_id] = root
            heights[root] = depth
            level.append(record.block_id)
    return heights
