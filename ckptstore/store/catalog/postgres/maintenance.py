"""Maintenance in PostgreSQL: GC's removals and moves, verify's queries, stats."""

from __future__ import annotations

from collections.abc import Collection

from ckptstore.store.catalog.base import Maintenance
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.database import (
    PostgresDatabase,
    plain_index_scans,
    retried,
)
from ckptstore.store.catalog.postgres.rows import BLOCK_COLUMNS
from ckptstore.store.catalog.records import UNKNOWN_WIDTH, BlockRecord, CatalogStats, PackUsage

# A dead block: no references for the grace period, no lease, no delta on it. Checked
# once to pick the rows to lock, and again once they are locked (a statement that
# starts after the locks sees every lease and delta committed before them).
_DEAD = (
    "b.refcount = 0 AND b.dead_since <= %s"
    " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.block_id = b.block_id)"
    " AND NOT EXISTS (SELECT 1 FROM blocks d WHERE d.base_id = b.block_id)"
)

# Dead block rows removed per transaction: large removals lock rows in short turns.
REMOVAL_BATCH = 5_000


class PostgresMaintenance(PostgresDatabase, Maintenance):
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
            # SKIP LOCKED: a block some transaction holds is being leased or
            # referenced, so it is not dead; GC does not wait for it (nor can it
            # deadlock on it).
            candidates = conn.execute(
                f"SELECT b.block_id FROM blocks b WHERE {_DEAD} LIMIT %s FOR UPDATE SKIP LOCKED",
                (cutoff, REMOVAL_BATCH),
            ).fetchall()
            if not candidates:
                return []
            found = conn.execute(
                f"DELETE FROM blocks b WHERE b.block_id = ANY(%s) AND {_DEAD}"
                f" RETURNING {rows.block_columns('b')}",
                ([row[0] for row in candidates], cutoff),
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
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (%s, %s, %s)",
                (new_pack_id, new_size, now),
            )
            ordered = sorted(moved, key=lambda b: b.block_id)
            conn.execute(
                "UPDATE blocks b SET pack_id = %s, pack_offset = v.off, header_len = v.hl"
                " FROM unnest(%s::bytea[], %s::bigint[], %s::int[]) AS v(id, off, hl)"
                " WHERE b.block_id = v.id AND b.pack_id = %s",
                (
                    new_pack_id,
                    [b.block_id for b in ordered],
                    [b.offset for b in ordered],
                    [b.header_len for b in ordered],
                    old_pack_id,
                ),
            )
            left = conn.execute(
                "SELECT COUNT(*) FROM blocks WHERE pack_id = %s", (old_pack_id,)
            ).fetchone()
            if left and left[0]:
                raise RuntimeError(f"{left[0]} block(s) of pack {old_pack_id} were not relocated")
            conn.execute("DELETE FROM packs WHERE pack_id = %s", (old_pack_id,))

    @retried
    def relocate_packs(
        self, moves: dict[str, list[BlockRecord]], new_pack_id: str, new_size: int, now: float
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (%s, %s, %s)",
                (new_pack_id, new_size, now),
            )
            for old_pack_id in sorted(moves):  # row locks in one order: no deadlock
                ordered = sorted(moves[old_pack_id], key=lambda b: b.block_id)
                conn.execute(
                    "UPDATE blocks b SET pack_id = %s, pack_offset = v.off, header_len = v.hl"
                    " FROM unnest(%s::bytea[], %s::bigint[], %s::int[]) AS v(id, off, hl)"
                    " WHERE b.block_id = v.id AND b.pack_id = %s",
                    (
                        new_pack_id,
                        [b.block_id for b in ordered],
                        [b.offset for b in ordered],
                        [b.header_len for b in ordered],
                        old_pack_id,
                    ),
                )
                left = conn.execute(
                    "SELECT COUNT(*) FROM blocks WHERE pack_id = %s", (old_pack_id,)
                ).fetchone()
                if left and left[0]:
                    raise RuntimeError(
                        f"{left[0]} block(s) of pack {old_pack_id} were not relocated"
                    )
                conn.execute("DELETE FROM packs WHERE pack_id = %s", (old_pack_id,))

    @retried
    def remove_pack(self, pack_id: str) -> bool:
        with self._write() as conn:
            # the pack row is locked first: a block moved into it meanwhile is seen
            conn.execute("SELECT 1 FROM packs WHERE pack_id = %s FOR UPDATE", (pack_id,))
            deleted = conn.execute(
                "DELETE FROM packs WHERE pack_id = %s"
                " AND NOT EXISTS (SELECT 1 FROM blocks WHERE pack_id = %s)",
                (pack_id, pack_id),
            ).rowcount
            return deleted > 0

    # -- verify ----------------------------------------------------------------
    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        found = self._all(
            "SELECT DISTINCT c.checkpoint_id, x.block_id FROM ("
            " SELECT m.checkpoint_id, m.block_id FROM manifests m WHERE NOT EXISTS"
            "  (SELECT 1 FROM blocks b WHERE b.block_id = m.block_id)) AS x"
            " JOIN checkpoints c"  # the manifest's owner and the best copies reading it
            " ON c.checkpoint_id = x.checkpoint_id OR c.manifest_of = x.checkpoint_id"
            " ORDER BY c.checkpoint_id, x.block_id"
        )
        return [(row[0], row[1]) for row in found]

    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        found = self._all(
            "SELECT checkpoint_id, block_id, logical_offset, span FROM ("
            " SELECT m.checkpoint_id, m.block_id, m.logical_offset, b.raw_len,"
            "  COALESCE(LEAD(m.logical_offset) OVER ("
            "   PARTITION BY m.checkpoint_id ORDER BY m.seq), c.size_bytes)"
            "  - m.logical_offset AS span"
            " FROM manifests m JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            " JOIN blocks b ON b.block_id = m.block_id WHERE c.status = 'ready') AS entries"
            " WHERE span != raw_len ORDER BY checkpoint_id, logical_offset"
        )
        return [(row[0], row[1], row[2], row[3]) for row in found]

    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        result: dict[bytes, list[str]] = {block: [] for block in block_ids}
        found = self._all(
            "WITH RECURSIVE dependents(root, id) AS ("
            " SELECT r, r FROM unnest(%s::bytea[]) AS r"
            " UNION SELECT d.root, b.block_id FROM blocks b JOIN dependents d ON b.base_id = d.id)"
            " , owners(root, id) AS (SELECT DISTINCT d.root, m.checkpoint_id"
            "  FROM dependents d JOIN manifests m ON m.block_id = d.id)"
            " SELECT root, id FROM owners UNION SELECT o.root, c.checkpoint_id"
            " FROM owners o JOIN checkpoints c ON c.manifest_of = o.id ORDER BY 1, 2",
            (list(set(block_ids)),),
        )
        for root, checkpoint_id in found:
            result[root].append(checkpoint_id)
        return result

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
            f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE block_id > %s AND width = %s"
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
