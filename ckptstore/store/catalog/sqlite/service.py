"""Service records in SQLite: store settings, endpoints that pin checkpoints, API keys."""

from __future__ import annotations

import json
import sqlite3

from ckptstore.errors import (
    CheckpointNotFound,
    CheckpointNotReady,
    EndpointNameTaken,
    EndpointNotFound,
)
from ckptstore.store.catalog.base import ServiceRecords
from ckptstore.store.catalog.records import ApiKeyRecord, EndpointRecord
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase
from ckptstore.store.catalog.sqlite.rows import Row

_ENDPOINT_COLUMNS = (
    "endpoint_id, tenant_id, name, checkpoint_id, gpu_ids, worker_count, status, created_at"
)
_KEY_COLUMNS = "key_id, tenant_id, name, created_at, revoked_at, admin"


def _endpoint(row: Row) -> EndpointRecord:
    return EndpointRecord(
        row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7]
    )


def _key(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(row[0], row[1], row[2], row[3], row[4], admin=bool(row[5]))


def _endpoint_values(record: EndpointRecord) -> Row:
    return (
        record.endpoint_id,
        record.tenant_id,
        record.name,
        record.checkpoint_id,
        json.dumps(record.gpu_ids),
        record.worker_count,
        record.status,
        record.created_at,
    )


def _check_pin(conn: sqlite3.Connection, record: EndpointRecord) -> None:
    """What an endpoint needs, checked in its write transaction (which no other writer
    interleaves): a ready checkpoint of its tenant, and a name no other of its endpoints has."""
    row = conn.execute(
        "SELECT status FROM checkpoints WHERE checkpoint_id = ? AND tenant_id = ?",
        (record.checkpoint_id, record.tenant_id),
    ).fetchone()
    if row is None:
        raise CheckpointNotFound(record.checkpoint_id)
    if row[0] != "ready":
        raise CheckpointNotReady(record.checkpoint_id)
    taken = conn.execute(
        "SELECT 1 FROM endpoints WHERE tenant_id = ? AND name = ? AND endpoint_id != ?",
        (record.tenant_id, record.name, record.endpoint_id),
    ).fetchone()
    if taken is not None:
        raise EndpointNameTaken(record.name)


class SQLiteServiceRecords(SQLiteDatabase, ServiceRecords):
    # -- settings ------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting_if_absent(self, key: str, value: str) -> str:
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))
            stored: str = conn.execute(
                "SELECT value FROM settings WHERE key = ?", (key,)
            ).fetchone()[0]
            return stored

    # -- endpoints -------------------------------------------------------------
    def add_endpoint(self, record: EndpointRecord) -> None:
        with self._write() as conn:
            _check_pin(conn, record)
            conn.execute(
                f"INSERT INTO endpoints ({_ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                _endpoint_values(record),
            )

    def update_endpoint(self, record: EndpointRecord) -> None:
        with self._write() as conn:
            found = conn.execute(
                "SELECT 1 FROM endpoints WHERE endpoint_id = ? AND tenant_id = ?",
                (record.endpoint_id, record.tenant_id),
            ).fetchone()
            if found is None:
                raise EndpointNotFound(record.endpoint_id)
            _check_pin(conn, record)
            assignments = ", ".join(f"{c} = ?" for c in _ENDPOINT_COLUMNS.split(", ")[1:])
            conn.execute(
                f"UPDATE endpoints SET {assignments} WHERE endpoint_id = ?",
                (*_endpoint_values(record)[1:], record.endpoint_id),
            )

    def get_endpoint(self, endpoint_id: str) -> EndpointRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE endpoint_id = ?", (endpoint_id,)
            )
            .fetchone()
        )
        return _endpoint(row) if row else None

    def list_endpoints(self, tenant_id: str) -> list[EndpointRecord]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE tenant_id = ?"
                " ORDER BY created_at, endpoint_id",
                (tenant_id,),
            )
            .fetchall()
        )
        return [_endpoint(row) for row in rows]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM endpoints WHERE endpoint_id = ?", (endpoint_id,))
            return cur.rowcount == 1

    # -- API keys --------------------------------------------------------------
    def add_api_key(self, record: ApiKeyRecord, key_hash: bytes) -> None:
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}, key_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key_id,
                    record.tenant_id,
                    record.name,
                    record.created_at,
                    record.revoked_at,
                    int(record.admin),
                    key_hash,
                ),
            )

    def active_key(self, key_hash: bytes) -> ApiKeyRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                (key_hash,),
            )
            .fetchone()
        )
        return _key(row) if row else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = (
            self._conn()
            .execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY tenant_id, created_at")
            .fetchall()
        )
        return [_key(row) for row in rows]

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            return cur.rowcount == 1
