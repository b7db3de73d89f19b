"""Maintenance in SQLite: GC's removals and moves, verify's queries, stats, VACUUM."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from ckptstore.store.catalog.base import Maintenance
from ckptstore.store.catalog.records import UNKNOWN_WIDTH, BlockRecord, CatalogStats, PackUsage
from ckptstore.store.catalog.sqlite import manifests, rows
from ckptstore.store.catalog.sqlite.blocks import insert_pack, pack_key
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
                    f"SELECT {BLOCK_COLUMNS}, block_key FROM block_rows b"
                    " WHERE b.refcount = 0 AND b.dead_since <= ?"
                    " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.block_id = b.block_id)"
                    " AND NOT EXISTS (SELECT 1 FROM blocks d WHERE d.base_key = b.block_key)"
                    " LIMIT ?",
                    (now - grace_s, REMOVAL_BATCH),
                ).fetchall()
                if not found:
                    return removed
                conn.executemany(
                    "DELETE FROM blocks WHERE block_key = ?", sorted((r[-1],) for r in found)
                )
            removed.extend(rows.block(row[:-1]) for row in found)

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
            new_key = insert_pack(conn, new_pack_id, new_size, now)
            _move_from(conn, old_pack_id, new_key, moved)

    def relocate_packs(
        self, moves: dict[str, list[BlockRecord]], new_pack_id: str, new_size: int, now: float
    ) -> None:
        with self._write() as conn:
            new_key = insert_pack(conn, new_pack_id, new_size, now)
            for old_pack_id, moved in moves.items():
                _move_from(conn, old_pack_id, new_key, moved)

    def remove_pack(self, pack_id: str) -> bool:
        with self._write() as conn:
            return (
                conn.execute(
                    "DELETE FROM packs WHERE pack_id = ?"
                    " AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.pack_key = packs.pack_key)",
                    (pack_id,),
                ).rowcount
                > 0
            )

    # -- verify ----------------------------------------------------------------
    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        found: set[tuple[str, bytes]] = set()
        with self._read() as conn:
            for manifest_key, page in manifests.all_pages(conn):
                gone = set(page.keys) - manifests.existing_keys(conn, page.keys)
                if not gone:
                    continue
                ids = manifests.lost_ids(conn, gone).values()
                found.update(
                    (owner, block) for owner in _readers(conn, manifest_key) for block in ids
                )
        return sorted(found)

    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        gaps: list[tuple[str, bytes, int, int]] = []
        with self._read() as conn:
            sizes: dict[str, int] = dict(
                conn.execute(
                    "SELECT checkpoint_id, size_bytes FROM checkpoints WHERE status = 'ready'"
                ).fetchall()
            )
            # each entry's span is known at the next entry, or at its manifest's end
            held: tuple[str, int, BlockRecord | None] | None = None
            for manifest_key, page in manifests.all_pages(conn):
                if manifest_key not in sizes:
                    continue
                found = manifests.blocks_by_key(conn, page.keys)
                for key, offset in zip(page.keys, page.offsets, strict=True):
                    if held is not None:
                        end = offset if held[0] == manifest_key else sizes[held[0]]
                        _check_span(gaps, held, end)
                    held = (manifest_key, offset, found.get(key))
            if held is not None:
                _check_span(gaps, held, sizes[held[0]])
        return sorted(gaps)

    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        # a scan of every manifest page: only verify asks, and only about damaged blocks
        with self._read() as conn:
            keys = manifests.block_keys(conn, block_ids)
            dependents = {block: _dependents(conn, key) for block, key in keys.items()}
            wanted = set().union(*dependents.values()) if dependents else set()
            users: dict[int, set[str]] = {}
            for manifest_key, page in manifests.all_pages(conn):
                for key in wanted.intersection(page.keys):
                    users.setdefault(key, set()).update(_readers(conn, manifest_key))
        result: dict[bytes, list[str]] = {}
        for block in block_ids:
            found: set[str] = set()
            for key in dependents.get(block, ()):
                found |= users.get(key, set())
            result[block] = sorted(found)
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
                f"SELECT {BLOCK_COLUMNS} FROM block_rows"
                f" WHERE width = {UNKNOWN_WIDTH} AND block_id > ? ORDER BY block_id LIMIT ?",
                (after, limit),
            )
            .fetchall()
        )
        return [rows.block(row) for row in found]

    def record_widths(self, widths: dict[bytes, int | None]) -> None:
        with self._write() as conn:
            conn.executemany(
                f"UPDATE blocks SET width = ? WHERE {rows.id_is()} AND width = {UNKNOWN_WIDTH}",
                [(width, *rows.id_values([block])) for block, width in widths.items()],
            )

    def maintenance(self) -> None:
        conn = self._conn()
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        all_pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if free_pages > 64 and free_pages * 4 > all_pages:
            conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _move_from(
    conn: sqlite3.Connection, old_pack_id: str, new_key: int, moved: list[BlockRecord]
) -> None:
    """Point ``moved`` (blocks of ``old_pack_id``, as they are in the new pack) at the new
    pack, then forget the old pack; RuntimeError if a block of it was left behind."""
    old_key = pack_key(conn, old_pack_id)
    # each row found by its id (``+``: the pack index, which SQLite would otherwise
    # pick, walks the old pack's rows for every block moved)
    conn.executemany(
        "UPDATE blocks SET pack_key = ?, pack_offset = ?, header_len = ?"
        f" WHERE {rows.id_is()} AND +pack_key = ?",
        [(new_key, b.offset, b.header_len, *rows.id_values([b.block_id]), old_key) for b in moved],
    )
    left = conn.execute("SELECT COUNT(*) FROM blocks WHERE pack_key = ?", (old_key,)).fetchone()[0]
    if left:
        raise RuntimeError(f"{left} block(s) of pack {old_pack_id} were not relocated")
    conn.execute("DELETE FROM packs WHERE pack_key = ?", (old_key,))


def _readers(conn: sqlite3.Connection, manifest_key: str) -> list[str]:
    """The checkpoints that read the manifest stored under ``manifest_key``: its owner
    and the best copies sharing it."""
    found = conn.execute(
        "SELECT checkpoint_id FROM checkpoints WHERE checkpoint_id = ? OR manifest_of = ?",
        (manifest_key, manifest_key),
    ).fetchall()
    return [row[0] for row in found]


def _dependents(conn: sqlite3.Connection, key: int) -> set[int]:
    """A block's key and the keys of every block stored as a delta on it, at any depth."""
    found = conn.execute(
        "WITH RECURSIVE dependents(k) AS (VALUES (?)"
        " UNION SELECT b.block_key FROM blocks b JOIN dependents d ON b.base_key = d.k)"
        " SELECT k FROM dependents",
        (key,),
    ).fetchall()
    return {row[0] for row in found}


def _check_span(
    gaps: list[tuple[str, bytes, int, int]], entry: tuple[str, int, BlockRecord | None], end: int
) -> None:
    """Add the entry to ``gaps`` if the bytes up to ``end`` are not its block's length."""
    manifest_key, offset, block = entry
    if block is not None and end - offset != block.raw_len:
        gaps.append((manifest_key, block.block_id, offset, end - offset))
