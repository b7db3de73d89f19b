"""Loading one block from its pack entry: read the entry (a run of adjacent entries at
once), decode it (a delta's bases first) and check it against its block id.

Every path that needs a block's bytes (restore, rebase, GC's compaction, verify) goes
through ``load_block`` or ``decode_entry``: a block that does not hash to its id raises
CorruptBlockError instead of returning data.
"""

from __future__ import annotations

import threading

import numpy as np

from ckptstore.errors import (
    CorruptBlockError,
    MissingBlockError,
    PackNotFound,
    UnreadableBlockError,
)
from ckptstore.store.catalog.records import BlockRecord, adjacent_runs
from ckptstore.store.codecs.ids import DecodeError
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import block_id
from ckptstore.store.packs.format import parse_entry


def decode_entry(
    ctx: StoreContext,
    record: BlockRecord,
    entry_bytes: bytes | memoryview,
    base: bytes | memoryview | None = None,
    *,
    verify: bool = True,
    out: np.ndarray | None = None,
) -> bytes | memoryview:
    """The raw bytes of one pack entry (``base``: its base block's raw bytes, for a
    delta; ``out``: where to write them), checked against the block id unless
    ``verify`` is False."""
    name = record.block_id.hex()
    try:
        entry, payload = parse_entry(entry_bytes)
    except ValueError as exc:
        raise CorruptBlockError(name, record.pack_id, str(exc)) from None
    if entry.block_id != record.block_id:
        raise CorruptBlockError(name, record.pack_id, "entry header names another block")
    try:
        if out is not None and len(out) != entry.raw_len:
            raise DecodeError(f"entry says {entry.raw_len} bytes, the catalog {len(out)}")
        raw = ctx.codec.decode(entry.codec, payload, entry.raw_len, base, out)
    except DecodeError as exc:
        raise CorruptBlockError(name, record.pack_id, str(exc)) from None
    if len(raw) != record.raw_len or (verify and block_id(raw) != record.block_id):
        raise CorruptBlockError(name, record.pack_id, "content does not hash to the block id")
    return raw


MAX_CHAIN = 64  # far above any configured delta depth: a longer chain is a corrupt catalog


def load_block(
    ctx: StoreContext, record: BlockRecord, entry_bytes: bytes | memoryview | None = None
) -> bytes | memoryview:
    """Read, decode and verify one block (a delta's bases first); follows a block that
    GC moved meanwhile. ``entry_bytes``: its pack entry, where the caller read it."""
    if entry_bytes is None:
        record, entry_bytes = _entry_bytes(ctx, record)
    if record.base_id is None:
        return decode_entry(ctx, record, entry_bytes)
    # Only the block asked for is hashed: a damaged base cannot give a block that
    # hashes right. If it does not, the chain is walked again, hashing every base,
    # so that the error names the block that is actually damaged.
    try:
        return decode_entry(ctx, record, entry_bytes, load_base(ctx, record, verify=False))
    except CorruptBlockError:
        base = load_base(ctx, record, verify=True)
        return decode_entry(ctx, record, entry_bytes, base)


def load_base(
    ctx: StoreContext, record: BlockRecord, depth: int = 0, *, verify: bool = True
) -> bytes | memoryview | None:
    """The raw bytes of a delta block's base (hashed if ``verify``); None for a whole
    block.

    Chains are at most ``delta_max_depth`` long when written; one that runs on
    past MAX_CHAIN (only a corrupt catalog could hold a loop) is reported as a
    missing base rather than followed forever.
    """
    if record.base_id is None:
        return None
    base = ctx.catalog.get_block(record.base_id)
    if base is None or depth >= MAX_CHAIN:
        raise MissingBlockError([record.base_id.hex()])
    base, entry_bytes = _entry_bytes(ctx, base)
    below = load_base(ctx, base, depth + 1, verify=verify)
    # Each level is needed only to decode the one above it: levels alternate between
    # two buffers of this thread instead of taking fresh memory (bench: corpora).
    out = _chain_buffer(depth % 2, base.raw_len)
    return decode_entry(ctx, base, entry_bytes, below, verify=verify, out=out)


_chain = threading.local()


def _chain_buffer(which: int, size: int) -> np.ndarray:
    """One of this thread's two buffers for the levels of a delta chain, ``size`` long
    (valid until the thread decodes another chain)."""
    buffers: list[np.ndarray] | None = getattr(_chain, "buffers", None)
    if buffers is None:
        buffers = _chain.buffers = [np.empty(0, np.uint8), np.empty(0, np.uint8)]
    if len(buffers[which]) < size:
        buffers[which] = np.empty(size, np.uint8)
    return buffers[which][:size]


def _entry_bytes(ctx: StoreContext, record: BlockRecord) -> tuple[BlockRecord, bytes]:
    try:
        try:
            return record, ctx.blocks.get(record.pack_id, record.offset, record.entry_len)
        except PackNotFound:
            moved = ctx.catalog.get_block(record.block_id)
            if moved is None or moved.pack_id == record.pack_id:
                raise MissingBlockError([record.block_id.hex()]) from None
            record = moved
            return moved, ctx.blocks.get(moved.pack_id, moved.offset, moved.entry_len)
    except OSError as exc:
        # an I/O error names no block or checkpoint: say which block could not be read
        raise UnreadableBlockError(record.block_id.hex(), record.pack_id, str(exc)) from exc


Loaded = bytes | memoryview | Exception  # a block's bytes, or why they could not be read


def load_each(ctx: StoreContext, records: list[BlockRecord]) -> list[Loaded]:
    """``load_block`` of each record; an error stays with its block, so that reading the
    others of the task still works. Entries that follow one another in a pack are read
    at once: a torch.save file's hundreds of small blocks took a pack open and read
    each."""
    loaded: list[Loaded] = []
    for run in adjacent_runs(records):
        for record, entry in zip(run, _read_run(ctx, run), strict=True):
            try:
                loaded.append(load_block(ctx, record, entry))
            except Exception as exc:  # noqa: BLE001 - raised again when its block is read
                loaded.append(exc)
    return loaded


def _read_run(ctx: StoreContext, run: list[BlockRecord]) -> list[memoryview | None]:
    """The pack entries of a run, read at once; None for each where a run is one block
    or the read fails (each block is then read alone, which follows a block that GC
    moved, or names the one that cannot be read)."""
    start, end = run[0].offset, run[-1].entry_end
    if len(run) > 1:
        try:
            data = memoryview(ctx.blocks.get(run[0].pack_id, start, end - start))
        except (PackNotFound, OSError):
            data = memoryview(b"")
        if len(data) == end - start:
            return [data[r.offset - start : r.entry_end - start] for r in run]
    return [None] * len(run)
