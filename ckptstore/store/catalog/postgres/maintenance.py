"""Maintenance in PostgreSQL: GC's removals and moves, verify's queries, stats."""

from __future__ import annotations

from collections.abc import Collection

from ckptstore.store.catalog.base import Maintenance
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.database import (
    Connection,
    PostgresDatabase,
    plain_index_scans,
    retried,
)
from ckptstore.store.catalog.postgres.references import hold_keys
from ckptstore.store.catalog.postgres.rows import BLOCK_COLUMNS
from ckptstore.store.catalog.postgres.verify import ManifestChecks
from ckptstore.store.catalog.records import UNKNOWN_WIDTH, BlockRecord, CatalogStats, PackUsage

# A dead block (``u``, its unreferenced_blocks row): no references for the grace
# period, no lease, no delta on it. Checked once to pick the rows to lock, and again
# once they are locked (a statement that starts after the locks sees every reference,
# lease and delta committed before them). Every other table is reached from ``u``'s
# row, so that the scan runs along unreferenced_since whatever the statistics say.
_DEAD = (
    "u.dead_since <= %s"
    " AND NOT EXISTS (SELECT 1 FROM tenant_refs t WHERE t.block_key = u.block_key)"
    " AND NOT EXISTS (SELECT 1 FROM blocks y JOIN leases l ON l.block_id = y.block_id"
    "  WHERE y.block_key = u.block_key)"
    " AND NOT EXISTS (SELECT 1 FROM blocks d WHERE d.base_key = u.block_key)"
)

# A removed row's columns, as BLOCK_COLUMNS (its pack and base by id)
_REMOVED = (
    "b.block_id, p.pack_id, b.pack_offset, b.stored_len, b.raw_len, b.codec,"
    " COALESCE((SELECT y.block_id FROM blocks y WHERE y.block_key = b.base_key),"
    "  (SELECT l.block_id FROM lost_blocks l WHERE l.block_key = b.base_key)),"
    " b.header_len, b.width"
)

# The blocks of ``moves`` (ids, new offsets and header lengths) still in the old pack
# (a key) moved to the new one (a key).
_MOVE = (
    "UPDATE blocks b SET pack_key = %s, pack_offset = v.off, header_len = v.hl"
    " FROM unnest(%s::bytea[], %s::bigint[], %s::int[]) AS v(id, off, hl)"
    " WHERE b.block_id = v.id AND b.pack_key = %s"
)

# Dead block rows removed per transaction: large removals lock rows in short turns.
REMOVAL_BATCH = 5_000


def _new_pack(conn: Connection, pack_id: str, size: int, now: float) -> int:
    """Record a pack; its key."""
    row = conn.execute(
        "INSERT INTO packs (pack_id, size, created_at) VALUES (%s, %s, %s) RETURNING pack_key",
        (pack_id, size, now),
    ).fetchone()
    assert row is not None
    key: int = row[0]
    return key


def _move_out(conn: Connection, old_pack_id: str, new_key: int, moved: list[BlockRecord]) -> int:
    """Point ``moved`` (the blocks as they are in the new pack) at pack ``new_key`` where
    they are still in ``old_pack_id``; how many blocks the old pack is left with."""
    row = conn.execute("SELECT pack_key FROM packs WHERE pack_id = %s", (old_pack_id,)).fetchone()
    if row is None:
        return 0
    ordered = sorted(moved, key=lambda b: b.block_id)
    conn.execute(
        _MOVE,
        (
            new_key,
            [b.block_id for b in ordered],
            [b.offset for b in ordered],
            [b.header_len for b in ordered],
            row[0],
        ),
    )
    left = conn.execute("SELECT COUNT(*) FROM blocks WHERE pack_key = %s", (row[0],)).fetchone()
    return int(left[0]) if left else 0


