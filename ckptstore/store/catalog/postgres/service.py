"""Service records in PostgreSQL: store settings, endpoints that pin checkpoints, API keys.

Every replica that shares the catalog sees the same keys and settings (the signing
secret among them), so a request may land on any of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg.errors

from ckptstore.errors import (
    CheckpointNotFound,
    CheckpointNotReady,
    EndpointNameTaken,
    EndpointNotFound,
)
from ckptstore.store.catalog.base import ServiceRecords
from ckptstore.store.catalog.postgres.database import Connection, PostgresDatabase, retried
from ckptstore.store.catalog.postgres.rows import Row
from ckptstore.store.catalog.records import ApiKeyRecord, EndpointRecord

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


def _hold_checkpoint(conn: Connection, record: EndpointRecord) -> None:
    """The endpoint's checkpoint must be a ready one of its tenant; it is held until the
    pin commits, so a delete waits, then sees the pin."""
    row = conn.execute(
        "SELECT status FROM checkpoints WHERE checkpoint_id = %s AND tenant_id = %s FOR SHARE",
        (record.checkpoint_id, record.tenant_id),
    ).fetchone()
    if row is None:
        raise CheckpointNotFound(record.checkpoint_id)
    if row[0] != "ready":
        raise CheckpointNotReady(record.checkpoint_id)


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    """A clash with index endpoints_name as ``EndpointNameTaken`` (the transaction, failed,
    rolls back as the error leaves it)."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "endpoints_name":
            raise EndpointNameTaken(name) from None
        raise


class PostgresServiceRecords(PostgresDatabase, ServiceRecords):
    # -- settings ------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = %s", (key,))
        return row[0] if row else None

    @retried
    def set_setting_if_absent(self, key: str, value: str) -> str:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (key, value),
            )
            row = conn.execute("SELECT value FROM settings WHERE key = %s", (key,)).fetchone()
            assert row is not None  # inserted, or there already
            stored: str = row[0]
            return stored

    # -- endpoints -------------------------------------------------------------
    @retried
    def add_endpoint(self, record: EndpointRecord) -> None:
        with self._write() as conn:
            _hold_checkpoint(conn, record)
            with _unique_name(record.name):
                conn.execute(
                    f"INSERT INTO endpoints ({_ENDPOINT_COLUMNS})"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    _endpoint_values(record),
                )

    @retried
    def update_endpoint(self, record: EndpointRecord) -> None:
        with self._write() as conn:
            found = conn.execute(
                "SELECT 1 FROM endpoints WHERE endpoint_id = %s AND tenant_id = %s FOR UPDATE",
                (record.endpoint_id, record.tenant_id),
            ).fetchone()
            if found is None:
                raise EndpointNotFound(record.endpoint_id)
            _hold_checkpoint(conn, record)
            assignments = ", ".join(f"{c} = %s" for c in _ENDPOINT_COLUMNS.split(", ")[1:])
            with _unique_name(record.name):
                conn.execute(
                    f"UPDATE endpoints SET {assignments} WHERE endpoint_id = %s",
                    (*_endpoint_values(record)[1:], record.endpoint_id),
                )

    def get_endpoint(self, endpoint_id: str) -> EndpointRecord | None:
        row = self._one(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE endpoint_id = %s", (endpoint_id,)
        )
        return _endpoint(row) if row else None

    def list_endpoints(self, tenant_id: str) -> list[EndpointRecord]:
        found = self._all(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE tenant_id = %s"
            " ORDER BY created_at, endpoint_id",
            (tenant_id,),
        )
        return [_endpoint(row) for row in found]

    @retried
    def delete_endpoint(self, endpoint_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM endpoints WHERE endpoint_id = %s", (endpoint_id,))
            return cur.rowcount == 1

    # -- API keys --------------------------------------------------------------
    @retried
    def add_api_key(self, record: ApiKeyRecord, key_hash: bytes) -> None:
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}, key_hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    record.key_id,
                    record.tenant_id,
                    record.name,
                    record.created_at,
                    record.revoked_at,
                    record.admin,
                    key_hash,
                ),
            )

    def active_key(self, key_hash: bytes) -> ApiKeyRecord | None:
        row = self._one(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (key_hash,),
        )
        return _key(row) if row else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        found = self._all(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY tenant_id, created_at")
        return [_key(row) for row in found]

    @retried
    def revoke_api_key(self, key_id: str, now: float) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL",
                (now, key_id),
            )
            return cur.rowcount == 1
