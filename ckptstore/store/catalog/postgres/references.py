"""Refcounts in PostgreSQL: the increments of a commit and the decrements of a delete."""

from __future__ import annotations

from ckptstore.errors import MissingBlockError
from ckptstore.store.catalog.postgres.blocks import hold_blocks
from ckptstore.store.catalog.postgres.database import Connection


def add_references(conn: Connection, counts: dict[bytes, int]) -> None:
    """Increment refcounts; MissingBlockError (rolling back) if any block is gone."""
    if not counts:
        return
    ids = sorted(counts)
    # the rows are locked first, in id order: a GC deleting one waits for this commit
    found = set(hold_blocks(conn, ids, "NO KEY UPDATE"))
    if len(found) != len(ids):
        raise MissingBlockError([b.hex() for b in counts if b not in found])
    conn.execute(
        "UPDATE blocks b SET refcount = b.refcount + v.n, dead_since = NULL"
        " FROM unnest(%s::bytea[], %s::bigint[]) AS v(id, n) WHERE b.block_id = v.id",
        (ids, [counts[b] for b in ids]),
    )


def drop_references(conn: Connection, counts: dict[bytes, int], now: float) -> None:
    """Decrement refcounts; a block left with none is dead from ``now``."""
    if not counts:
        return
    ids = sorted(counts)
    hold_blocks(conn, ids, "NO KEY UPDATE")
    conn.execute(
        "UPDATE blocks b SET refcount = b.refcount - v.n,"
        " dead_since = CASE WHEN b.refcount - v.n <= 0 THEN %s ELSE NULL END"
        " FROM unnest(%s::bytea[], %s::bigint[]) AS v(id, n) WHERE b.block_id = v.id",
        (now, ids, [counts[b] for b in ids]),
    )
