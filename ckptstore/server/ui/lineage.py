"""How a checkpoint is stored relative to its job's other checkpoints: how many of its
blocks are deltas, how deep its longest delta chain is, and how many of its bytes it
shares with the checkpoints made just before and after it."""

from __future__ import annotations

from dataclasses import dataclass

from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointStore
from ckptstore.store.rebase import chain_depths


@dataclass(frozen=True)
class Neighbour:
    record: CheckpointRecord
    shared_bytes: int  # raw bytes of the blocks both checkpoints use


@dataclass(frozen=True)
class Lineage:
    blocks: int
    delta_blocks: int
    chain_depth: int  # deltas between the deepest block and a whole one
    previous: Neighbour | None
    next: Neighbour | None


def lineage(store: CheckpointStore, record: CheckpointRecord) -> Lineage | None:
    """The lineage of a ready checkpoint (None for a pending one)."""
    if record.status != "ready":
        return None
    catalog = store.context.catalog
    blocks = {r.block_id: r for _, r in catalog.manifest(record.checkpoint_id)}
    limit = store.context.config.delta_max_depth
    depths = chain_depths(catalog, blocks.values(), limit)
    history = [
        r
        for r in store.list(
            record.job_id, order="asc", limit=None, tenant=record.tenant_id
        ).checkpoints
        if r.status == "ready" and r.type != "best"
    ]
    ids = [r.checkpoint_id for r in history]
    at = ids.index(record.checkpoint_id) if record.checkpoint_id in ids else None

    def neighbour(index: int) -> Neighbour | None:
        if at is None or not 0 <= index < len(history):
            return None
        other = {r.block_id: r for _, r in catalog.manifest(history[index].checkpoint_id)}
        shared = sum(blocks[bid].raw_len for bid in blocks.keys() & other.keys())
        return Neighbour(history[index], shared)

    return Lineage(
        blocks=len(blocks),
        delta_blocks=sum(1 for r in blocks.values() if r.base_id is not None),
        chain_depth=max(depths.values(), default=0),
        previous=neighbour(at - 1) if at is not None else None,
        next=neighbour(at + 1) if at is not None else None,
    )
