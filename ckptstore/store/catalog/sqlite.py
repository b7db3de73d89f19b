"""SQLiteCatalog: blocks, packs, leases and checkpoints in one SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterator

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointPinned,
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
from ckptstore.store.catalog.schema import SCHEMA_VERSION
from ckptstore.store.catalog.sqlite_db import batches
from ckptstore.store.catalog.sqlite_records import ServiceRecords
from ckptstore.store.packs.format import ENTRY

__all__ = ["SCHEMA_VERSION", "SQLiteCatalog"]

_FIELD_COLUMNS = {"createdAt": "created_at", "epoch": "epoch", "step": "step"}
_BLOCK_COLUMNS = "block_id, pack_id, pack_offset, stored_len, raw_len, codec, base_id"
_CHECKPOINT_FIELDS = (
    "checkpoint_id",
    "job_id",
    "type",
    "name",
    "description",
    "epoch",
    "step",
    "metrics",
    "status",
    "size_bytes",
    "stored_bytes",
    "created_at",
    "parent_id",
    "tenant_id",
)
_CHECKPOINT_COLUMNS = ", ".join(_CHECKPOINT_FIELDS)
_CHECKPOINT_MARKS = ", ".join("?" * len(_CHECKPOINT_FIELDS))


def _block(row: tuple) -> BlockRecord:
    return BlockRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def _checkpoint(row: tuple) -> CheckpointRecord:
    fields = dict(zip(_CHECKPOINT_FIELDS, row, strict=True))
    fields["metrics"] = json.loads(fields["metrics"])
    return CheckpointRecord(**fields)


def _checkpoint_values(record: CheckpointRecord) -> tuple:
    return tuple(
        json.dumps(record.metrics) if name == "metrics" else getattr(record, name)
        for name in _CHECKPOINT_FIELDS
    )


def metric_path(key: str) -> str:
    """The JSON path of a metric key (keys are validated before they get here)."""
    return '$."' + key.replace('"', "") + '"'


class SQLiteCatalog(ServiceRecords, Catalog):
    """The catalog in one SQLite file."""

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
        query = "SELECT block_id FROM blocks WHERE block_id IN ({marks})"
        return self._lease_found(query, (), block_ids, lease_holder, expires_at)

    def leased_to(self, lease_holder: str, block_ids: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        with self._read() as conn:
            for batch in batches(list(set(block_ids))):
                marks = ",".join("?" * len(batch))
                rows = conn.execute(
                    f"SELECT block_id FROM leases WHERE holder = ? AND block_id IN ({marks})",
                    [lease_holder, *batch],
                ).fetchall()
                found.update(row[0] for row in rows)
        return found

    def renew_leases(self, lease_holder: str, expires_at: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE holder = ?", (expires_at, lease_holder)
            )

    def release_leases(self, lease_holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE holder = ?", (lease_holder,))

    def commit_checkpoint(
        self,
        record: CheckpointRecord,
        manifest: list[tuple[int, bytes]],
        lease_holder: str,
        slots: list[str | None] | None = None,
    ) -> str | None:
        if slots is not None and len(slots) != len(manifest):
            raise ValueError(f"{len(slots)} slots for {len(manifest)} manifest entries")
        counts = Counter(block for _, block in manifest)
        with self._write() as conn:
            self._add_references(conn, counts)
            existing = self._checkpoint_row(conn, record.checkpoint_id)
            if existing is None:
                self._ensure_job(conn, record.tenant_id, record.job_id, record.created_at)
                conn.execute(
                    f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES ({_CHECKPOINT_MARKS})",
                    _checkpoint_values(record),
                )
            elif existing.status == "pending" and existing.tenant_id == record.tenant_id:
                assignments = ", ".join(f"{name} = ?" for name in _CHECKPOINT_FIELDS[1:])
                conn.execute(
                    f"UPDATE checkpoints SET {assignments} WHERE checkpoint_id = ?",
                    (*_checkpoint_values(record)[1:], record.checkpoint_id),
                )
            else:
                raise CheckpointExists(record.checkpoint_id)  # rolls back the references
            slot_of = slots or [None] * len(manifest)
            conn.executemany(
                "INSERT INTO manifests (checkpoint_id, seq, block_id, logical_offset, slot)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (record.checkpoint_id, seq, block, offset, slot)
                    for seq, ((offset, block), slot) in enumerate(
                        zip(manifest, slot_of, strict=True)
                    )
                ],
            )
            conn.execute("DELETE FROM leases WHERE holder = ?", (lease_holder,))
            if not any(slot is not None for slot in slot_of):
                return None
            parent = conn.execute(
                "SELECT checkpoint_id FROM checkpoints"
                " WHERE tenant_id = ? AND job_id = ? AND status = 'ready' AND checkpoint_id != ?"
                " AND parent_id IS NULL"  # a best copy comes and goes; its source stays
                " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (record.tenant_id, record.job_id, record.checkpoint_id),
            ).fetchone()
            if parent is None:
                return None
            conn.execute(
                "INSERT INTO rebases (checkpoint_id, parent_id) VALUES (?, ?)",
                (record.checkpoint_id, parent[0]),
            )
            return parent[0]

    def create_checkpoint(self, record: CheckpointRecord) -> None:
        with self._write() as conn:
            if self._checkpoint_row(conn, record.checkpoint_id) is not None:
                raise CheckpointExists(record.checkpoint_id)
            self._ensure_job(conn, record.tenant_id, record.job_id, record.created_at)
            conn.execute(
                f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES ({_CHECKPOINT_MARKS})",
                _checkpoint_values(record),
            )

    def replace_best(self, record: CheckpointRecord, old_best_id: str | None) -> None:
        with self._write() as conn:
            if self._checkpoint_row(conn, record.checkpoint_id) is not None:
                raise CheckpointExists(record.checkpoint_id)
            self._add_references(conn, self._reference_counts(conn, record.parent_id))
            conn.execute(
                f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES ({_CHECKPOINT_MARKS})",
                _checkpoint_values(record),
            )
            conn.execute(
                "INSERT INTO manifests (checkpoint_id, seq, block_id, logical_offset, slot)"
                " SELECT ?, seq, block_id, logical_offset, slot FROM manifests"
                " WHERE checkpoint_id = ?",
                (record.checkpoint_id, record.parent_id),
            )
            if old_best_id is not None:
                self._delete(conn, old_best_id, record.created_at)

    def _add_references(self, conn: sqlite3.Connection, counts: dict[bytes, int]) -> None:
        """Increment refcounts; MissingBlockError (rolling back) if any block is gone."""
        if not counts:
            return
        cur = conn.executemany(
            "UPDATE blocks SET refcount = refcount + ?, dead_since = NULL WHERE block_id = ?",
            [(n, block) for block, n in counts.items()],
        )
        if cur.rowcount != len(counts):
            raise MissingBlockError([b.hex() for b in counts if not self._has_block(conn, b)])

    @staticmethod
    def _reference_counts(conn: sqlite3.Connection, checkpoint_id: str | None) -> dict[bytes, int]:
        rows = conn.execute(
            "SELECT block_id, COUNT(*) FROM manifests WHERE checkpoint_id = ? GROUP BY block_id",
            (checkpoint_id,),
        ).fetchall()
        return dict(rows)

    @staticmethod
    def _ensure_job(conn: sqlite3.Connection, tenant_id: str, job_id: str, now: float) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO jobs (tenant_id, job_id, created_at) VALUES (?, ?, ?)",
            (tenant_id, job_id, now),
        )

    @staticmethod
    def _checkpoint_row(conn: sqlite3.Connection, checkpoint_id: str) -> CheckpointRecord | None:
        row = conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE checkpoint_id = ?",
            (checkpoint_id,),
        ).fetchone()
        return _checkpoint(row) if row else None

    def lease_visible(
        self, block_ids: list[bytes], tenant_id: str, lease_holder: str, expires_at: float
    ) -> set[bytes]:
        query = (
            "SELECT DISTINCT m.block_id FROM manifests m"
            " JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            " WHERE m.block_id IN ({marks}) AND c.tenant_id = ?"
        )
        return self._lease_found(query, (tenant_id,), block_ids, lease_holder, expires_at)

    def _lease_found(
        self,
        query: str,
        extra: tuple[object, ...],
        block_ids: list[bytes],
        lease_holder: str,
        expires_at: float,
    ) -> set[bytes]:
        """Lease the blocks ``query`` finds among ``block_ids``, each found and leased in
        one transaction. A read looks first: new data finds nothing, and then takes no
        write lock, which a pack writer committing on another thread may hold."""

        def find(conn: sqlite3.Connection, ids: list[bytes]) -> Iterator[list[bytes]]:
            for batch in batches(ids):
                sql = query.format(marks=",".join("?" * len(batch)))
                yield [row[0] for row in conn.execute(sql, [*batch, *extra]).fetchall()]

        with self._read() as conn:
            candidates = [block for rows in find(conn, list(set(block_ids))) for block in rows]
        found: set[bytes] = set()
        if not candidates:
            return found
        with self._write() as conn:  # GC may have taken some since
            for rows in find(conn, candidates):
                conn.executemany(
                    "INSERT OR REPLACE INTO leases (block_id, holder, expires_at) VALUES (?, ?, ?)",
                    [(block, lease_holder, expires_at) for block in rows],
                )
                found.update(rows)
        return found

    @staticmethod
    def _has_block(conn: sqlite3.Connection, block_id: bytes) -> bool:
        row = conn.execute("SELECT 1 FROM blocks WHERE block_id = ?", (block_id,)).fetchone()
        return row is not None

    # -- read path -----------------------------------------------------------
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        record = self._checkpoint_row(self._conn(), checkpoint_id)
        if record is None:
            raise CheckpointNotFound(checkpoint_id)
        return record

    def list_checkpoints(self, query: ListQuery) -> tuple[list[CheckpointRecord], int]:
        direction = "DESC" if query.descending else "ASC"
        params: list[object] = []
        if query.sort_by == "createdAt":  # never NULL: the index gives this order directly
            order = f"created_at {direction}, rowid {direction}"
        else:
            if query.sort_by in _FIELD_COLUMNS:
                key = _FIELD_COLUMNS[query.sort_by]
            else:
                key = "json_extract(metrics, ?)"
                params = [metric_path(query.sort_by)] * 2
            order = f"({key}) IS NULL, ({key}) {direction}, created_at DESC, rowid DESC"
        limit = -1 if query.limit is None else query.limit
        where = "WHERE tenant_id = ? AND job_id = ?"
        filters: list[object] = [query.tenant_id, query.job_id]
        if query.types is not None and len(query.types) == 1:
            where += " AND type = ?"  # lets the (tenant, job, type, created_at) index serve it
            filters += query.types
        elif query.types is not None:
            where += f" AND type IN ({','.join('?' * len(query.types))})"
            filters += query.types
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints {where} ORDER BY {order} LIMIT ?",
                [*filters, *params, limit],
            ).fetchall()
            total = conn.execute(f"SELECT COUNT(*) FROM checkpoints {where}", filters).fetchone()[0]
        return [_checkpoint(row) for row in rows], total

    def job_totals(self, tenant_id: str, job_id: str) -> tuple[int, int]:
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM checkpoints"
                " WHERE tenant_id = ? AND job_id = ?",
                (tenant_id, job_id),
            )
            .fetchone()
        )
        return row[0], row[1]

    def tenant_totals(self, tenant_id: str) -> tuple[int, int, int]:
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0), COALESCE(SUM(stored_bytes), 0)"
                " FROM checkpoints WHERE tenant_id = ?",
                (tenant_id,),
            )
            .fetchone()
        )
        return row[0], row[1], row[2]

    def job_extremes(
        self, tenant_id: str, job_id: str
    ) -> tuple[CheckpointRecord | None, CheckpointRecord | None]:
        newest = "ORDER BY created_at DESC, rowid DESC LIMIT 1"
        where = "WHERE tenant_id = ? AND job_id = ?"
        with self._read() as conn:
            best = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints {where} AND type = 'best' {newest}",
                (tenant_id, job_id),
            ).fetchone()
            latest = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints {where} {newest}",
                (tenant_id, job_id),
            ).fetchone()
        return (_checkpoint(best) if best else None, _checkpoint(latest) if latest else None)

    def metric_keys(self, tenant_id: str, job_id: str) -> list[str]:
        rows = (
            self._conn()
            .execute(
                "SELECT DISTINCT m.key FROM checkpoints c, json_each(c.metrics) m"
                " WHERE c.tenant_id = ? AND c.job_id = ? ORDER BY m.key",
                (tenant_id, job_id),
            )
            .fetchall()
        )
        return [row[0] for row in rows]

    def list_jobs(self, tenant_id: str) -> list[str]:
        rows = (
            self._conn()
            .execute("SELECT job_id FROM jobs WHERE tenant_id = ? ORDER BY job_id", (tenant_id,))
            .fetchall()
        )
        return [row[0] for row in rows]

    def slots(self, checkpoint_id: str) -> dict[str, BlockRecord]:
        with self._read() as conn:
            if self._checkpoint_row(conn, checkpoint_id) is None:
                raise CheckpointNotFound(checkpoint_id)
            rows = conn.execute(
                f"SELECT m.slot, {', '.join('b.' + c for c in _BLOCK_COLUMNS.split(', '))}"
                " FROM manifests m JOIN blocks b ON b.block_id = m.block_id"
                " WHERE m.checkpoint_id = ? AND m.slot IS NOT NULL",
                (checkpoint_id,),
            ).fetchall()
        return {row[0]: _block(row[1:]) for row in rows}

    def pending_rebases(self) -> list[tuple[str, str]]:
        rows = (
            self._conn()
            .execute("SELECT checkpoint_id, parent_id FROM rebases ORDER BY rowid")
            .fetchall()
        )
        return [(row[0], row[1]) for row in rows]

    def finish_rebase(self, checkpoint_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM rebases WHERE checkpoint_id = ?", (checkpoint_id,))

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
        return {r.block_id: r for r in self._blocks_where("block_id IN ({})", block_ids)}

    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("block_id IN ({}) AND refcount = 0", block_ids)

    def _blocks_where(self, condition: str, block_ids: list[bytes]) -> list[BlockRecord]:
        """The block rows matching ``condition``, whose ``{}`` stands for the ids (distinct),
        asked for in batches."""
        out: list[BlockRecord] = []
        with self._read() as conn:
            for batch in batches(list(set(block_ids))):
                where = condition.format(",".join("?" * len(batch)))
                rows = conn.execute(f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE {where}", batch)
                out += [_block(row) for row in rows.fetchall()]
        return out

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
            return self._delete(conn, checkpoint_id, now)

    def _delete(self, conn: sqlite3.Connection, checkpoint_id: str, now: float) -> CheckpointRecord:
        record = self._checkpoint_row(conn, checkpoint_id)
        if record is None:
            raise CheckpointNotFound(checkpoint_id)
        pins = conn.execute(
            "SELECT endpoint_id FROM endpoints WHERE checkpoint_id = ? ORDER BY endpoint_id",
            (checkpoint_id,),
        ).fetchall()
        if pins:
            raise CheckpointPinned(checkpoint_id, [row[0] for row in pins])
        counts = self._reference_counts(conn, checkpoint_id)
        conn.executemany(
            "UPDATE blocks SET refcount = refcount - ?1,"
            " dead_since = CASE WHEN refcount - ?1 <= 0 THEN ?2 ELSE NULL END"
            " WHERE block_id = ?3",
            [(n, now, block) for block, n in counts.items()],
        )
        conn.execute("DELETE FROM manifests WHERE checkpoint_id = ?", (checkpoint_id,))
        conn.execute("DELETE FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,))
        conn.execute(
            "DELETE FROM rebases WHERE checkpoint_id = ? OR parent_id = ?",
            (checkpoint_id, checkpoint_id),
        )
        return record

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

    def pack_usage(self, pack_ids: Collection[str] | None = None) -> list[PackUsage]:
        query = (
            "SELECT p.pack_id, p.size, p.created_at,"
            f" COALESCE(SUM(b.stored_len), 0) + COUNT(b.block_id) * {ENTRY.size}"
            " FROM packs p LEFT JOIN blocks b ON b.pack_id = p.pack_id {}"
            " GROUP BY p.pack_id ORDER BY p.pack_id"
        )
        with self._read() as conn:
            if pack_ids is None:
                rows = conn.execute(query.format("")).fetchall()
            else:
                rows = []
                for batch in batches(sorted(set(pack_ids))):
                    where = "WHERE p.pack_id IN ({})".format(",".join("?" * len(batch)))
                    rows += conn.execute(query.format(where), batch).fetchall()
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

    # -- reverse deltas ------------------------------------------------------
    def orphaned_deltas(self, dead_before: float) -> list[BlockRecord]:
        columns = ", ".join("x." + c for c in _BLOCK_COLUMNS.split(", "))
        rows = (
            self._conn()
            .execute(
                f"SELECT {columns} FROM blocks x JOIN blocks y ON y.block_id = x.base_id"
                " WHERE y.refcount = 0 AND y.dead_since <= ?"
                " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.block_id = y.block_id)"
                " AND (x.refcount > 0"
                " OR EXISTS (SELECT 1 FROM leases l WHERE l.block_id = x.block_id))",
                (dead_before,),
            )
            .fetchall()
        )
        return [_block(row) for row in rows]

    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("base_id IN ({})", block_ids)

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
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (?, ?, ?)",
                (pack_id, size, now),
            )
            for old, new in moves:
                if (
                    max_height is not None
                    and new.base_id is not None
                    and _height(conn, old.block_id, max_height) >= max_height
                ):
                    continue
                changed = conn.execute(
                    "UPDATE blocks SET pack_id = ?, pack_offset = ?, stored_len = ?, codec = ?,"
                    " base_id = ? WHERE block_id = ? AND pack_id = ? AND pack_offset = ?"
                    " AND base_id IS ? AND (? IS NULL OR EXISTS"
                    " (SELECT 1 FROM blocks y WHERE y.block_id = ? AND y.base_id IS NULL))",
                    (
                        new.pack_id,
                        new.offset,
                        new.stored_len,
                        new.codec,
                        new.base_id,
                        old.block_id,
                        old.pack_id,
                        old.offset,
                        old.base_id,
                        new.base_id,
                        new.base_id,
                    ),
                ).rowcount
                if changed:
                    applied.add(old.block_id)
            if not applied:
                conn.execute("DELETE FROM packs WHERE pack_id = ?", (pack_id,))
            elif owner is not None:
                saved = sum(
                    old.stored_len - new.stored_len for old, new in moves if old.block_id in applied
                )
                conn.execute(
                    "UPDATE checkpoints SET stored_bytes = MAX(0, stored_bytes - ?)"
                    " WHERE checkpoint_id = ?",
                    (saved, owner),
                )
        return applied

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

    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        rows = (
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
        return [(row[0], row[1], row[2], row[3]) for row in rows]

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
            (pending,) = conn.execute("SELECT COUNT(*) FROM rebases").fetchone()
        return CatalogStats(checkpoints, logical, blocks, unique_raw, stored, packs, pending)

    def maintenance(self) -> None:
        conn = self._conn()
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        all_pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if free_pages > 64 and free_pages * 4 > all_pages:
            conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _height(conn: sqlite3.Connection, block_id: bytes, limit: int) -> int:
    """How many deltas deep blocks hang below ``block_id`` (``limit``: at least that)."""
    row = conn.execute(
        "WITH RECURSIVE below(block_id, depth) AS ("
        " SELECT block_id, 1 FROM blocks WHERE base_id = ?"
        " UNION ALL SELECT b.block_id, below.depth + 1 FROM blocks b"
        " JOIN below ON b.base_id = below.block_id WHERE below.depth < ?)"
        " SELECT COALESCE(MAX(depth), 0) FROM below",
        (block_id, limit),
    ).fetchone()
    return row[0]
