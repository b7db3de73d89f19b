"""References in PostgreSQL: the increments of a commit and the decrements of a delete,
by block key and tenant (schema 7).

A block is referenced while it has a ``tenant_refs`` row (its count of references by
one tenant's manifests); one with none is in ``unreferenced_blocks``, since when. Block
rows are locked, never written: a commit holds its blocks in share mode (commits do
not wait on each other; a GC deleting one waits, then finds it referenced), a delete
holds its blocks exclusively, so that a commit and a delete of one block take turns
and each sees what the other did."""

from __future__ import annotations

from ckptstore.errors import MissingBlockError
from ckptstore.store.catalog.postgres.database import Connection

_STAGED = "unnest(%s::bigint[], %s::bigint[]) AS v(k, n)"


def hold_keys(conn: Connection, keys: list[int], mode: str) -> set[int]:
    """Lock the rows of those of ``keys`` (distinct, sorted) present, in key order (two
    transactions never wait on each other in a cycle); the keys found."""
    found = conn.execute(
        f"SELECT block_key FROM blocks WHERE block_key = ANY(%s) ORDER BY block_key FOR {mode}",
        (keys,),
    ).fetchall()
    return {row[0] for row in found}


def add_references(
    conn: Connection, counts: dict[int, int], tenant_id: str, ids: dict[int, bytes]
) -> None:
    """Count references to blocks (by key) from a checkpoint of ``tenant_id``;
    MissingBlockError (rolling back) if any block's row is gone, naming its id
    (``ids``: the id of each key, as read before the transaction)."""
    if not counts:
        return
    keys = sorted(counts)
    found = hold_keys(conn, keys, "SHARE")
    if len(found) != len(keys):
        raise MissingBlockError([ids[key].hex() for key in keys if key not in found])
    conn.execute(
        "INSERT INTO tenant_refs (block_key, tenant_id, refs)"
        f" SELECT v.k, %s, v.n FROM {_STAGED}"
        " ON CONFLICT (block_key, tenant_id) DO UPDATE SET refs = tenant_refs.refs + EXCLUDED.refs",
        (tenant_id, keys, [counts[key] for key in keys]),
    )
    conn.execute("DELETE FROM unreferenced_blocks WHERE block_key = ANY(%s)", (keys,))


def drop_references(conn: Connection, counts: dict[int, int], tenant_id: str, now: float) -> None:
    """Take away references to blocks (by key) of a checkpoint of ``tenant_id``; a block
    left with none is unreferenced from ``now``. Keys whose row is gone are passed over."""
    keys = sorted(key for key in counts if key > 0)
    if not keys:
        return
    hold_keys(conn, keys, "NO KEY UPDATE")
    values = [counts[key] for key in keys]
    # The tenant's rows that reach 0 go, and their blocks are unreferenced unless
    # another tenant's row remains (the statement sees the rows as they were before
    # it: the tenant's own row is left out).
    conn.execute(
        "WITH gone AS ("
        f" DELETE FROM tenant_refs t USING {_STAGED}"
        " WHERE t.block_key = v.k AND t.tenant_id = %s AND t.refs <= v.n RETURNING t.block_key)"
        " INSERT INTO unreferenced_blocks (block_key, dead_since) SELECT g.block_key, %s"
        " FROM gone g WHERE NOT EXISTS (SELECT 1 FROM tenant_refs o"
        "  WHERE o.block_key = g.block_key AND o.tenant_id != %s)"
        " ORDER BY g.block_key ON CONFLICT (block_key) DO NOTHING",
        (keys, values, tenant_id, now, tenant_id),
    )
    conn.execute(
        f"UPDATE tenant_refs t SET refs = t.refs - v.n FROM {_STAGED}"
        " WHERE t.block_key = v.k AND t.tenant_id = %s",
        (keys, values, tenant_id),
    )
