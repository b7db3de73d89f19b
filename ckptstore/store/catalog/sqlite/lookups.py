"""Lookups in SQLite: a tenant's checkpoint ids by prefix, a job's newest ready checkpoint."""

from __future__ import annotations

from ckptstore.store.catalog.base import Lookups
from ckptstore.store.catalog.records import CheckpointRecord
from ckptstore.store.catalog.sqlite import rows
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase
from ckptstore.store.catalog.sqlite.rows import CHECKPOINT_COLUMNS


def prefix_end(prefix: str) -> str:
    """The least string greater than every string that starts with ``prefix``: with it,
    a prefix is a range of an index (``LIKE`` would read ``_`` as a wildcard)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class SQLiteLookups(SQLiteDatabase, Lookups):
    def ids_with_prefix(self, tenant_id: str, prefix: str, limit: int) -> list[str]:
        if not prefix:
            raise ValueError("an empty prefix")
        # the range runs along index checkpoints_tenant (tenant_id, checkpoint_id)
        found = (
            self._conn()
            .execute(
                "SELECT checkpoint_id FROM checkpoints WHERE tenant_id = ?"
                " AND checkpoint_id >= ? AND checkpoint_id < ? ORDER BY checkpoint_id LIMIT ?",
                (tenant_id, prefix, prefix_end(prefix), limit),
            )
            .fetchall()
        )
        return [row[0] for row in found]

    def newest_ready(
        self, tenant_id: str, job_id: str, types: tuple[str, ...]
    ) -> CheckpointRecord | None:
        marks = ", ".join("?" * len(types))
        row = (
            self._conn()
            .execute(
                f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ? AND job_id = ?"
                f" AND status = 'ready' AND type IN ({marks})"
                " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (tenant_id, job_id, *types),
            )
            .fetchone()
        )
        return rows.checkpoint(row) if row else None
