"""Delta chains: how many deltas lie between a block and a whole block.

A block stored as a delta names its base; reading it decodes the base first
(restore.py). Chains are made by rebase.py, which keeps them at most
``delta_max_depth`` long.
"""

from __future__ import annotations

from collections.abc import Iterable

from ckptstore.store.catalog.base import BlockRecord, Catalog


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
