"""Refcounts in PostgreSQL: the increments of a commit and the decrements of a delete,
by block key, kept per tenant in ``tenant_refs`` as well (schema 7): a block's
refcount is the sum of its tenants' references."""

from __future__ import annotations

from ckptstore.errors import MissingBlockError
from ckptstore.store.catalog.postgres.database import Connection
from ckptstore.store.catalog.postgres.pages import ids_of_keys


def hold_keys(conn: Connection, keys: list[int]) -> set[int]:
    """Lock the rows of those of ``keys`` (distinct, sorted) present, in key order (two
    transactions never wait on each other in a cycle); the keys found. A GC deleting
    one waits until this transaction ends, then sees what it did."""
    found = conn.execute(
        "SELECT block_key FROM blocks WHERE block_key = ANY(%s)"
        " ORDER BY block_key FOR NO KEY UPDATE",
        (keys,),
    ).fetchall()
    return {row[0] for row in found}


def add_references(conn: Connection, counts: dict[int, int], tenant_id: str) -> None:
    """Increment the refcounts of blocks (by key) for a checkpoint of ``tenant_id``;
    MissingBlockError (rolling back) if any block's row is gone."""
    if not counts:
        return
    keys = sorted(counts)
    found = hold_keys(conn, keys)
    if len(found) != len(keys):
        gone = ids_of_keys(conn, [key for key in keys if key not in found])
        raise MissingBlockError([block_id.hex() for block_id in gone.values()])
    values = [counts[key] for key in keys]
    conn.execute(
        "UPDATE blocks b SET refcount = b.refcount + v.n, dead_since = NULL"
        " FROM unnest(%s::bigint[], %s::bigint[]) AS v(k, n) WHERE b.block_key = v.k",
        (keys, values),
    )
    conn.execute(
        "INSERT INTO tenant_refs (block_key, tenant_id, refs)"
        " SELECT v.k, %s, v.n FROM unnest(%s::bigint[], %s::bigint[]) AS v(k, n)"
        " ON CONFLICT (block_key, tenant_id) DO UPDATE SET refs = tenant_refs.refs + EXCLUDED.refs",
        (tenant_id, keys, values),
    )


def drop_references(conn: Connection, counts: dict[int, int], tenant_id: str, now: float) -> None:
    """Decrement the refcounts of blocks (by key) of a checkpoint of ``tenant_id``; a
    block left with none is dead from ``now``. Keys whose row is gone are passed over."""
    if not counts:
        return
    keys = sorted(key for key in counts if key > 0)
    hold_keys(conn, keys)
    values = [counts[key] for key in keys]
    conn.execute(
        "UPDATE blocks b SET refcount = b.refcount - v.n,"
        " dead_since = CASE WHEN b.refcount - v.n <= 0 THEN %s ELSE NULL END"
        " FROM unnest(%s::bigint[], %s::bigint[]) AS v(k, n) WHERE b.block_key = v.k",
        (now, keys, values),
    )
    # the tenant's rows that reach 0 go, the others count down
    staged = "unnest(%s::bigint[], %s::bigint[]) AS v(k, n)"
    conn.execute(
        f"DELETE FROM tenant_refs t USING {staged}"
        " WHERE t.block_key = v.k AND t.tenant_id = %s AND t.refs <= v.n",
        (keys, values, tenant_id),
    )
    conn.execute(
        f"UPDATE tenant_refs t SET refs = t.refs - v.n FROM {staged}"
        " WHERE t.block_key = v.k AND t.tenant_id = %s",
        (keys, values, tenant_id),
    )
