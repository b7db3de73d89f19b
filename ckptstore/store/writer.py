"""PackWriter: appends encoded blocks to packs and makes them durable, then known.

Write order (FORMAT.md): a pack is stored durably first, then recorded in the
catalog with its blocks leased to the writer's holder, so GC cannot take them
before the checkpoint that references them commits. Sealing (write, fsync,
catalog insert) runs on a background thread while the next pack fills; at
most one pack is being sealed at a time, and the two pack buffers are reused
from pack to pack, so memory stays flat however long the stream.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from ckptstore.store.catalog.base import BlockRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import new_pack_id
from ckptstore.store.packs import PackBuilder


class PackWriter:
    """One open pack at a time for one ingest or upload (the lease holder)."""

    def __init__(self, ctx: StoreContext, holder: str) -> None:
        self._ctx = ctx
        self.holder = holder
        self._builder = PackBuilder(ctx.pack_buffers.take())
        self._raw_lens: dict[bytes, int] = {}  # every block accepted: open, sealing or sealed
        self._sealer = ThreadPoolExecutor(1, thread_name_prefix="ckptstore-seal")
        self._sealing: Future[bytearray] | None = None
        self._spare: bytearray | None = None  # the buffer of the last pack sealed
        self.stored_bytes = 0

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
    ) -> None:
        if block_id in self._raw_lens:
            return
        self._builder.add(block_id, codec, raw_len, payload)  # new blocks are whole
        self._raw_lens[block_id] = raw_len
        if self._builder.size >= self._ctx.config.pack_target_bytes:
            self.seal()

    def seal(self) -> None:
        """Hand the open pack to the sealer thread (waiting for the previous one)."""
        if not self._builder.entries:
            return
        full = self._builder
        self._wait()
        self._builder = PackBuilder(self._spare or self._ctx.pack_buffers.take())
        self._spare = None
        self._sealing = self._sealer.submit(self._persist, full)

    def finish(self) -> None:
        """Seal what is open and wait until every pack is durable and recorded."""
        self.seal()
        self._wait()

    def close(self) -> None:
        """Stop the sealer thread; after an error, without raising a second one."""
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - the caller is already handling the first error
            pass
        finally:
            self._sealer.shutdown(wait=True)
            self._ctx.pack_buffers.give(self._spare)
            self._ctx.pack_buffers.give(self._builder.buffer)
            self._spare = None

    def _wait(self) -> None:
        sealing, self._sealing = self._sealing, None
        if sealing is not None:
            self._spare = sealing.result()

    def _persist(self, builder: PackBuilder) -> bytearray:
        pack_id = new_pack_id()
        self._ctx.blocks.put(pack_id, builder.getbuffer())
        now = self._ctx.clock()
        records = [
            BlockRecord(e.block_id, pack_id, e.offset, e.stored_len, e.raw_len, e.codec)
            for e in builder.entries
        ]
        self._ctx.catalog.add_pack(
            pack_id, builder.size, records, now, self.holder, now + self._ctx.config.lease_ttl_s
        )
        self.stored_bytes += builder.size
        return builder.buffer
