"""PackWriter: appends encoded blocks to packs and makes them durable, then known.

Write order (FORMAT.md): a pack is stored durably first, then recorded in the
catalog with its blocks leased to the writer's holder, so GC cannot take them
before the checkpoint that references them commits.
"""

from __future__ import annotations

from ckptstore.store.catalog.base import BlockRecord
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import new_pack_id
from ckptstore.store.packs import PackBuilder


class PackWriter:
    """One open pack at a time for one ingest or upload (the lease holder)."""

    def __init__(self, ctx: StoreContext, holder: str) -> None:
        self._ctx = ctx
        self.holder = holder
        self._builder = PackBuilder()
        self._pending: dict[bytes, int] = {}  # block id -> raw_len, in the open pack
        self.written: dict[bytes, int] = {}  # block id -> raw_len, sealed and recorded
        self.stored_bytes = 0

    def __contains__(self, block_id: bytes) -> bool:
        return block_id in self._pending or block_id in self.written

    def raw_len(self, block_id: bytes) -> int | None:
        return self._pending.get(block_id, self.written.get(block_id))

    def add(self, block_id: bytes, codec: int, raw_len: int, payload: bytes | memoryview) -> None:
        if block_id in self:
            return
        self._builder.add(block_id, codec, raw_len, payload)
        self._pending[block_id] = raw_len
        if self._builder.size >= self._ctx.config.pack_target_bytes:
            self.seal()

    def seal(self) -> None:
        """Make the open pack durable and record it; a no-op when it is empty."""
        if not self._builder.entries:
            return
        builder, self._builder = self._builder, PackBuilder()
        pack_id = new_pack_id()
        self._ctx.blocks.put(pack_id, builder.getbuffer())
        now = self._ctx.clock()
        records = [
            BlockRecord(e.block_id, pack_id, e.offset, e.stored_len, e.raw_len, e.codec, e.base_id)
            for e in builder.entries
        ]
        self._ctx.catalog.add_pack(
            pack_id, builder.size, records, now, self.holder, now + self._ctx.config.lease_ttl_s
        )
        self.stored_bytes += builder.size
        self.written.update(self._pending)
        self._pending.clear()
