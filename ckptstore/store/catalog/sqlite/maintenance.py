"""Maintenance in SQLite: GC's removals and moves, verify's queries, stats, VACUUM."""

from __future__ import annotations

from collections.abc import Collection

from ckptstore.store.catalog.base import Maintenance
from ckptstore.store.catalog.records import UNKNOWN_WIDTH, BlockRecord, CatalogStats, PackUsage
from ckptstore.store.catalog.sqlite import rows
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase, batches
from ckptstore.store.catalog.sqlite.rows import BLOCK_COLUMNS

# Dead block rows removed per write transaction: large removals hold the write lock in
# short turns (bench/scale.py measures the longest).
REMOVAL_BATCH = 5_000


class SQLiteMaintenance(SQLiteDatabase, Maintenance):
    # -- GC --------------------------------------------------------------------
    def remove_dead_blocks(self, now: float, grace_s: float) -> list[BlockRecord]:
        removed: list[BlockRecord] = []
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
        while True:  # removing a delta can make its base dead too
            # a batch per transaction: writers wait for one batch, never for the whole GC
            with self._write() as conn:
                found = conn.execute(
                    f"SELECT {BLOCK_COLUMNS} FROM blocks b"
                    " WHERE b.refcount = 0 AND b.dead_since <= ?"
                    " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.block_id = b.block_id)"
                    " AND NOT EXISTS (SELECT 1 FROM blocks d WHERE d.base_id = b.block_id)"
                    " LIMIT ?",
                    (now - grace_s, REMOVAL_BATCH),
                ).fetchall()
                if not found:
                    return removed
                conn.executemany(
                    "DELETE FROM blocks WHERE block_id = ?", sorted((r[0],) for r in found)
                )
            removed.extend(rows.block(row) for row in found)

    def pack_usage(self, pack_ids: Collection[str] | None = None) -> list[PackUsage]:
        # live_bytes is kept by the blocks_live_* triggers (schema 9): one row per pack
        query = "SELECT pack_id, size, created_at, live_bytes FROM packs {} ORDER BY pack_id"
        with self._read() as conn:
            if pack_ids is None:
                found = conn.execute(query.format("")).fetchall()
            else:
                found = []
                for batch in batches(sorted(set(pack_ids))):
                    where = "WHERE pack_id IN ({})".format(",".join("?" * len(batch)))
                    found += conn.execute(query.format(where), batch).fetchall()
        return [PackUsage(pack_id=r[0], size=r[1], created_at=r[2], live_bytes=r[3]) for r in found]

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
                "INSERT INTO packs (pack_id, size, created_at) VALUES (?, ?, ?)",
                (new_pack_id, new_size, now),
            )
            conn.executemany(
                "UPDATE blocks SET pack_id = ?, pack_offset = ?, header_len = ?"
                " WHERE block_id = ? AND pack_id = ?",
                [(new_pack_id, b.offset, b.header_len, b.block_id, old_pack_id) for b in moved],
            )
            left = conn.execute(
                "SELECT COUNT(*) FROM blocks WHERE pack_id = ?", (old_pack_id,)
            ).fetchone()[0]
            if left:
                raise RuntimeError(f"{left} block(s) of pack {old_pack_id} were not relocated")
            conn.execute("DELETE FROM packs WHERE pack_id = ?", (old_pack_id,))

    def relocate_packs(
        self, moves: dict[str, list[BlockRecord]], new_pack_id: str, new_size: int, now: float
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (?, ?, ?)",
                (new_pack_id, new_size, now),
            )
            for old_pack_id, moved in moves.items():
                conn.executemany(
                    "UPDATE blocks SET pack_id = ?, pack_offset = ?, header_len = ?"
                    " WHERE block_id = ? AND pack_id = ?",
                    [(new_pack_id, b.offset, b.header_len, b.block_id, old_pack_id) for b in moved],
                )
                left = conn.execute(
                    "SELECT COUNT(*) FROM blocks WHERE pack_id = ?", (old_pack_id,)
                ).fetchone()[0]
                if left:
                    raise RuntimeError(f"{left} block(s) of pack {old_pack_id} were not relocated")
                conn.execute("DELETE FROM packs WHERE pack_id = ?", (old_pack_id,))

    def remove_pack(self, pack_id: str) -> bool:
        with self._write() as conn:
            return (
                conn.execute(
                    "DELETE FROM packs WHERE pack_id = ?"
                    " AND NOT EXISTS (SELECT 1 FROM blocks WHERE pack_id = ?)",
                    (pack_id, pack_id),
                ).rowcount
                > 0
            )

    # -- verify ----------------------------------------------------------------
    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        found = (
            self._conn()
            .execute(
                "SELECT DISTINCT c.checkpoint_id, x.block_id FROM ("
                " SELECT m.checkpoint_id, m.block_id FROM manifests m WHERE NOT EXISTS"
                "  (SELECT 1 FROM blocks b WHERE b.block_id = m.block_id)) x"
                " JOIN checkpoints c"  # the manifest's owner and the best copies reading it
                " ON c.checkpoint_id = x.checkpoint_id OR c.manifest_of = x.checkpoint_id"
                " ORDER BY c.checkpoint_id, x.block_id"
            )
            .fetchall()
        )
        return [(row[0], row[1]) for row in found]

    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        found = (
            self._conn()
            .execute(
                "SELECT checkpoint_id, block_id, logical_offset, span FROM ("
                " SELECT m.checkpoint_id, m.block_id, m.logical_offset, b.raw_len,"
                "  COALESCE(LEAD(m.logical_offset) OVER ("
                "   PARTITION BY m.checkpoint_id ORDER BY m.seq), c.size_bytes)"
                "  - m.logical_offset AS span"
                " FROM manifests m JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
                " JOIN blocks b ON b.block_id = m.block_id WHERE c.status = 'ready')"
                " WHERE span != raw_len ORDER BY checkpoint_id, logical_offset"
            )
            .fetchall()
        )
        return [(row[0], row[1], row[2], row[3]) for row in found]

    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        result: dict[bytes, list[str]] = {}
        conn = self._conn()
        for block in block_ids:
            found = conn.execute(
                "WITH RECURSIVE dependents(id) AS (VALUES (?)"
                " UNION SELECT b.block_id FROM blocks b JOIN dependents d ON b.base_id = d.id)"
                " , owners(id) AS (SELECT DISTINCT checkpoint_id FROM manifests"
                "  WHERE block_id IN (SELECT id FROM dependents))"
                " SELECT id FROM owners UNION SELECT checkpoint_id FROM checkpoints"
                " WHERE manifest_of IN (SELECT id FROM owners) ORDER BY 1",
                (block,),
            ).fetchall()
            result[block] = [row[0] for row in found]
        return result

    def stats(self) -> CatalogStats:
        with self._read() as conn:
            checkpoints, logical = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM checkpoints"
            ).fetchone()
            blocks, unique_raw = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(raw_len), 0) FROM blocks"
            ).fetchone()
            packs, stored = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM packs"
            ).fetchone()
            (pending,) = conn.execute("SELECT COUNT(*) FROM rebases").fetchone()
        return CatalogStats(checkpoints, logical, blocks, unique_raw, stored, packs, pending)

    # -- rows from before schema 4 ----------------------------------------------
    def unknown_widths(self, after: bytes, limit: int) -> list[BlockRecord]:
        found = (
            self._conn()
            .execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE block_id > ? AND width = ?"
                " ORDER BY block_id LIMIT ?",
                (after, UNKNOWN_WIDTH, limit),
            )
            .fetchall()
        )
        return [rows.block(row) for row in found]

    def record_widths(self, widths: dict[bytes, int | None]) -> None:
        with self._write() as conn:
            conn.executemany(
                "UPDATE blocks SET width = ? WHERE block_id = ? AND width = ?",
                [(width, block, UNKNOWN_WIDTH) for block, width in widths.items()],
            )

    def maintenance(self) -> None:
        conn = self._conn()
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        all_pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if free_pages > 64 and free_pages * 4 > all_pages:
            conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
