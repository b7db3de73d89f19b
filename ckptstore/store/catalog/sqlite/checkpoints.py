"""Checkpoints in SQLite: checkpoints, manifests, slots, jobs and their settings."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointPinned,
    MissingBlockError,
)
from ckptstore.store.catalog import cursors
from ckptstore.store.catalog.base import Checkpoints, ParentRule
from ckptstore.store.catalog.records import (
    BlockRecord,
    CheckpointRecord,
    FileRecord,
    JobListing,
    ListQuery,
)
from ckptstore.store.catalog.sqlite import manifests, rows
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase
from ckptstore.store.catalog.sqlite.files import copy_files, delete_files, insert_files
from ckptstore.store.catalog.sqlite.rows import (
    CHECKPOINT_COLUMNS,
    CHECKPOINT_FIELDS,
    CHECKPOINT_MARKS,
    Row,
)

_FIELD_COLUMNS = {"createdAt": "created_at", "epoch": "epoch", "step": "step"}
_NEWEST = "ORDER BY created_at DESC, rowid DESC"
_CANDIDATE_PAGE = 16  # the parent of a rebase is nearly always the first candidate


class SQLiteCheckpoints(SQLiteDatabase, Checkpoints):
    # -- write -----------------------------------------------------------------
    def create_checkpoint(self, record: CheckpointRecord) -> None:
        with self._write() as conn:
            if rows.checkpoint_row(conn, record.checkpoint_id) is not None:
                raise CheckpointExists(record.checkpoint_id)
            _ensure_job(conn, record.tenant_id, record.job_id, record.created_at)
            conn.execute(
                f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ({CHECKPOINT_MARKS})",
                rows.checkpoint_values(record),
            )

    def commit_checkpoint(
        self,
        record: CheckpointRecord,
        manifest: list[tuple[int, bytes]],
        lease_holder: str,
        slots: list[str | None] | None = None,
        rebase_parent: ParentRule | None = None,
        *,
        fills_pending: bool = False,
        files: list[FileRecord] | None = None,
    ) -> str | None:
        if slots is not None and len(slots) != len(manifest):
            raise ValueError(f"{len(slots)} slots for {len(manifest)} manifest entries")
        # keys are read before the write lock: a block's key never changes while its row
        # lives, and the write below checks that every row is still there
        with self._read() as conn:
            keys = manifests.block_keys(conn, (block for _, block in manifest))
        missing = sorted({block.hex() for _, block in manifest if block not in keys})
        if missing:
            raise MissingBlockError(missing)
        entry_keys = [keys[block] for _, block in manifest]
        pages = manifests.encode_manifest(
            entry_keys, [offset for offset, _ in manifest], slots or [None] * len(manifest)
        )
        counts = Counter(entry_keys)
        with self._write() as conn:
            ids = {key: block for block, key in keys.items()}
            manifests.add_references(conn, record.tenant_id, counts, ids)
            existing = rows.checkpoint_row(conn, record.checkpoint_id)
            if existing is None and fills_pending:
                raise CheckpointNotFound(record.checkpoint_id)  # rolls back the references
            if existing is None:
                _ensure_job(conn, record.tenant_id, record.job_id, record.created_at)
                conn.execute(
                    f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ({CHECKPOINT_MARKS})",
                    rows.checkpoint_values(record),
                )
            elif existing.status == "pending" and existing.tenant_id == record.tenant_id:
                assignments = ", ".join(f"{name} = ?" for name in CHECKPOINT_FIELDS[1:])
                conn.execute(
                    f"UPDATE checkpoints SET {assignments} WHERE checkpoint_id = ?",
                    (*rows.checkpoint_values(record)[1:], record.checkpoint_id),
                )
            else:
                raise CheckpointExists(record.checkpoint_id)  # rolls back the references
            manifests.write_pages(conn, record.checkpoint_id, pages)
            insert_files(conn, record.checkpoint_id, files or [])
            conn.execute("DELETE FROM leases WHERE holder = ?", (lease_holder,))
            parent = None if rebase_parent is None else rebase_parent(_others(conn, record))
            if parent is not None:
                conn.execute(
                    "INSERT INTO rebases (checkpoint_id, parent_id) VALUES (?, ?)",
                    (record.checkpoint_id, parent),
                )
            return parent

    def replace_best(self, record: CheckpointRecord, old_best_id: str | None) -> None:
        with self._write() as conn:
            if rows.checkpoint_row(conn, record.checkpoint_id) is not None:
                raise CheckpointExists(record.checkpoint_id)
            if record.parent_id is None:
                raise ValueError("a best copy names the checkpoint it copies (parent_id)")
            source = _manifest_key(conn, record.parent_id)
            conn.execute(
                f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ({CHECKPOINT_MARKS})",
                rows.checkpoint_values(record),
            )
            conn.execute(
                "UPDATE checkpoints SET manifest_of = ? WHERE checkpoint_id = ?",
                (source, record.checkpoint_id),
            )
            copy_files(conn, record.checkpoint_id, record.parent_id)
            if old_best_id is not None:
                _delete(conn, old_best_id, record.created_at)

    def delete_checkpoint(self, checkpoint_id: str, now: float) -> CheckpointRecord:
        with self._write() as conn:
            return _delete(conn, checkpoint_id, now)

    def pending_since(self, created_before: float) -> list[CheckpointRecord]:
        found = self._conn().execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints"
            " WHERE status = 'pending' AND created_at < ? ORDER BY created_at",
            (created_before,),
        )
        return [rows.checkpoint(row) for row in found.fetchall()]

    # -- read ------------------------------------------------------------------
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        record = rows.checkpoint_row(self._conn(), checkpoint_id)
        if record is None:
            raise CheckpointNotFound(checkpoint_id)
        return record

    def list_checkpoints(self, query: ListQuery) -> tuple[list[CheckpointRecord], int, str | None]:
        with self._read() as conn:
            found = _page_rows(conn, query)
            total = _count(conn, query)
        page, next_cursor = _page(found, query)
        return page, total, next_cursor

    def job_listing(self, query: ListQuery) -> JobListing:
        with self._read() as conn:  # one snapshot
            found = _page_rows(conn, query)
            best, latest = _extremes(conn, query.tenant_id, query.job_id)
            matching, count, size = _totals(conn, query)
        page, next_cursor = _page(found, query)
        return JobListing(page, matching, next_cursor, best, latest, count, size)

    def manifest(self, checkpoint_id: str) -> list[tuple[int, BlockRecord]]:
        with self._read() as conn:
            entries = manifests.read_manifest(conn, _manifest_key(conn, checkpoint_id))
            found = manifests.blocks_by_key(conn, entries.keys)
            gone = [key for key in entries.keys if key not in found]
            if gone:
                lost = manifests.lost_ids(conn, gone)
                raise MissingBlockError(list(dict.fromkeys(lost[key].hex() for key in gone)))
        return [
            (offset, found[key]) for key, offset in zip(entries.keys, entries.offsets, strict=True)
        ]

    def slots(self, checkpoint_id: str) -> dict[str, BlockRecord]:
        with self._read() as conn:
            entries = manifests.read_manifest(conn, _manifest_key(conn, checkpoint_id))
            slotted = [(s, k) for s, k in zip(entries.slots, entries.keys, strict=True) if s]
            found = manifests.blocks_by_key(conn, (key for _, key in slotted))
        return {slot: found[key] for slot, key in slotted if key in found}

    def job_totals(self, tenant_id: str, job_id: str) -> tuple[int, int]:
        # job_counts holds both per type, kept by the checkpoints_count_* triggers
        row = (
            self._conn()
            .execute(
                "SELECT COALESCE(SUM(checkpoints), 0), COALESCE(SUM(size_bytes), 0)"
                " FROM job_counts WHERE tenant_id = ? AND job_id = ?",
                (tenant_id, job_id),
            )
            .fetchone()
        )
        return row[0], row[1]

    def job_extremes(
        self, tenant_id: str, job_id: str
    ) -> tuple[CheckpointRecord | None, CheckpointRecord | None]:
        with self._read() as conn:
            return _extremes(conn, tenant_id, job_id)

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

    def metric_keys(self, tenant_id: str, job_id: str) -> list[str]:
        found = (
            self._conn()
            .execute(
                "SELECT DISTINCT m.key FROM checkpoints c, json_each(c.metrics) m"
                " WHERE c.tenant_id = ? AND c.job_id = ? ORDER BY m.key",
                (tenant_id, job_id),
            )
            .fetchall()
        )
        return [row[0] for row in found]

    def list_jobs(self, tenant_id: str) -> list[str]:
        found = (
            self._conn()
            .execute("SELECT job_id FROM jobs WHERE tenant_id = ? ORDER BY job_id", (tenant_id,))
            .fetchall()
        )
        return [row[0] for row in found]

    # -- job settings ----------------------------------------------------------
    def job_settings(self, tenant_id: str, job_id: str) -> dict[str, object]:
        row = (
            self._conn()
            .execute(
                "SELECT settings FROM jobs WHERE tenant_id = ? AND job_id = ?", (tenant_id, job_id)
            )
            .fetchone()
        )
        return json.loads(row[0]) if row else {}

    def set_job_settings(
        self, tenant_id: str, job_id: str, settings: dict[str, object], now: float
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (tenant_id, job_id, created_at, settings) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, job_id) DO UPDATE SET settings = excluded.settings",
                (tenant_id, job_id, now, json.dumps(settings)),
            )


def _job_filter(query: ListQuery, table: str) -> tuple[str, list[object]]:
    """The condition naming the query's job (and types) on ``table``'s columns."""
    where = f"{table}tenant_id = ? AND {table}job_id = ?"
    filters: list[object] = [query.tenant_id, query.job_id]
    if query.types is not None:
        # one type: the (tenant, job, type, created_at) index can serve it
        where += f" AND {table}type IN ({','.join('?' * len(query.types))})"
        filters += query.types
    return where, filters


def _limit(query: ListQuery) -> int:
    return -1 if query.limit is None else query.limit + 1  # one more: is there a next?


def _list_by_column(conn: sqlite3.Connection, query: ListQuery) -> list[Row]:
    """A page sorted by creation time, epoch or step: rows of (rowid, checkpoint...)."""
    direction = "DESC" if query.descending else "ASC"
    key: str | None = None
    if query.sort_by == "createdAt":  # never NULL: the index gives this order directly
        order = f"created_at {direction}, rowid {direction}"
    else:
        key = _FIELD_COLUMNS[query.sort_by]
        order = f"({key}) IS NULL, ({key}) {direction}, created_at DESC, rowid DESC"
    where, filters = _job_filter(query, "")
    if query.cursor is not None:
        position = cursors.decode(query.cursor)
        condition, values = cursors.after(position, key, [], query.descending, "?", "rowid")
        where, filters = f"{where} AND {condition}", [*filters, *values]
    found: list[Row] = conn.execute(
        f"SELECT rowid, {CHECKPOINT_COLUMNS} FROM checkpoints WHERE {where}"
        f" ORDER BY {order} LIMIT ?",
        [*filters, _limit(query)],
    ).fetchall()
    return found


def _list_by_metric(conn: sqlite3.Connection, query: ListQuery) -> list[Row]:
    """A page sorted by a metric, from metric_order's index (schema 10): the checkpoints
    with the metric in its order, then those without it, newest first. Rows of
    (insertion order, checkpoint...)."""
    position = None if query.cursor is None else cursors.decode(query.cursor)
    limit = _limit(query)
    found: list[Row] = []
    if position is None or not position.key_missing:
        # the page's rows from metric_order alone (job, key and type are all there),
        # then their checkpoints
        where, filters = _job_filter(query, "")
        ordered = "metric_order_down" if query.descending else "metric_order_up"
        direction = "DESC" if query.descending else "ASC"
        condition, values = "", []
        if position is not None:
            later = "<" if query.descending else ">"
            condition = (
                f" AND (value {later} ? OR (value = ? AND (created_at < ?"
                " OR (created_at = ? AND inserted < ?))))"
            )
            values = [position.key, position.key, position.created_at]
            values += [position.created_at, position.inserted]
        columns = ", ".join(f"c.{name}" for name in CHECKPOINT_FIELDS)
        order = f"value {direction}, created_at DESC, inserted DESC"
        found = conn.execute(
            f"SELECT m.inserted, {columns} FROM ("
            " SELECT checkpoint_id, value, created_at, inserted"
            f" FROM metric_order INDEXED BY {ordered}"
            f" WHERE key = ? AND {where}{condition} ORDER BY {order} LIMIT ?) m"
            " JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            f" ORDER BY m.value {direction}, m.created_at DESC, m.inserted DESC",
            [query.sort_by, *filters, *values, limit],
        ).fetchall()
        if limit != -1 and len(found) >= limit:
            return found
        limit = limit if limit == -1 else limit - len(found)
        position = None  # the rest: every checkpoint without the metric
    where, filters = _job_filter(query, "")
    if position is not None:
        where += " AND (created_at < ? OR (created_at = ? AND rowid < ?))"
        filters += [position.created_at, position.created_at, position.inserted]
    found += conn.execute(
        f"SELECT rowid, {CHECKPOINT_COLUMNS} FROM checkpoints WHERE {where}"
        " AND NOT EXISTS (SELECT 1 FROM metric_order m"
        "  WHERE m.checkpoint_id = checkpoints.checkpoint_id AND m.key = ?)"
        f" {_NEWEST} LIMIT ?",
        [*filters, query.sort_by, limit],
    ).fetchall()
    return found


def _count(conn: sqlite3.Connection, query: ListQuery) -> int:
    """How many checkpoints the query's job has (of its types): kept counts (schema 10)."""
    where, filters = _job_filter(query, "")
    total: int = conn.execute(
        f"SELECT COALESCE(SUM(checkpoints), 0) FROM job_counts WHERE {where}", filters
    ).fetchone()[0]
    return total


