"""Rebases in SQLite: pending rebases, and blocks re-pointed at re-encoded entries."""

from __future__ import annotations

import sqlite3

from ckptstore.store.catalog.base import Rebases
from ckptstore.store.catalog.records import BlockRecord
from ckptstore.store.catalog.sqlite import manifests, rows
from ckptstore.store.catalog.sqlite.blocks import insert_pack
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase
from ckptstore.store.catalog.sqlite.rows import block_columns


class SQLiteRebases(SQLiteDatabase, Rebases):
    def pending_rebases(self) -> list[tuple[str, str]]:
        found = (
            self._conn()
            .execute("SELECT checkpoint_id, parent_id FROM rebases ORDER BY rowid")
            .fetchall()
        )
        return [(row[0], row[1]) for row in found]

    def finish_rebase(self, checkpoint_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM rebases WHERE checkpoint_id = ?", (checkpoint_id,))

    def claim_rebase(
        self, owner: str, until: float, now: float, checkpoint_id: str | None = None
    ) -> tuple[str, str] | None:
        free = "(claimed_until IS NULL OR claimed_until < ?)"
        which, params = ("checkpoint_id = ?", (checkpoint_id,)) if checkpoint_id else ("1", ())
        with self._write() as conn:  # SQLite's one writer: the select and update are one step
            row = conn.execute(
                f"SELECT checkpoint_id, parent_id FROM rebases WHERE {which} AND {free}"
                " ORDER BY rowid LIMIT 1",
                (*params, now),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE rebases SET claimed_by = ?, claimed_until = ? WHERE checkpoint_id = ?",
                (owner, until, row[0]),
            )
            return row[0], row[1]

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
            new_pack_key = insert_pack(conn, pack_id, size, now)
            named = {old.block_id for old, _ in moves}
            named |= {b.base_id for pair in moves for b in pair if b.base_id is not None}
            keys = manifests.block_keys(conn, named)
            for old, new in moves:
                key = keys.get(old.block_id)
                if key is None or (
                    max_height is not None
                    and new.base_id is not None
                    and _height(conn, key, max_height) >= max_height
                ):
                    continue
                old_base = None if old.base_id is None else keys.get(old.base_id, 0)
                new_base = None if new.base_id is None else keys.get(new.base_id, 0)
                changed = conn.execute(
                    "UPDATE blocks SET pack_key = ?, pack_offset = ?, header_len = ?,"
                    " stored_len = ?, codec = ?, base_key = ?"
                    " WHERE block_key = ? AND pack_offset = ?"
                    " AND pack_key = (SELECT pack_key FROM packs WHERE pack_id = ?)"
                    " AND base_key IS ?"
                    " AND (? IS NULL OR EXISTS"
                    " (SELECT 1 FROM blocks y WHERE y.block_key = ? AND y.base_key IS NULL))",
                    (
                        new_pack_key,
                        new.offset,
                        new.header_len,
                        new.stored_len,
                        new.codec,
                        new_base,
                        key,
                        old.offset,
                        old.pack_id,
                        old_base,
                        new_base,
                        new_base,
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

    def orphaned_deltas(self, dead_before: float) -> list[BlockRecord]:
        found = (
            self._conn()
            .execute(
                f"SELECT {block_columns('x')} FROM block_rows x JOIN blocks y"
                " ON y.block_key = x.base_key"
                " WHERE y.refcount = 0 AND y.dead_since <= ?"
                " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.block_id = y.block_id)"
                " AND (x.refcount > 0"
                " OR EXISTS (SELECT 1 FROM leases l WHERE l.block_id = x.block_id))",
                (dead_before,),
            )
            .fetchall()
        )
        return [rows.block(row) for row in found]


def _height(conn: sqlite3.Connection, block_key: int, limit: int) -> int:
    """How many deltas deep blocks hang below block ``block_key`` (``limit``: at least
    that)."""
    row = conn.execute(
        "WITH RECURSIVE below(block_key, depth) AS ("
        " SELECT block_key, 1 FROM blocks WHERE base_key = ?"
        " UNION ALL SELECT b.block_key, below.depth + 1 FROM blocks b"
        " JOIN below ON b.base_key = below.block_key WHERE below.depth < ?)"
        " SELECT COALESCE(MAX(depth), 0) FROM below",
        (block_key, limit),
    ).fetchone()
    height: int = row[0]
    return height
