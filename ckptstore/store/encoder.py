"""BlockEncoder: how a new block is stored, for ingests and uploads alike.

A tensor block whose slot held a block of the same length in the job's
previous checkpoint is stored as its delta against that block when the
delta looks smaller (deltas.py, codecs.py); otherwise as zstd of its bytes
or byte planes. Its raw bytes are offered to the base cache, since the next
checkpoint will want them as a base.
"""

from __future__ import annotations

from ckptstore.store.catalog.base import BlockRecord
from ckptstore.store.codecs import Codec
from ckptstore.store.context import StoreContext
from ckptstore.store.deltas import DeltaBases
from ckptstore.store.ids import block_id
from ckptstore.store.leases import LeaseKeeper
from ckptstore.store.restore import load_block

Encoded = tuple[Codec, bytes | memoryview, bytes | None]  # codec, payload, base id


class BlockEncoder:
    """Encodes the new blocks of one ingest or upload; ``encode`` is thread-safe."""

    def __init__(self, ctx: StoreContext, bases: DeltaBases, leases: LeaseKeeper) -> None:
        self._ctx = ctx
        self._bases = bases
        self._leases = leases
        self._cache = ctx.base_cache
        self._generation = self._cache.new_generation(leases.holder)

    def bases(self, blocks: list[tuple[bytes, int, str | None]]) -> dict[bytes, BlockRecord]:
        """The delta base of each ``(block id, length, slot)`` that has one, leased until
        the commit so that GC cannot take a base meanwhile."""
        found = {
            bid: base
            for bid, length, slot in blocks
            if (base := self._bases.base_for(slot, bid, length)) is not None
        }
        if not found:
            return {}
        held = self._leases.lease_existing(sorted({b.block_id for b in found.values()}))
        return {bid: base for bid, base in found.items() if base.block_id in held}

    def encode(
        self,
        bid: bytes,
        raw: memoryview,
        width: int | None,
        slot: str | None,
        base: BlockRecord | None,
    ) -> Encoded:
        """``width``: the element width for byte planes (0: none, None: judge the bytes);
        ``base``: from ``bases`` (tensor blocks only, which always have a width)."""
        codec = self._ctx.codec
        depth = 0
        result: Encoded | None = None
        if base is not None and width:
            base_raw = self._cache.take(base.block_id)
            if base_raw is None or block_id(base_raw) != base.block_id:
                # a delta against wrong bytes could never be read back: trust only
                # bytes that hash to the base (decoding it checks the same)
                base_raw = load_block(self._ctx, base)
            delta = codec.encode_delta(raw, base_raw, width)
            if delta is not None:
                result = (delta[0], delta[1], base.block_id)
                depth = self._bases.depth(base) + 1
        if result is None:
            encoded, payload = codec.encode(raw, width)
            result = (encoded, payload, None)
        if slot is not None and depth < self._ctx.config.delta_max_depth:
            self._cache.offer(bid, raw, self._generation)  # the next checkpoint's base
        return result
