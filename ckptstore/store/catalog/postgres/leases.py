"""Leases in PostgreSQL: holds on blocks that GC must leave alone."""

from __future__ import annotations

from ckptstore.store.catalog.base import Leases
from ckptstore.store.catalog.postgres.blocks import hold_blocks, lease
from ckptstore.store.catalog.postgres.database import PostgresDatabase, retried


class PostgresLeases(PostgresDatabase, Leases):
    @retried
    def lease_existing(
        self, block_ids: list[bytes], lease_holder: str, expires_at: float
    ) -> set[bytes]:
        with self._write() as conn:
            # Locking the rows found makes the find and the lease one step for GC: it
            # deleted a block before (not found), or waits and then sees the lease.
            found = hold_blocks(conn, block_ids)
            if found:
                lease(conn, found, lease_holder, expires_at)
            return set(found)

    @retried
    def lease_visible(
        self, block_ids: list[bytes], tenant_id: str, lease_holder: str, expires_at: float
    ) -> set[bytes]:
        with self._write() as conn:
            found = [
                row[0]
                for row in conn.execute(
                    "SELECT b.block_id FROM blocks b WHERE b.block_id = ANY(%s)"
                    " AND EXISTS (SELECT 1 FROM tenant_refs t"  # the tenant's own references
                    " WHERE t.block_key = b.block_key AND t.tenant_id = %s)"
                    " ORDER BY b.block_id FOR SHARE OF b",
                    (sorted(set(block_ids)), tenant_id),
                ).fetchall()
            ]
            if found:
                lease(conn, found, lease_holder, expires_at)
            return set(found)

    def leased_to(self, lease_holder: str, block_ids: list[bytes]) -> set[bytes]:
        found = self._all(
            "SELECT block_id FROM leases WHERE holder = %s AND block_id = ANY(%s)",
            (lease_holder, list(set(block_ids))),
        )
        return {row[0] for row in found}

    @retried
    def renew_leases(self, lease_holder: str, expires_at: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE leases SET expires_at = %s WHERE holder = %s", (expires_at, lease_holder)
            )

    @retried
    def release_leases(self, lease_holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE holder = %s", (lease_holder,))