def _totals(conn: sqlite3.Connection, query: ListQuery) -> tuple[int, int, int]:
    """Of the query's job, from the kept counts: how many checkpoints have its types,
    how many it has and their total size."""
    matching = "checkpoints"
    filters: list[object] = []
    if query.types is not None:
        marks = ", ".join("?" for _ in query.types)
        matching = f"CASE WHEN type IN ({marks}) THEN checkpoints ELSE 0 END"
        filters = list(query.types)
    row = conn.execute(
        f"SELECT COALESCE(SUM({matching}), 0), COALESCE(SUM(checkpoints), 0),"
        " COALESCE(SUM(size_bytes), 0) FROM job_counts WHERE tenant_id = ? AND job_id = ?",
        [*filters, query.tenant_id, query.job_id],
    ).fetchone()
    return row[0], row[1], row[2]


def _extremes(
    conn: sqlite3.Connection, tenant_id: str, job_id: str
) -> tuple[CheckpointRecord | None, CheckpointRecord | None]:
    """The job's newest checkpoint of type best, and its newest of any type."""
    newest = f"{_NEWEST} LIMIT 1"
    where = "WHERE tenant_id = ? AND job_id = ?"
    best = conn.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints {where} AND type = 'best' {newest}",
        (tenant_id, job_id),
    ).fetchone()
    latest = conn.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints {where} {newest}", (tenant_id, job_id)
    ).fetchone()
    return (
        rows.checkpoint(best) if best else None,
        rows.checkpoint(latest) if latest else None,
    )


