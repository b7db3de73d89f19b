"""Rebases in PostgreSQL: pending rebases, and blocks re-pointed at re-encoded entries."""

from __future__ import annotations

from ckptstore.store.catalog.base import Rebases
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.blocks import hold_blocks
from ckptstore.store.catalog.postgres.database import (
    Connection,
    PostgresDatabase,
    plain_index_scans,
    retried,
)
from ckptstore.store.catalog.postgres.pages import keys_of_ids
from ckptstore.store.catalog.postgres.rows import block_columns
from ckptstore.store.catalog.records import BlockRecord

# A block moved to its new entry (pack and bases by key) if it is still where and as
# the old record says, and its new base (if any) is whole.
_REPOINT = (
    "UPDATE blocks SET pack_key = %s, pack_offset = %s, header_len = %s,"
    " stored_len = %s, codec = %s, base_key = %s"
    " WHERE block_id = %s AND pack_key = %s AND pack_offset = %s"
    " AND base_key IS NOT DISTINCT FROM %s AND (%s::bigint IS NULL OR EXISTS"
    " (SELECT 1 FROM blocks y WHERE y.block_key = %s AND y.base_key IS NULL))"
)


class PostgresRebases(PostgresDatabase, Rebases):
    def pending_rebases(self) -> list[tuple[str, str]]:
        found = self._all("SELECT checkpoint_id, parent_id FROM rebases ORDER BY seq")
        return [(row[0], row[1]) for row in found]

    @retried
    def finish_rebase(self, checkpoint_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM rebases WHERE checkpoint_id = %s", (checkpoint_id,))

    @retried
    def claim_rebase(
        self, owner: str, until: float, now: float, checkpoint_id: str | None = None
    ) -> tuple[str, str] | None:
        which = "checkpoint_id = %s" if checkpoint_id else "TRUE"
        params: tuple[object, ...] = (checkpoint_id,) if checkpoint_id else ()
        with self._write() as conn:
            # SKIP LOCKED: a row another process is claiming right now is passed over
            row = conn.execute(
                "UPDATE rebases SET claimed_by = %s, claimed_until = %s WHERE seq = ("
                f" SELECT seq FROM rebases WHERE {which}"
                " AND (claimed_until IS NULL OR claimed_until < %s)"
                " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING checkpoint_id, parent_id",
                (owner, until, *params, now),
            ).fetchone()
            return None if row is None else (row[0], row[1])

    @retried
    def reencode_blocks(
        self,
        pack_id: str,
        size: int,
        moves: list[tuple[BlockRecord, BlockRecord]],
        now: float,
        owner: str | None = None,
        max_height: int | None = None,
    ) -> set[bytes]:
        applied: set[bytes] = set()
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (%s, %s, %s)"
                " RETURNING pack_key",
                (pack_id, size, now),
            ).fetchone()
            assert row is not None
            new_pack = row[0]
            # Every block moved and every new base is locked first: a rebase in another
            # process that would hang a delta below one of them, or make one a delta,
            # waits for this one and then sees what it did, so the checks below (the
            # base is whole; the height below a block) cannot both pass on stale views.
            bases = [new.base_id for _, new in moves if new.base_id is not None]
            hold_blocks(conn, [old.block_id for old, _ in moves] + bases, "NO KEY UPDATE")
            old_bases = [old.base_id for old, _ in moves if old.base_id is not None]
            keys = keys_of_ids(conn, [old.block_id for old, _ in moves] + bases + old_bases)
            packs = _pack_keys(conn, {old.pack_id for old, _ in moves})
            for old, new in moves:
                old_base = None if old.base_id is None else keys.get(old.base_id)
                new_base = None if new.base_id is None else keys.get(new.base_id)
                if (
                    old.block_id not in keys
                    or old.pack_id not in packs
                    or (old.base_id is not None and old_base is None)
                    or (new.base_id is not None and new_base is None)
                ):
                    continue  # gone, or stored otherwise: not as ``old`` says
                if (
                    max_height is not None
                    and new_base is not None
                    and _height(conn, keys[old.block_id], max_height) >= max_height
                ):
                    continue
                changed = conn.execute(
                    _REPOINT,
                    (
                        new_pack,
                        new.offset,
                        new.header_len,
                        new.stored_len,
                        new.codec,
                        new_base,
                        old.block_id,
                        packs[old.pack_id],
                        old.offset,
                        old_base,
                        new_base,
                        new_base,
                    ),
                ).rowcount
                if changed:
                    applied.add(old.block_id)
            if not applied:
                conn.execute("DELETE FROM packs WHERE pack_id = %s", (pack_id,))
            elif owner is not None:
                saved = sum(
                    old.stored_len - new.stored_len for old, new in moves if old.block_id in applied
                )
                conn.execute(
                    "UPDATE checkpoints SET stored_bytes = GREATEST(0, stored_bytes - %s)"
                    " WHERE checkpoint_id = %s",
                    (saved, owner),
                )
        return applied

    def orphaned_deltas(self, dead_before: float) -> list[BlockRecord]:
        with self._read() as conn:
            plain_index_scans(conn)
            # the dead bases first (unreferenced_since), then the deltas on them (blocks_base):
            # each an index scan whatever the planner's estimates
            bases = conn.execute(
                "SELECT u.block_key FROM unreferenced_blocks u WHERE u.dead_since <= %s"
                " AND NOT EXISTS (SELECT 1 FROM blocks y JOIN leases l"
                "  ON l.block_id = y.block_id WHERE y.block_key = u.block_key)",
                (dead_before,),
            ).fetchall()
            if not bases:
                return []
            found = conn.execute(
                f"SELECT {block_columns('x')} FROM block_rows x WHERE x.base_key = ANY(%s)"
                " AND (EXISTS (SELECT 1 FROM tenant_refs t WHERE t.block_key = x.block_key)"
                " OR EXISTS (SELECT 1 FROM leases l WHERE l.block_id = x.block_id))",
                ([row[0] for row in bases],),
            ).fetchall()
        return [rows.block(row) for row in found]


def _pack_keys(conn: Connection, pack_ids: set[str]) -> dict[str, int]:
    found = conn.execute(
        "SELECT pack_id, pack_key FROM packs WHERE pack_id = ANY(%s)", (sorted(pack_ids),)
    ).fetchall()
    return {row[0]: row[1] for row in found}


def _height(conn: Connection, block_key: int, limit: int) -> int:
    """How many deltas deep blocks hang below ``block_key`` (``limit``: at least that)."""
    row = conn.execute(
        "WITH RECURSIVE below(block_key, depth) AS ("
        " SELECT block_key, 1 FROM blocks WHERE base_key = %s"
        " UNION ALL SELECT b.block_key, below.depth + 1 FROM blocks b"
        " JOIN below ON b.base_key = below.block_key WHERE below.depth < %s)"
        " SELECT COALESCE(MAX(depth), 0) FROM below",
        (block_key, limit),
    ).fetchone()
    height: int = row[0] if row else 0
    return height
