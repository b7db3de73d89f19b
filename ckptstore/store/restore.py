"""The read path: manifest -> pack byte range -> decode -> verify hash -> bytes.

``load_block`` is the only way block bytes leave the engine: every block is
re-hashed and a mismatch raises CorruptBlockError instead of returning data.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from concurrent.futures import Future

import numpy as np

from ckptstore.errors import CorruptBlockError, IntegrityError, MissingBlockError, PackNotFound
from ckptstore.store.catalog.base import BlockRecord, adjacent_runs
from ckptstore.store.codecs import DecodeError
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import block_id, content_digest
from ckptstore.store.packs import ENTRY, parse_entry
from ckptstore.store.seekable import SeekableReader


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
    buffers = getattr(_chain, "buffers", None)
    if buffers is None:
        buffers = _chain.buffers = [np.empty(0, np.uint8), np.empty(0, np.uint8)]
    if len(buffers[which]) < size:
        buffers[which] = np.empty(size, np.uint8)
    return buffers[which][:size]


def _entry_bytes(ctx: StoreContext, record: BlockRecord) -> tuple[BlockRecord, bytes]:
    try:
        return record, ctx.blocks.get(record.pack_id, record.offset, ENTRY.size + record.stored_len)
    except PackNotFound:
        moved = ctx.catalog.get_block(record.block_id)
        if moved is None or moved.pack_id == record.pack_id:
            raise MissingBlockError([record.block_id.hex()]) from None
        return moved, ctx.blocks.get(moved.pack_id, moved.offset, ENTRY.size + moved.stored_len)


# Consecutive small whole blocks are fetched as one task of about this many raw bytes:
# a torch.save file holds hundreds of tiny tensors and entry headers, and a task per
# block cost more in futures and thread handoffs than decoding them (bench: ab). A
# delta is a task of its own: its chain costs more than its size says.
TASK_BYTES = 256 * 1024

Loaded = bytes | memoryview | Exception  # a block's bytes, or why they could not be read


def _load_each(ctx: StoreContext, records: list[BlockRecord]) -> list[Loaded]:
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


class CheckpointReader(SeekableReader):
    """A seekable, read-only file over one checkpoint's bytes.

    Blocks are fetched ahead of the read position (``readahead_bytes``) by the store's thread pool,
    so decompression overlaps the caller's work; random access costs only the
    blocks touched (found by binary search on the manifest offsets).
    """

    def __init__(self, ctx: StoreContext, manifest: list[tuple[int, BlockRecord]], size: int):
        super().__init__(size)
        self._ctx = ctx
        self._offsets = [offset for offset, _ in manifest]
        self._records = [record for _, record in manifest]
        ends = [*self._offsets[1:], size] if self._offsets else []
        for start, end, record in zip(self._offsets, ends, self._records, strict=True):
            if end - start != record.raw_len:  # reads would make no progress there
                raise IntegrityError(
                    f"the manifest gives block {record.block_id.hex()} {end - start} bytes"
                    f" at offset {start}; the block has {record.raw_len}"
                )
        # blocks [_low, _ahead) are being fetched: index -> its task, its place in the
        # task's list (a task fetches consecutive blocks)
        self._fetched: dict[int, tuple[Future[list[Loaded]], int]] = {}
        self._low = self._ahead = 0

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < self._size:
            index = bisect.bisect_right(self._offsets, self._pos) - 1
            data = self._block(index)
            start = self._pos - self._offsets[index]
            n = min(len(out) - done, len(data) - start)
            out[done : done + n] = data[start : start + n]
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        self._drop_from(0)
        super().close()

    def _drop_from(self, index: int) -> None:
        """Forget every fetch; the next starts at ``index``."""
        for future, _ in self._fetched.values():
            future.cancel()
        self._fetched.clear()
        self._low = self._ahead = index

    def content_digest(self) -> str:
        """A digest of the content (its block ids in order): equal bytes, equal digest."""
        return content_digest(record.block_id for record in self._records)

    # -- block fetching --------------------------------------------------------
    def _block(self, index: int) -> bytes | memoryview:
        # Read ahead by bytes, not blocks: a torch.save file interleaves 1 MiB tensor
        # blocks with runs of tiny ones, and a count of blocks left the pool idle there.
        # A reader moves forward: the blocks passed by are dropped and new ones fetched at
        # the front, each step costing only what changed. Scanning the whole window for
        # every block read, with hundreds of small blocks in it, slowed restores by
        # 15-40% (bench: ab).
        if not self._low <= index <= self._ahead:
            self._drop_from(index)  # a seek out of the window
        while self._low < index:
            task, _ = self._fetched.pop(self._low)
            self._low += 1
            if self._fetched.get(self._low, (None, 0))[0] is not task:
                task.cancel()  # no later block needs it
        limit = self._offsets[index] + self._ctx.config.readahead_bytes
        stop = max(index + 1, bisect.bisect_left(self._offsets, limit, lo=index))
        while self._ahead < stop:
            first, raw = self._ahead, 0
            while self._ahead < stop and raw < TASK_BYTES:
                record = self._records[self._ahead]
                if record.base_id is not None and self._ahead > first:
                    break  # a delta decodes its chain: one task each spreads them on the pool
                raw += record.raw_len
                self._ahead += 1
                if record.base_id is not None:
                    break
            task = self._ctx.pool.submit(_load_each, self._ctx, self._records[first : self._ahead])
            for i in range(first, self._ahead):
                self._fetched[i] = (task, i - first)
        task, place = self._fetched[index]
        loaded = task.result()[place]
        if isinstance(loaded, Exception):
            raise loaded
        return loaded

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
        """The bytes ``[start, end)`` as a sequence of views, block by block."""
        end = self._size if end is None else min(end, self._size)
        self.seek(start)
        while self._pos < end:
            index = bisect.bisect_right(self._offsets, self._pos) - 1
            data = memoryview(self._block(index))
            begin = self._pos - self._offsets[index]
            stop = min(len(data), end - self._offsets[index])
            self._pos += stop - begin
            yield data[begin:stop]