def _page_rows(conn: sqlite3.Connection, query: ListQuery) -> list[Row]:
    """The query's page, one row past its limit: rows of (rowid, checkpoint...)."""
    if query.sort_by in _FIELD_COLUMNS:
        return _list_by_column(conn, query)
    return _list_by_metric(conn, query)


def _page(found: list[Row], query: ListQuery) -> tuple[list[CheckpointRecord], str | None]:
    """The records of ``_page_rows`` and the cursor of the next page."""
    # the page's metrics decoded in one call, not one per row
    metrics = json.loads("[" + ",".join(row[8] for row in found) + "]")
    records = [rows.record_of_row(row[1:], m) for row, m in zip(found, metrics, strict=True)]
    return cursors.page(records, [row[0] for row in found], query)


def _others(conn: sqlite3.Connection, record: CheckpointRecord) -> Iterator[CheckpointRecord]:
    """The job's ready checkpoints other than ``record``, newest first, read a page at a
    time (each page read whole, so no statement stays open once the rule returns)."""
    offset = 0
    while True:
        page = conn.execute(
            f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ? AND job_id = ?"
            f" AND status = 'ready' AND checkpoint_id != ? {_NEWEST} LIMIT ? OFFSET ?",
            (record.tenant_id, record.job_id, record.checkpoint_id, _CANDIDATE_PAGE, offset),
        ).fetchall()
        yield from (rows.checkpoint(row) for row in page)
        if len(page) < _CANDIDATE_PAGE:
            return
        offset += len(page)


