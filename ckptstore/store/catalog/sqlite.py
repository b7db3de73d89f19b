"""Catalog in SQLite: WAL mode, one connection per thread, busy timeout."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    FormatError,
    MissingBlockError,
)
from ckptstore.store.catalog.base import (
    BlockRecord,
    Catalog,
    CatalogStats,
    CheckpointRecord,
    ListQuery,
    PackUsage,
)
from ckptstore.store.packs import ENTRY

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
_BATCH = 500  # ids per IN (...) query, well under SQLite's variable limit

# MIGRATIONS[n] takes a catalog from schema version n-1 to n.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}')""",
        """CREATE TABLE checkpoints (
            checkpoint_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            epoch INTEGER,
            step INTEGER,
            metrics TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            stored_bytes INTEGER NOT NULL,
            created_at REAL NOT NULL,
            parent_id TEXT)""",
        "CREATE INDEX checkpoints_job ON checkpoints (job_id, created_at)",
        """CREATE TABLE packs (
            pack_id TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            created_at REAL NOT NULL)""",
        """CREATE TABLE blocks (
            block_id BLOB PRIMARY KEY,
            pack_id TEXT NOT NULL,
            pack_offset INTEGER NOT NULL,
            stored_len INTEGER NOT NULL,
            raw_len INTEGER NOT NULL,
            codec INTEGER NOT NULL,
            base_id BLOB,
            refcount INTEGER NOT NULL DEFAULT 0,
            dead_since REAL) WITHOUT ROWID""",
        "CREATE INDEX blocks_pack ON blocks (pack_id)",
        "CREATE INDEX blocks_base ON blocks (base_id) WHERE base_id IS NOT NULL",
        "CREATE INDEX blocks_dead ON blocks (dead_since) WHERE refcount = 0",
        """CREATE TABLE manifests (
            checkpoint_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            block_id BLOB NOT NULL,
            logical_offset INTEGER NOT NULL,
            PRIMARY KEY (checkpoint_id, seq)) WITHOUT ROWID""",
        "CREATE INDEX manifests_block ON manifests (block_id)",
        """CREATE TABLE leases (
            block_id BLOB NOT NULL,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (block_id, holder)) WITHOUT ROWID""",
        "CREATE INDEX leases_holder ON leases (holder)",
    ],
}

_FIELD_COLUMNS = {"createdAt": "created_at", "epoch": "epoch", "step": "step"}
_BLOCK_COLUMNS = "block_id, pack_id, pack_offset, stored_len, raw_len, codec, base_id"
_CHECKPOINT_COLUMNS = (
    "checkpoint_id, job_id, type, name, description, epoch, step, metrics, status,"
    " size_bytes, stored_bytes, created_at, parent_id"
)


def _block(row: tuple) -> BlockRecord:
    return BlockRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def _checkpoint(row: tuple) -> CheckpointRecord:
    return CheckpointRecord(
        checkpoint_id=row[0],
        job_id=row[1],
        type=row[2],
        name=row[3],
        description=row[4],
        epoch=row[5],
        step=row[6],
        metrics=json.loads(row[7]),
        status=row[8],
        size_bytes=row[9],
        stored_bytes=row[10],
        created_at=row[11],
        parent_id=row[12],
    )


