"""Delta chains: how deep a block hangs below a whole block, and how deep others hang
below it.

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


def chain_heights(catalog: Catalog, ids: list[bytes], limit: int) -> dict[bytes, int]:
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
            root = owner[record.base_id]  # type: ignore[index]
            owner[record.block_id] = root
            heights[root] = depth
            level.append(record.block_id)
    return heights