def _manifest_key(conn: sqlite3.Connection, checkpoint_id: str) -> str:
    """The checkpoint whose manifest rows ``checkpoint_id`` reads: its own, or for a best
    copy its source's (``manifest_of``). Raises CheckpointNotFound."""
    row = conn.execute(
        "SELECT COALESCE(manifest_of, checkpoint_id) FROM checkpoints WHERE checkpoint_id = ?",
        (checkpoint_id,),
    ).fetchone()
    if row is None:
        raise CheckpointNotFound(checkpoint_id)
    key: str = row[0]
    return key


def _release_manifest(conn: sqlite3.Connection, record: CheckpointRecord, now: float) -> None:
    """The manifest pages of ``record``'s checkpoint, which is being deleted: passed to the
    oldest best copy that reads them (the other copies then read that one's), else
    dropped with their blocks' references. A copy keeps its blocks referenced either
    way, and no page is copied."""
    checkpoint_id = record.checkpoint_id
    heir = conn.execute(
        "SELECT checkpoint_id FROM checkpoints WHERE manifest_of = ?"
        " ORDER BY created_at, checkpoint_id LIMIT 1",
        (checkpoint_id,),
    ).fetchone()
    if heir is None:
        manifests.drop_references(conn, record.tenant_id, checkpoint_id, now)
        conn.execute("DELETE FROM manifest_pages WHERE checkpoint_id = ?", (checkpoint_id,))
        return
    conn.execute(
        "UPDATE manifest_pages SET checkpoint_id = ? WHERE checkpoint_id = ?",
        (heir[0], checkpoint_id),
    )
    conn.execute("UPDATE checkpoints SET manifest_of = NULL WHERE checkpoint_id = ?", heir)
    conn.execute(
        "UPDATE checkpoints SET manifest_of = ? WHERE manifest_of = ?", (heir[0], checkpoint_id)
    )


def _ensure_job(conn: sqlite3.Connection, tenant_id: str, job_id: str, now: float) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO jobs (tenant_id, job_id, created_at) VALUES (?, ?, ?)",
        (tenant_id, job_id, now),
    )


def _delete(conn: sqlite3.Connection, checkpoint_id: str, now: float) -> CheckpointRecord:
    record = rows.checkpoint_row(conn, checkpoint_id)
    if record is None:
        raise CheckpointNotFound(checkpoint_id)
    pins = conn.execute(
        "SELECT endpoint_id FROM endpoints WHERE checkpoint_id = ? ORDER BY endpoint_id",
        (checkpoint_id,),
    ).fetchall()
    if pins:
        raise CheckpointPinned(checkpoint_id, [row[0] for row in pins])
    if _manifest_key(conn, checkpoint_id) == checkpoint_id:
        _release_manifest(conn, record, now)
    delete_files(conn, checkpoint_id)
    conn.execute("DELETE FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,))
    conn.execute(
        "DELETE FROM rebases WHERE checkpoint_id = ? OR parent_id = ?",
        (checkpoint_id, checkpoint_id),
    )
    return record
