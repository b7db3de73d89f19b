"""PackWriter: appends encoded blocks to packs and makes them durable, then known.

Write order (FORMAT.md): a pack is stored durably first, then recorded in the
catalog with its blocks leased to the writer's holder, so GC cannot take them
before the checkpoint that references them commits.

The open pack goes to the block store as it fills, an eighth of the target
pack size at a time (``BlockStore.begin``), on a background thread: when the stream ends
only the last piece is left to write and make durable, instead of a whole
pack (what a training loop waits for after its last byte; bench: ab).
A piece is a list of entry headers and payloads, written as they are: the
calling thread copies no payload bytes. At most MAX_QUEUED pieces wait for
that thread, so memory stays flat however long the stream and however slow
the disk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ckptstore.store.blockstore.base import PendingObject
from ckptstore.store.catalog.records import BlockRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import new_pack_id
from ckptstore.store.packs.format import ENTRY, HEADER, PACK_HEADER, PackEntry, entry_header

PIECES_PER_PACK = 8
MAX_QUEUED = 8  # pieces handed to the sealer thread and not yet written

# Records a durable pack (id, size, entries) in the catalog, on the sealer thread.
Recorder = Callable[[str, int, list[PackEntry]], None]


def block_record(entry: PackEntry, pack_id: str, width: int | None) -> BlockRecord:
    """The catalog's record of an entry of pack ``pack_id`` (``width``: the element
    width of a tensor block, None for opaque bytes)."""
    return BlockRecord(
        entry.block_id,
        pack_id,
        entry.offset,
        entry.stored_len,
        entry.raw_len,
        entry.codec,
        entry.base_id,
        header_len=ENTRY.size,
        width=width,
    )


class PackWriter:
    """One open pack at a time for one ingest or upload (the lease holder), or for a
    rebase, which records its packs its own way (``recorder``)."""

    def __init__(self, ctx: StoreContext, holder: str, recorder: Recorder | None = None) -> None:
        self._ctx = ctx
        self.holder = holder
        self._recorder = recorder or self._lease_new_blocks
        self._raw_lens: dict[bytes, int] = {}  # every block accepted: open, sealing or sealed
        self._widths: dict[bytes, int] = {}  # of the tensor blocks among them
        self._sealer = ThreadPoolExecutor(1, thread_name_prefix="ckptstore-seal")
        self._queued: deque[Future[None]] = deque()  # the sealer's work, in order
        self._pending: PendingObject | None = None  # where the open pack is being written
        self._pack_id = ""
        self._entries: list[PackEntry] = []  # of the open pack
        self._size = 0  # bytes of the open pack
        self._parts: list[bytes] = []  # of the open pack, not yet handed to the sealer
        self._unflushed = 0  # their bytes
        self._piece_bytes = max(1, ctx.config.pack_target_bytes // PIECES_PER_PACK)

    def __contains__(self, block_id: bytes) -> bool:
        return block_id in self._raw_lens

    def raw_len(self, block_id: bytes) -> int | None:
        return self._raw_lens.get(block_id)

    def add(
        self,
        block_id: bytes,
        codec: int,
        raw_len: int,
        payload: bytes | memoryview,
        base_id: bytes | None = None,
        width: int | None = None,
    ) -> None:
        """Append a block to the open pack (once per block id); ``width``: the element
        width of a tensor block, None for opaque bytes."""
        if block_id in self._raw_lens:
            return
        if width:
            self._widths[block_id] = width
        if not isinstance(payload, bytes):
            payload = bytes(payload)  # written later: a view's buffer may be reused meanwhile
        if not self._entries:
            self._parts.append(PACK_HEADER)
            self._size = self._unflushed = HEADER.size
        entry = PackEntry(block_id, self._size, len(payload), raw_len, codec, base_id)
        self._parts += (entry_header(entry), payload)
        self._entries.append(entry)
        self._size += ENTRY.size + len(payload)
        self._unflushed += ENTRY.size + len(payload)
        self._raw_lens[block_id] = raw_len
        if self._size >= self._ctx.config.pack_target_bytes:
            self.seal()
        elif self._unflushed >= self._piece_bytes:
            self._flush()

    def seal(self) -> None:
        """Hand the rest of the open pack to the sealer thread, which makes it durable
        and records it; the next block starts a new pack."""
        if not self._entries:
            return
        self._flush()
        self._submit(self._record, self._pending, self._pack_id, self._entries, self._size)
        self._pending, self._entries, self._size = None, [], 0

    def finish(self) -> None:
        """Seal what is open and wait until every pack is durable and recorded."""
        self.seal()
        while self._queued:
            self._queued.popleft().result()

    def close(self) -> None:
        """Stop the sealer thread; after an error, without raising a second one. A pack
        not sealed is dropped from the block store."""
        try:
            while self._queued:
                self._queued.popleft().result()
        except Exception:  # noqa: BLE001 - the caller is already handling the first error
            pass
        finally:
            self._sealer.shutdown(wait=True)
            if self._pending is not None:
                self._pending.abort()
                self._pending = None
            self._parts = []

    def _flush(self) -> None:
        """Hand the open pack's bytes not yet handed over to the sealer thread."""
        if self._pending is None:
            self._pack_id = new_pack_id()
            self._pending = self._ctx.blocks.begin(self._pack_id)
        if self._parts:
            piece, self._parts, self._unflushed = self._parts, [], 0
            self._submit(self._write, self._pending, piece)

    def _submit(self, fn: Callable[..., None], *args: object) -> None:
        """Queue work for the sealer thread; wait while MAX_QUEUED items are queued."""
        self._queued.append(self._sealer.submit(fn, *args))
        while len(self._queued) > MAX_QUEUED or (self._queued and self._queued[0].done()):
            self._queued.popleft().result()  # an error of the sealer's surfaces here

    @staticmethod
    def _write(pending: PendingObject, piece: list[bytes]) -> None:
        try:
            pending.write(*piece)
        except BaseException:
            pending.abort()
            raise

    def _record(
        self, pending: PendingObject, pack_id: str, entries: list[PackEntry], size: int
    ) -> None:
        try:
            pending.commit()
        except BaseException:
            pending.abort()
            raise
        self._recorder(pack_id, size, entries)

    def _lease_new_blocks(self, pack_id: str, size: int, entries: list[PackEntry]) -> None:
        """Record the pack, its blocks leased to the holder until the checkpoint commits."""
        now = self._ctx.clock()
        records = [block_record(e, pack_id, self._widths.get(e.block_id)) for e in entries]
        self._ctx.catalog.add_pack(
            pack_id, size, records, now, self.holder, now + self._ctx.config.lease_ttl_s
        )
