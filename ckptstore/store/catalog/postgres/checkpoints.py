"""Checkpoints in PostgreSQL: checkpoints, manifests (as pages), slots, jobs and their
settings."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg.errors

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointPinned,
    MissingBlockError,
)
from ckptstore.store.catalog import cursors
from ckptstore.store.catalog.base import Checkpoints, ParentRule
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.database import Connection, PostgresDatabase, retried
from ckptstore.store.catalog.postgres.files import copy_files, delete_files, insert_files
from ckptstore.store.catalog.postgres.pages import (
    INSERT_PAGES,
    ids_of_keys,
    keys_of_ids,
    page_rows,
    read_pages,
    rows_by_key,
)
from ckptstore.store.catalog.postgres.references import add_references, drop_references
from ckptstore.store.catalog.postgres.rows import (
    CHECKPOINT_COLUMNS,
    CHECKPOINT_FIELDS,
    CHECKPOINT_MARKS,
    CHECKPOINT_TEXT_COLUMNS,
    block_columns,
)
from ckptstore.store.catalog.records import (
    BlockRecord,
    CheckpointRecord,
    FileRecord,
    JobListing,
    ListQuery,
)

_FIELD_COLUMNS = {"createdAt": "created_at", "epoch": "epoch", "step": "step"}
_NEWEST = "ORDER BY created_at DESC, seq DESC"
_CANDIDATE_PAGE = 16  # the parent of a rebase is nearly always the first candidate
_SELECT = f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints"


class PostgresCheckpoints(PostgresDatabase, Checkpoints):
    # -- write -----------------------------------------------------------------
    @retried
    def create_checkpoint(self, record: CheckpointRecord) -> None:
        with self._write() as conn:
            _ensure_job(conn, record.tenant_id, record.job_id, record.created_at)
            _insert(conn, record)

    @retried
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
        # The blocks' keys are read before the transaction (a leased block keeps its
        # key), and so are the pages made: the transaction only writes.
        keys = self._keys_of([block for _, block in manifest])
        entry_keys = [keys[block] for _, block in manifest]
        pages = page_rows(
            record.checkpoint_id,
            entry_keys,
            [offset for offset, _ in manifest],
            slots or [None] * len(manifest),
        )
        with self._write() as conn:
            _ensure_job(conn, record.tenant_id, record.job_id, record.created_at)
            if rebase_parent is not None:
                # Commits of one job that choose a parent take turns, so the second
                # sees the first among the candidates.
                conn.execute(
                    "SELECT 1 FROM jobs WHERE tenant_id = %s AND job_id = %s FOR UPDATE",
                    (record.tenant_id, record.job_id),
                )
            ids = {key: block for block, key in keys.items()}
            add_references(conn, Counter(entry_keys), record.tenant_id, ids)
            existing = _locked_checkpoint(conn, record.checkpoint_id)
            if existing is None and fills_pending:
                raise CheckpointNotFound(record.checkpoint_id)  # rolls back the references
            if existing is None:
                _insert(conn, record)
            elif existing.status == "pending" and existing.tenant_id == record.tenant_id:
                assignments = ", ".join(f"{name} = %s" for name in CHECKPOINT_FIELDS[1:])
                conn.execute(
                    f"UPDATE checkpoints SET {assignments} WHERE checkpoint_id = %s",
                    (*rows.checkpoint_values(record)[1:], record.checkpoint_id),
                )
            else:
                raise CheckpointExists(record.checkpoint_id)  # rolls back the references
            conn.execute(INSERT_PAGES, pages)
            insert_files(conn, record.checkpoint_id, files or [])
            conn.execute("DELETE FROM leases WHERE holder = %s", (lease_holder,))
            parent = None if rebase_parent is None else rebase_parent(_others(conn, record))
            if parent is not None:
                conn.execute(
                    "INSERT INTO rebases (checkpoint_id, parent_id) VALUES (%s, %s)",
                    (record.checkpoint_id, parent),
                )
            return parent

    def _keys_of(self, block_ids: list[bytes]) -> dict[bytes, int]:
        """The key of each of ``block_ids``; MissingBlockError if any has no row."""
        with self._single() as conn:
            keys = keys_of_ids(conn, block_ids)
        missing = [block.hex() for block in dict.fromkeys(block_ids) if block not in keys]
        if missing:
            raise MissingBlockError(missing)
        return keys

    @retried
    def replace_best(self, record: CheckpointRecord, old_best_id: str | None) -> None:
        with self._write() as conn:
            if _locked_checkpoint(conn, record.checkpoint_id) is not None:
                raise CheckpointExists(record.checkpoint_id)
            if record.parent_id is None:
                raise ValueError("a best copy names the checkpoint it copies (parent_id)")
            # the checkpoint copied stays until this commits (a delete waits for it)
            source = _manifest_key(conn, record.parent_id, lock=" FOR SHARE")
            _insert(conn, record)
            conn.execute(
                "UPDATE checkpoints SET manifest_of = %s WHERE checkpoint_id = %s",
                (source, record.checkpoint_id),
            )
            copy_files(conn, record.checkpoint_id, record.parent_id)
            if old_best_id is not None:
                _delete(conn, old_best_id, record.created_at)

    @retried
    def delete_checkpoint(self, checkpoint_id: str, now: float) -> CheckpointRecord:
        with self._write() as conn:
            return _delete(conn, checkpoint_id, now)

    def pending_since(self, created_before: float) -> list[CheckpointRecord]:
        found = self._all(
            f"{_SELECT} WHERE status = 'pending' AND created_at < %s ORDER BY created_at, seq",
            (created_before,),
        )
        return [rows.checkpoint(row) for row in found]

    # -- read ------------------------------------------------------------------
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        row = self._one(f"{_SELECT} WHERE checkpoint_id = %s", (checkpoint_id,))
        if row is None:
            raise CheckpointNotFound(checkpoint_id)
        return rows.checkpoint(row)

    def list_checkpoints(self, query: ListQuery) -> tuple[list[CheckpointRecord], int, str | None]:
        with self._read() as conn:
            if query.sort_by in _FIELD_COLUMNS:
                found = _list_by_column(conn, query)
            else:
                found = _list_by_metric(conn, query)
            total = _count(conn, query)
        page, next_cursor = _page(found, query)
        return page, total, next_cursor

    def job_listing(self, query: ListQuery) -> JobListing:
        summary, summary_params = _summary_select(query)
        if query.sort_by in _FIELD_COLUMNS:
            # one statement: one snapshot and one round trip, no BEGIN and COMMIT
            page, page_params = _column_page(query, numbered=True)
            with self._single() as conn:
                found = conn.execute(
                    f"WITH page AS ({page}) SELECT {_PAGE}, n, seq, {CHECKPOINT_TEXT_COLUMNS},"
                    " NULL::bigint, NULL::bigint, NULL::bigint FROM page"
                    f" UNION ALL {summary} ORDER BY 1, 2",
                    [*page_params, *summary_params],
                ).fetchall()
            page_rows = [row[2:_TOTALS] for row in found if row[0] == _PAGE]
        else:  # a metric's page takes one or two statements: all in one snapshot
            with self._read() as conn:
                page_rows = _list_by_metric(conn, query)
                found = conn.execute(summary, summary_params).fetchall()
        return _listing(query, page_rows, found)

    def manifest(self, checkpoint_id: str) -> list[tuple[int, BlockRecord]]:
        with self._read() as conn:
            pages = read_pages(conn, _manifest_key(conn, checkpoint_id))
            keys = [key for page in pages for key in page.keys]
            found = rows_by_key(conn, keys, block_columns("b"))
            missing = [key for key in dict.fromkeys(keys) if key not in found]
            if missing:
                ids = ids_of_keys(conn, missing)
                raise MissingBlockError([ids[key].hex() for key in missing])
        records = {key: rows.block(row) for key, row in found.items()}
        return [
            (offset, records[key])
            for page in pages
            for key, offset in zip(page.keys, page.offsets, strict=True)
        ]

    def slots(self, checkpoint_id: str) -> dict[str, BlockRecord]:
        with self._read() as conn:
            pages = read_pages(conn, _manifest_key(conn, checkpoint_id))
            tensors = [
                (slot, key)
                for page in pages
                for key, slot in zip(page.keys, page.slots, strict=True)
                if slot is not None
            ]
            found = rows_by_key(conn, [key for _, key in tensors], block_columns("b"))
        return {slot: rows.block(found[key]) for slot, key in tensors if key in found}

    def job_totals(self, tenant_id: str, job_id: str) -> tuple[int, int]:
        # job_counts holds both per type, kept by the checkpoints_listing trigger
        row = self._one(
            "SELECT COALESCE(SUM(checkpoints), 0)::bigint, COALESCE(SUM(size_bytes), 0)::bigint"
            " FROM job_counts WHERE tenant_id = %s AND job_id = %s",
            (tenant_id, job_id),
        )
        return row[0], row[1]

    def job_extremes(
        self, tenant_id: str, job_id: str
    ) -> tuple[CheckpointRecord | None, CheckpointRecord | None]:
        # one statement, so one snapshot and one round trip (every list answer asks)
        where = "WHERE tenant_id = %s AND job_id = %s"
        found = self._all(
            f"(SELECT TRUE, {CHECKPOINT_COLUMNS} FROM checkpoints {where} AND type = 'best'"
            f" {_NEWEST} LIMIT 1) UNION ALL"
            f" (SELECT FALSE, {CHECKPOINT_COLUMNS} FROM checkpoints {where} {_NEWEST} LIMIT 1)",
            (tenant_id, job_id, tenant_id, job_id),
        )
        best = next((rows.checkpoint(row[1:]) for row in found if row[0]), None)
        latest = next((rows.checkpoint(row[1:]) for row in found if not row[0]), None)
        return best, latest

    def tenant_totals(self, tenant_id: str) -> tuple[int, int, int]:
        row = self._one(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0)::bigint,"
            " COALESCE(SUM(stored_bytes), 0)::bigint FROM checkpoints WHERE tenant_id = %s",
            (tenant_id,),
        )
        return row[0], row[1], row[2]

    def metric_keys(self, tenant_id: str, job_id: str) -> list[str]:
        found = self._all(
            'SELECT DISTINCT k COLLATE "C" FROM checkpoints c, jsonb_object_keys(c.metrics) k'
            " WHERE c.tenant_id = %s AND c.job_id = %s ORDER BY 1",
            (tenant_id, job_id),
        )
        return [row[0] for row in found]

    def list_jobs(self, tenant_id: str) -> list[str]:
        found = self._all(
            "SELECT job_id FROM jobs WHERE tenant_id = %s ORDER BY job_id", (tenant_id,)
        )
        return [row[0] for row in found]

    # -- job settings ----------------------------------------------------------
    def job_settings(self, tenant_id: str, job_id: str) -> dict[str, object]:
        row = self._one(
            "SELECT settings FROM jobs WHERE tenant_id = %s AND job_id = %s", (tenant_id, job_id)
        )
        settings: dict[str, object] = json.loads(row[0]) if row else {}
        return settings

    @retried
    def set_job_settings(
        self, tenant_id: str, job_id: str, settings: dict[str, object], now: float
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (tenant_id, job_id, created_at, settings)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, job_id) DO UPDATE SET settings = EXCLUDED.settings",
                (tenant_id, job_id, now, json.dumps(settings)),
            )


def _job_filter(query: ListQuery, table: str) -> tuple[str, list[object]]:
    """The condition naming the query's job (and types) on ``table``'s columns."""
    where = f"{table}tenant_id = %s AND {table}job_id = %s"
    filters: list[object] = [query.tenant_id, query.job_id]
    if query.types is not None:
        where += f" AND {table}type = ANY(%s)"
        filters.append(list(query.types))
    return where, filters


def _limit(query: ListQuery) -> int | None:
    return None if query.limit is None else query.limit + 1  # one more: is there a next?


def _list_by_column(conn: Connection, query: ListQuery) -> list[tuple[Any, ...]]:
    """A page sorted by creation time, epoch or step: rows of (seq, checkpoint...)."""
    sql, params = _column_page(query)
    return conn.execute(sql, params).fetchall()


def _column_page(query: ListQuery, *, numbered: bool = False) -> tuple[str, list[object]]:
    """The SELECT of a page sorted by creation time, epoch or step, and its parameters:
    rows of (seq, checkpoint...), with ``numbered`` also their place on the page
    (``n``, from 1)."""
    direction = "DESC" if query.descending else "ASC"
    key: str | None = None
    if query.sort_by == "createdAt":  # never NULL: the index gives this order directly
        order = f"created_at {direction}, seq {direction}"
    else:
        key = _FIELD_COLUMNS[query.sort_by]
        order = f"({key}) IS NULL, ({key}) {direction}, created_at DESC, seq DESC"
    where, filters = _job_filter(query, "")
    if query.cursor is not None:
        position = cursors.decode(query.cursor)
        condition, values = cursors.after(position, key, [], query.descending, "%s", "seq")
        where, filters = f"{where} AND {condition}", [*filters, *values]
    number = f", row_number() OVER (ORDER BY {order}) AS n" if numbered else ""
    sql = (
        f"SELECT seq, {CHECKPOINT_COLUMNS}{number} FROM checkpoints WHERE {where}"
        f" ORDER BY {order} LIMIT %s"
    )
    return sql, [*filters, _limit(query)]


# the parts of job_listing's rows: (part, place, seq, checkpoint..., totals...)
_PAGE, _BEST, _LATEST, _JOB_TOTALS = range(4)
_TOTALS = 3 + len(CHECKPOINT_FIELDS)  # where the totals start in a row


def _summary_select(query: ListQuery) -> tuple[str, list[object]]:
    """A SELECT of the job's best and latest checkpoints and its totals, rows shaped as
    ``job_listing``'s, and its parameters: the newest of type best, the newest, and
    from the kept counts (schema 5) how many checkpoints have the query's types, how
    many there are and their total size."""
    where = "tenant_id = %s AND job_id = %s"
    job: list[object] = [query.tenant_id, query.job_id]
    matching, types = "SUM(checkpoints)", []
    if query.types is not None:
        matching, types = "SUM(checkpoints) FILTER (WHERE type = ANY(%s))", [list(query.types)]
    nothing = ", ".join(["NULL"] * (1 + len(CHECKPOINT_FIELDS)))
    no_totals = "NULL::bigint, NULL::bigint, NULL::bigint"
    sql = (
        f"(SELECT {_BEST}, 0, seq, {CHECKPOINT_TEXT_COLUMNS}, {no_totals} FROM checkpoints"
        f" WHERE {where} AND type = 'best' {_NEWEST} LIMIT 1) UNION ALL"
        f" (SELECT {_LATEST}, 0, seq, {CHECKPOINT_TEXT_COLUMNS}, {no_totals} FROM checkpoints"
        f" WHERE {where} {_NEWEST} LIMIT 1) UNION ALL"
        f" SELECT {_JOB_TOTALS}, 0, {nothing}, COALESCE({matching}, 0)::bigint,"
        " COALESCE(SUM(checkpoints), 0)::bigint, COALESCE(SUM(size_bytes), 0)::bigint"
        f" FROM job_counts WHERE {where}"
    )
    return sql, [*job, *job, *types, *job]


def _listing(
    query: ListQuery, page_rows: list[tuple[Any, ...]], summary: list[tuple[Any, ...]]
) -> JobListing:
    """The JobListing of a page's rows (seq, checkpoint...) and ``_summary_select``'s
    (metrics as text: all of them decoded at once)."""
    parts = {row[0]: row for row in summary if row[0] != _PAGE}
    extremes = [parts[part][3:_TOTALS] for part in (_BEST, _LATEST) if part in parts]
    records = rows.checkpoints([*(row[1:] for row in page_rows), *extremes])
    page, next_cursor = cursors.page(
        records[: len(page_rows)], [row[0] for row in page_rows], query
    )
    found = iter(records[len(page_rows) :])
    best = next(found) if _BEST in parts else None
    latest = next(found) if _LATEST in parts else None
    matching, count, size = parts[_JOB_TOTALS][_TOTALS:]
    return JobListing(page, matching, next_cursor, best, latest, count, size)


def _page(
    found: list[tuple[Any, ...]], query: ListQuery
) -> tuple[list[CheckpointRecord], str | None]:
    """The records of a page's rows (seq, checkpoint...), and the next page's cursor."""
    records = [rows.checkpoint(row[1:]) for row in found]
    return cursors.page(records, [row[0] for row in found], query)


def _list_by_metric(conn: Connection, query: ListQuery) -> list[tuple[Any, ...]]:
    """A page sorted by a metric, from metric_order's index (schema 5): the checkpoints
    with the metric in its order, then those without it, newest first. Rows of
    (insertion order, checkpoint...)."""
    position = None if query.cursor is None else cursors.decode(query.cursor)
    limit = _limit(query)
    found: list[tuple[Any, ...]] = []
    if position is None or not position.key_missing:
        # the page's rows from metric_order alone (job, key and type are all there),
        # then their checkpoints
        where, filters = _job_filter(query, "")
        direction = "DESC" if query.descending else "ASC"
        condition, values = "", []
        if position is not None:
            later = "<" if query.descending else ">"
            condition = (
                f" AND (value {later} %s OR (value = %s AND (created_at < %s"
                " OR (created_at = %s AND inserted < %s))))"
            )
            values = [position.key, position.key, position.created_at]
            values += [position.created_at, position.inserted]
        columns = ", ".join(f"c.{name}" for name in CHECKPOINT_FIELDS)
        order = f"value {direction}, created_at DESC, inserted DESC"
        found = conn.execute(
            f"SELECT m.inserted, {columns} FROM ("
            f" SELECT checkpoint_id, value, created_at, inserted FROM metric_order"
            f" WHERE key = %s AND {where}{condition} ORDER BY {order} LIMIT %s) m"
            " JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            f" ORDER BY m.value {direction}, m.created_at DESC, m.inserted DESC",
            [query.sort_by, *filters, *values, limit],
        ).fetchall()
        if limit is not None and len(found) >= limit:
            return found
        limit = None if limit is None else limit - len(found)
        position = None  # the rest: every checkpoint without the metric
    where, filters = _job_filter(query, "")
    if position is not None:
        where += " AND (created_at < %s OR (created_at = %s AND seq < %s))"
        filters += [position.created_at, position.created_at, position.inserted]
    found += conn.execute(
        f"SELECT seq, {CHECKPOINT_COLUMNS} FROM checkpoints WHERE {where}"
        " AND NOT EXISTS (SELECT 1 FROM metric_order m"
        "  WHERE m.checkpoint_id = checkpoints.checkpoint_id AND m.key = %s)"
        f" {_NEWEST} LIMIT %s",
        [*filters, query.sort_by, limit],
    ).fetchall()
    return found


def _count(conn: Connection, query: ListQuery) -> int:
    """How many checkpoints the query's job has (of its types): kept counts (schema 5)."""
    where, filters = _job_filter(query, "")
    row = conn.execute(
        f"SELECT COALESCE(SUM(checkpoints), 0)::bigint FROM job_counts WHERE {where}", filters
    ).fetchone()
    return int(row[0]) if row else 0


