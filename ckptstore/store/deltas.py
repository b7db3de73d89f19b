"""Delta bases: the block at the same slot of the job's previous checkpoint.

A tensor block of a new checkpoint may be stored as its difference from the block
that held the same slot (tensor name, block index) in the job's newest ready
checkpoint. Chains stay short: a block already ``delta_max_depth`` deltas away
from a whole block is never a base, so the new block is stored whole (a
keyframe), and reading any block decodes at most ``delta_max_depth + 1``
payloads.
"""

from __future__ import annotations

from collections.abc import Iterable

from ckptstore.store.catalog.base import BlockRecord, Catalog
from ckptstore.store.context import StoreContext


def chain_depths(catalog: Catalog, records: Iterable[BlockRecord], limit: int) -> dict[bytes, int]:
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


class DeltaBases:
    """The blocks a new checkpoint of one job may encode deltas against, by slot."""

    def __init__(self, bases: dict[str, BlockRecord], depths: dict[bytes, int] | None = None):
        self._bases = bases
        self._depths = depths or {}

    @classmethod
    def for_job(cls, ctx: StoreContext, tenant_id: str, job_id: str) -> DeltaBases:
        limit = ctx.config.delta_max_depth
        if limit <= 0 or not ctx.codec.byte_planes:
            return cls({})
        slots = ctx.catalog.parent_slots(tenant_id, job_id)
        depths = chain_depths(ctx.catalog, slots.values(), limit)
        return cls({s: r for s, r in slots.items() if depths[r.block_id] < limit}, depths)

    def base_for(self, slot: str | None, block_id: bytes, raw_len: int) -> BlockRecord | None:
        """The base for a block of ``raw_len`` bytes at ``slot``, if there is one."""
        if slot is None:
            return None
        base = self._bases.get(slot)
        if base is None or base.raw_len != raw_len or base.block_id == block_id:
            return None
        return base

    def depth(self, base: BlockRecord) -> int:
        """How many deltas lie between ``base`` and a whole block."""
        return self._depths.get(base.block_id, 0)