class PostgresMaintenance(ManifestChecks, PostgresDatabase, Maintenance):
    # -- GC --------------------------------------------------------------------
    def remove_dead_blocks(self, now: float, grace_s: float) -> list[BlockRecord]:
        self._expire_leases(now)
        removed: list[BlockRecord] = []
        while True:  # removing a delta can make its base dead too
            batch = self._remove_dead_batch(now - grace_s)
            if not batch:
                return removed
            removed.extend(batch)

    @retried
    def _expire_leases(self, now: float) -> None:
        with self._write() as conn:
            plain_index_scans(conn)
            conn.execute("DELETE FROM leases WHERE expires_at <= %s", (now,))

    @retried
    def _remove_dead_batch(self, cutoff: float) -> list[BlockRecord]:
        """Remove up to REMOVAL_BATCH dead blocks in one transaction (rows locked, and
        the packs they leave, for one batch only); those removed."""
        with self._write() as conn:
            plain_index_scans(conn)
            candidates = conn.execute(
                f"SELECT u.block_key FROM unreferenced_blocks u WHERE {_DEAD} LIMIT %s",
                (cutoff, REMOVAL_BATCH),
            ).fetchall()
            # SKIP LOCKED: a block some transaction holds is being leased or
            # referenced, so it is not dead; GC does not wait for it (nor can it
            # deadlock on it).
            locked = hold_keys(conn, sorted(row[0] for row in candidates), "UPDATE SKIP LOCKED")
            if not locked:
                return []
            # (the delete trigger drops their unreferenced_blocks rows)
            found = conn.execute(
                "DELETE FROM blocks b USING packs p, unreferenced_blocks u"
                " WHERE p.pack_key = b.pack_key AND u.block_key = b.block_key"
                f" AND b.block_key = ANY(%s) AND {_DEAD} RETURNING {_REMOVED}",
                (sorted(locked), cutoff),
            ).fetchall()
            return [rows.block(row) for row in found]

    def pack_usage(self, pack_ids: Collection[str] | None = None) -> list[PackUsage]:
        # live_bytes is kept by the blocks_live_* triggers (schema 4): one row per pack
        query = "SELECT pack_id, size, created_at, live_bytes FROM packs {} ORDER BY pack_id"
        if pack_ids is None:
            found = self._all(query.format(""))
        else:
            found = self._all(query.format("WHERE pack_id = ANY(%s)"), (sorted(set(pack_ids)),))
        return [PackUsage(pack_id=r[0], size=r[1], created_at=r[2], live_bytes=r[3]) for r in found]

    @retried
    def relocate_blocks(
        self,
        old_pack_id: str,
        new_pack_id: str,
        new_size: int,
        moved: list[BlockRecord],
        now: float,
    ) -> None:
        with self._write() as conn:
            left = _move_out(conn, old_pack_id, _new_pack(conn, new_pack_id, new_size, now), moved)
            if left:
                raise RuntimeError(f"{left} block(s) of pack {old_pack_id} were not relocated")
            conn.execute("DELETE FROM packs WHERE pack_id = %s", (old_pack_id,))

    @retried
    def relocate_packs(
        self, moves: dict[str, list[BlockRecord]], new_pack_id: str, new_size: int, now: float
    ) -> None:
        with self._write() as conn:
            new_key = _new_pack(conn, new_pack_id, new_size, now)
            for old_pack_id in sorted(moves):  # row locks in one order: no deadlock
                left = _move_out(conn, old_pack_id, new_key, moves[old_pack_id])
                if left:
                    raise RuntimeError(f"{left} block(s) of pack {old_pack_id} were not relocated")
                conn.execute("DELETE FROM packs WHERE pack_id = %s", (old_pack_id,))

    @retried
    def remove_pack(self, pack_id: str) -> bool:
        with self._write() as conn:
            # the pack row is locked first: a block moved into it meanwhile is seen
            conn.execute("SELECT 1 FROM packs WHERE pack_id = %s FOR UPDATE", (pack_id,))
            deleted = conn.execute(
                "DELETE FROM packs p WHERE p.pack_id = %s"
                " AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.pack_key = p.pack_key)",
                (pack_id,),
            ).rowcount
            return deleted > 0

    def stats(self) -> CatalogStats:
        with self._read() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM checkpoints),"
                " (SELECT COALESCE(SUM(size_bytes), 0)::bigint FROM checkpoints),"
                " (SELECT COUNT(*) FROM blocks),"
                " (SELECT COALESCE(SUM(raw_len), 0)::bigint FROM blocks),"
                " (SELECT COUNT(*) FROM packs),"
                " (SELECT COALESCE(SUM(size), 0)::bigint FROM packs),"
                " (SELECT COUNT(*) FROM rebases)"
            ).fetchone()
        assert row is not None
        checkpoints, logical, blocks, unique_raw, packs, stored, pending = row
        return CatalogStats(checkpoints, logical, blocks, unique_raw, stored, packs, pending)

    # -- rows from before schema 4 of the SQLite catalog -------------------------
    def unknown_widths(self, after: bytes, limit: int) -> list[BlockRecord]:
        found = self._all(
            f"SELECT {BLOCK_COLUMNS} FROM block_rows WHERE block_id > %s AND width = %s"
            " ORDER BY block_id LIMIT %s",
            (after, UNKNOWN_WIDTH, limit),
        )
        return [rows.block(row) for row in found]

    @retried
    def record_widths(self, widths: dict[bytes, int | None]) -> None:
        ids = sorted(widths)
        with self._write() as conn:
            conn.execute(
                "UPDATE blocks b SET width = v.w"
                " FROM unnest(%s::bytea[], %s::int[]) AS v(id, w)"
                " WHERE b.block_id = v.id AND b.width = %s",
                (ids, [widths[b] for b in ids], UNKNOWN_WIDTH),
            )

    def maintenance(self) -> None:
        """Nothing to do: autovacuum gives deleted rows' space back."""