def _insert(conn: Connection, record: CheckpointRecord) -> None:
    """Insert a checkpoint row; CheckpointExists if its id is taken (by a commit that
    raced this one, too)."""
    try:
        with conn.transaction():  # a savepoint: the error is turned into ours
            conn.execute(
                f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ({CHECKPOINT_MARKS})",
                rows.checkpoint_values(record),
            )
    except psycopg.errors.UniqueViolation:
        raise CheckpointExists(record.checkpoint_id) from None


def _locked_checkpoint(conn: Connection, checkpoint_id: str) -> CheckpointRecord | None:
    """The checkpoint's row, locked until the transaction ends (None if there is none)."""
    row = conn.execute(
        f"{_SELECT} WHERE checkpoint_id = %s FOR UPDATE", (checkpoint_id,)
    ).fetchone()
    return rows.checkpoint(row) if row else None


def _others(conn: Connection, record: CheckpointRecord) -> Iterator[CheckpointRecord]:
    """The job's ready checkpoints other than ``record``, newest first, read a page at a
    time (each page read whole, so no statement stays open once the rule returns)."""
    offset = 0
    while True:
        page = conn.execute(
            f"{_SELECT} WHERE tenant_id = %s AND job_id = %s"
            f" AND status = 'ready' AND checkpoint_id != %s {_NEWEST} LIMIT %s OFFSET %s",
            (record.tenant_id, record.job_id, record.checkpoint_id, _CANDIDATE_PAGE, offset),
        ).fetchall()
        yield from (rows.checkpoint(row) for row in page)
        if len(page) < _CANDIDATE_PAGE:
            return
        offset += len(page)