def _batches(items: list, size: int = _BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def metric_path(key: str) -> str:
    """The JSON path of a metric key (keys are validated before they get here)."""
    return '$."' + key.replace('"', "") + '"'


class SQLiteCatalog(Catalog):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._migrate()

    # -- connections and transactions ----------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise FormatError(
                    f"catalog schema version {version}; this ckptstore knows up to {SCHEMA_VERSION}"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    def schema_version(self) -> int:
        return self._conn().execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- settings ------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting_if_absent(self, key: str, value: str) -> str:
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))
            return conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()[0]

    # -- write path ----------------------------------------------------------
    def add_pack(
        self,
        pack_id: str,
        size: int,
        blocks: list[BlockRecord],
        now: float,
        lease_holder: str,
        lease_expires_at: float,
    ) -> int:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (?, ?, ?)",
                (pack_id, size, now),
            )
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR IGNORE INTO blocks ({_BLOCK_COLUMNS}, refcount, dead_since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                [
                    (
                        b.block_id,
                        b.pack_id,
                        b.offset,
                        b.stored_len,
                        b.raw_len,
                        b.codec,
                        b.base_id,
                        now,
                    )
                    for b in blocks
                ],
            )
            added = conn.total_changes - before
            conn.executemany(
                "INSERT OR REPLACE INTO leases (block_id, holder, expires_at) VALUES (?, ?, ?)",
                [(b.block_id, lease_holder, lease_expires_at) for b in blocks],
            )
            return added

    def lease_existing(
        self, block_ids: list[bytes], lease_holder: str, expires_at: float
    ) -> set[bytes]:
        present: set[bytes] = set()
        if not block_ids:
            return present
        with self._write() as conn:
            for batch in _batches(list(set(block_ids))):
                marks = ",".join("?" * len(batch))
                rows = conn.execute(
                    f"SELECT block_id FROM blocks WHERE block_id IN ({marks})", batch
                ).fetchall()
                found = [row[0] for row in rows]
                conn.executemany(
                    "INSERT OR REPLACE INTO leases (block_id, holder, expires_at) VALUES (?, ?, ?)",
                    [(block, lease_holder, expires_at) for block in found],
                )
                present.update(found)
        return present

    def renew_leases(self, lease_holder: str, expires_at: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE holder = ?", (expires_at, lease_holder)
            )

    def release_leases(self, lease_holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE holder = ?", (lease_holder,))

    def commit_checkpoint(
        self, record: CheckpointRecord, manifest: list[tuple[int, bytes]], lease_holder: str
    ) -> None:
        counts = Counter(block for _, block in manifest)
        with self._write() as conn:
            cur = conn.executemany(
                "UPDATE blocks SET refcount = refcount + ?, dead_since = NULL WHERE block_id = ?",
                [(n, block) for block, n in counts.items()],
            )
            if cur.rowcount != len(counts):
                missing = [b.hex() for b in counts if not self._has_block(conn, b)]
                raise MissingBlockError(missing)  # rolls back the increments
            if conn.execute(
                "SELECT 1 FROM checkpoints WHERE checkpoint_id = ?", (record.checkpoint_id,)
            ).fetchone():
                raise CheckpointExists(record.checkpoint_id)
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, created_at) VALUES (?, ?)",
                (record.job_id, record.created_at),
            )
            conn.execute(
                f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.checkpoint_id,
                    record.job_id,
                    record.type,
                    record.name,
                    record.description,
                    record.epoch,
                    record.step,
                    json.dumps(record.metrics),
                    record.status,
                    record.size_bytes,
                    record.stored_bytes,
                    record.created_at,
                    record.parent_id,
                ),
            )
            conn.executemany(
                "INSERT INTO manifests (checkpoint_id, seq, block_id, logical_offset)"
                " VALUES (?, ?, ?, ?)",
                [
                    (record.checkpoint_id, seq, block, offset)
                    for seq, (offset, block) in enumerate(manifest)
                ],
            )
            conn.execute("DELETE FROM leases WHERE holder = ?", (lease_holder,))

    @staticmethod
    def _has_block(conn: sqlite3.Connection, block_id: bytes) -> bool:
        row = conn.execute("SELECT 1 FROM blocks WHERE block_id = ?", (block_id,)).fetchone()
        return row is not None

    # -- read path -----------------------------------------------------------
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        row = (
            self._conn()
            .execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE checkpoint_id = ?",
                (checkpoint_id,),
            )
            .fetchone()
        )
        if row is None:
            raise CheckpointNotFound(checkpoint_id)
        return _checkpoint(row)

    def list_checkpoints(self, query: ListQuery) -> tuple[list[CheckpointRecord], int]:
        direction = "DESC" if query.descending else "ASC"
        params: list[object] = []
        if query.sort_by in _FIELD_COLUMNS:
            key = _FIELD_COLUMNS[query.sort_by]
        else:
            key = "json_extract(metrics, ?)"
            params = [metric_path(query.sort_by)] * 2
        order = f"({key}) IS NULL, ({key}) {direction}, created_at DESC, checkpoint_id"
        limit = -1 if query.limit is None else query.limit
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE job_id = ?"
                f" ORDER BY {order} LIMIT ?",
                [query.job_id, *params, limit],
            ).fetchall()
            total = conn.execute(
                "SELECT COUNT(*) FROM checkpoints WHERE job_id = ?", (query.job_id,)
            ).fetchone()[0]
        return [_checkpoint(row) for row in rows], total

    def metric_keys(self, job_id: str) -> list[str]:
        rows = (
            self._conn()
            .execute(
                "SELECT DISTINCT m.key FROM checkpoints c, json_each(c.metrics) m"
                " WHERE c.job_id = ? ORDER BY m.key",
                (job_id,),
            )
            .fetchall()
        )
        return [row[0] for row in rows]

    def list_jobs(self) -> list[str]:
        rows = self._conn().execute("SELECT job_id FROM jobs ORDER BY job_id").fetchall()
        return [row[0] for row in rows]

    def manifest(self, checkpoint_id: str) -> list[tuple[int, BlockRecord]]:
        with self._read() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)
                ).fetchone()
                is None
            ):
                raise CheckpointNotFound(checkpoint_id)
            rows = conn.execute(
                "SELECT m.logical_offset, m.block_id, b.pack_id, b.pack_offset, b.stored_len,"
                " b.raw_len, b.codec, b.base_id"
                " FROM manifests m LEFT JOIN blocks b ON b.block_id = m.block_id"
                " WHERE m.checkpoint_id = ? ORDER BY m.seq",
                (checkpoint_id,),
            ).fetchall()
        missing = [row[1].hex() for row in rows if row[2] is None]
        if missing:
            raise MissingBlockError(missing)
        return [(row[0], _block(row[1:])) for row in rows]

    def get_block(self, block_id: bytes) -> BlockRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE block_id = ?", (block_id,))
            .fetchone()
        )
        return _block(row) if row else None

    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        found: dict[bytes, BlockRecord] = {}
        with self._read() as conn:
            for batch in _batches(list(set(block_ids))):
                marks = ",".join("?" * len(batch))
                rows = conn.execute(
                    f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE block_id IN ({marks})", batch
                ).fetchall()
                found.update((row[0], _block(row)) for row in rows)
        return found

    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE pack_id = ? ORDER BY pack_offset",
                (pack_id,),
            )
            .fetchall()
        )
        return [_block(row) for row in rows]

    # -- delete and GC -------------------------------------------------------
    def delete_checkpoint(self, checkpoint_id: str, now: float) -> CheckpointRecord:
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE checkpoint_id = ?",
                (checkpoint_id,),
            ).fetchone()
            if row is None:
                raise CheckpointNotFound(checkpoint_id)
            counts = conn.execute(
                "SELECT block_id, COUNT(*) FROM manifests"
                " WHERE checkpoint_id = ? GROUP BY block_id",
                (checkpoint_id,),
            ).fetchall()
            conn.executemany(
                "UPDATE blocks SET refcount = refcount - ?1,"
                " dead_since = CASE WHEN refcount - ?1 <= 0 THEN ?2 ELSE NULL END"
                " WHERE block_id = ?3",
                [(n, now, block) for block, n in counts],
            )
            conn.execute("DELETE FROM manifests WHERE checkpoint_id = ?", (checkpoint_id,))
            conn.execute("DELETE FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,))
        return _checkpoint(row)

    def remove_dead_blocks(self, now: float, grace_s: float) -> list[BlockRecord]:
        removed: list[BlockRecord] = []
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
            while True:  # removing a delta can make its base dead too
                rows = conn.execute(
                    f"SELECT {_BLOCK_COLUMNS} FROM blocks b"
                    " WHERE b.refcount = 0 AND b.dead_since <= ?"
                    " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.block_id = b.block_id)"
                    " AND NOT EXISTS (SELECT 1 FROM blocks d WHERE d.base_id = b.block_id)",
                    (now - grace_s,),
                ).fetchall()
                if not rows:
                    return removed
                conn.executemany("DELETE FROM blocks WHERE block_id = ?", [(r[0],) for r in rows])
                removed.extend(_block(row) for row in rows)

    def pack_usage(self) -> list[PackUsage]:
        rows = (
            self._conn()
            .execute(
                "SELECT p.pack_id, p.size, p.created_at,"
                f" COALESCE(SUM(b.stored_len), 0) + COUNT(b.block_id) * {ENTRY.size}"
                " FROM packs p LEFT JOIN blocks b ON b.pack_id = p.pack_id"
                " GROUP BY p.pack_id ORDER BY p.pack_id"
            )
            .fetchall()
        )
        return [PackUsage(pack_id=r[0], size=r[1], created_at=r[2], live_bytes=r[3]) for r in rows]

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
                "UPDATE blocks SET pack_id = ?, pack_offset = ? WHERE block_id = ? AND pack_id = ?",
                [(new_pack_id, b.offset, b.block_id, old_pack_id) for b in moved],
            )
            left = conn.execute(
                "SELECT COUNT(*) FROM blocks WHERE pack_id = ?", (old_pack_id,)
            ).fetchone()[0]
            if left:
                raise RuntimeError(f"{left} block(s) of pack {old_pack_id} were not relocated")
            conn.execute("DELETE FROM packs WHERE pack_id = ?", (old_pack_id,))

    def remove_pack(self, pack_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM packs WHERE pack_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM blocks WHERE pack_id = ?)",
                (pack_id, pack_id),
            )

    # -- verify and stats ----------------------------------------------------
    def iter_blocks(self) -> Iterator[BlockRecord]:
        rows = (
            self._conn()
            .execute(f"SELECT {_BLOCK_COLUMNS} FROM blocks ORDER BY pack_id, pack_offset")
            .fetchall()
        )
        return (_block(row) for row in rows)

    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        rows = (
            self._conn()
            .execute(
                "SELECT DISTINCT m.checkpoint_id, m.block_id FROM manifests m"
                " WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE b.block_id = m.block_id)"
                " ORDER BY m.checkpoint_id"
            )
            .fetchall()
        )
        return [(row[0], row[1]) for row in rows]

    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        result: dict[bytes, list[str]] = {}
        conn = self._conn()
        for block in block_ids:
            rows = conn.execute(
                "WITH RECURSIVE dependents(id) AS (VALUES (?)"
                " UNION SELECT b.block_id FROM blocks b JOIN dependents d ON b.base_id = d.id)"
                " SELECT DISTINCT checkpoint_id FROM manifests"
                " WHERE block_id IN (SELECT id FROM dependents) ORDER BY checkpoint_id",
                (block,),
            ).fetchall()
            result[block] = [row[0] for row in rows]
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
        return CatalogStats(checkpoints, logical, blocks, unique_raw, stored, packs)

    def maintenance(self) -> None:
        conn = self._conn()
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        all_pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if free_pages > 64 and free_pages * 4 > all_pages:
            conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
