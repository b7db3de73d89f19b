"""Leases in SQLite: holds on blocks that GC must leave alone."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ckptstore.store.catalog.base import Leases
from ckptstore.store.catalog.sqlite import rows
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase, batches


class SQLiteLeases(SQLiteDatabase, Leases):
    def lease_existing(
        self, block_ids: list[bytes], lease_holder: str, expires_at: float
    ) -> set[bytes]:
        query = "SELECT b.block_id FROM blocks b WHERE {ids}"
        return self._lease_found(query, (), block_ids, lease_holder, expires_at)

    def lease_visible(
        self, block_ids: list[bytes], tenant_id: str, lease_holder: str, expires_at: float
    ) -> set[bytes]:
        query = (
            "SELECT b.block_id FROM blocks b"
            " JOIN tenant_refs t ON t.block_key = b.block_key AND t.tenant_id = ?"
            " WHERE {ids}"
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
                sql = query.format(ids=rows.ids_in(len(batch), "b.block_id"))
                found = conn.execute(sql, [*extra, *rows.id_values(batch)])
                yield [row[0] for row in found.fetchall()]

        with self._read() as conn:
            candidates = [block for got in find(conn, list(set(block_ids))) for block in got]
        found: set[bytes] = set()
        if not candidates:
            return found
        with self._write() as conn:  # GC may have taken some since
            for got in find(conn, candidates):
                conn.executemany(
                    "INSERT OR REPLACE INTO leases (block_id, holder, expires_at) VALUES (?, ?, ?)",
                    [(block, lease_holder, expires_at) for block in got],
                )
                found.update(got)
        return found

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