def _manifest_key(conn: Connection, checkpoint_id: str, lock: str = "") -> str:
    """The checkpoint whose manifest rows ``checkpoint_id`` reads: its own, or for a best
    copy its source's (``manifest_of``). Raises CheckpointNotFound."""
    row = conn.execute(
        "SELECT COALESCE(manifest_of, checkpoint_id) FROM checkpoints"
        f" WHERE checkpoint_id = %s{lock}",
        (checkpoint_id,),
    ).fetchone()
    if row is None:
        raise CheckpointNotFound(checkpoint_id)
    key: str = row[0]
    return key


def _release_manifest(conn: Connection, record: CheckpointRecord, now: float) -> None:
    """The manifest pages of ``record``, which is being deleted: passed to the oldest
    best copy that reads them (the other copies then read that one's), else dropped
    with their blocks' references. A copy keeps its blocks referenced either way, and
    no page is copied."""
    checkpoint_id = record.checkpoint_id
    copies = conn.execute(
        "SELECT checkpoint_id FROM checkpoints WHERE manifest_of = %s"
        " ORDER BY created_at, checkpoint_id FOR UPDATE",
        (checkpoint_id,),
    ).fetchall()
    if not copies:
        counts = Counter(key for page in read_pages(conn, checkpoint_id) for key in page.keys)
        drop_references(conn, counts, record.tenant_id, now)
        conn.execute("DELETE FROM manifest_pages WHERE checkpoint_id = %s", (checkpoint_id,))
        return
    heir = copies[0][0]
    conn.execute(
        "UPDATE manifest_pages SET checkpoint_id = %s WHERE checkpoint_id = %s",
        (heir, checkpoint_id),
    )
    conn.execute("UPDATE checkpoints SET manifest_of = NULL WHERE checkpoint_id = %s", (heir,))
    conn.execute(
        "UPDATE checkpoints SET manifest_of = %s WHERE manifest_of = %s", (heir, checkpoint_id)
    )


def _ensure_job(conn: Connection, tenant_id: str, job_id: str, now: float) -> None:
    conn.execute(
        "INSERT INTO jobs (tenant_id, job_id, created_at) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (tenant_id, job_id, now),
    )


def _delete(conn: Connection, checkpoint_id: str, now: float) -> CheckpointRecord:
    record = _locked_checkpoint(conn, checkpoint_id)
    if record is None:
        raise CheckpointNotFound(checkpoint_id)
    pins = conn.execute(
        "SELECT endpoint_id FROM endpoints WHERE checkpoint_id = %s ORDER BY endpoint_id",
        (checkpoint_id,),
    ).fetchall()
    if pins:
        raise CheckpointPinned(checkpoint_id, [row[0] for row in pins])
    if _manifest_key(conn, checkpoint_id) == checkpoint_id:
        _release_manifest(conn, record, now)
    delete_files(conn, checkpoint_id)
    conn.execute("DELETE FROM checkpoints WHERE checkpoint_id = %s", (checkpoint_id,))
    conn.execute(
        "DELETE FROM rebases WHERE checkpoint_id = %s OR parent_id = %s",
        (checkpoint_id, checkpoint_id),
    )
    return record
