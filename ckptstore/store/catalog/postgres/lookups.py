"""Lookups in PostgreSQL: a tenant's checkpoint ids by prefix, a job's newest ready
checkpoint. Ids are ``COLLATE "C"``, so a prefix is a range of the index in byte order."""

from __future__ import annotations

from ckptstore.store.catalog.base import Lookups
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.database import PostgresDatabase
from ckptstore.store.catalog.postgres.rows import CHECKPOINT_COLUMNS
from ckptstore.store.catalog.records import CheckpointRecord
from ckptstore.store.catalog.sqlite.lookups import prefix_end


class PostgresLookups(PostgresDatabase, Lookups):
    def ids_with_prefix(self, tenant_id: str, prefix: str, limit: int) -> list[str]:
        if not prefix:
            raise ValueError("an empty prefix")
        # the range runs along index checkpoints_tenant (tenant_id, checkpoint_id)
        found = self._all(
            "SELECT checkpoint_id FROM checkpoints WHERE tenant_id = %s"
            " AND checkpoint_id >= %s AND checkpoint_id < %s ORDER BY checkpoint_id LIMIT %s",
            (tenant_id, prefix, prefix_end(prefix), limit),
        )
        return [row[0] for row in found]

    def newest_ready(
        self, tenant_id: str, job_id: str, types: tuple[str, ...]
    ) -> CheckpointRecord | None:
        row = self._one(
            f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = %s AND job_id = %s"
            " AND status = 'ready' AND type = ANY(%s) ORDER BY created_at DESC, seq DESC LIMIT 1",
            (tenant_id, job_id, list(types)),
        )
        return rows.checkpoint(row) if row else None
