"""The block index in SQLite: packs and the blocks whose entries they hold."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ckptstore.errors import MissingBlockError
from ckptstore.store.catalog.base import BlockIndex
from ckptstore.store.catalog.records import BlockRecord
from ckptstore.store.catalog.sqlite import manifests, rows
from ckptstore.store.catalog.sqlite.database import SQLiteDatabase, batches
from ckptstore.store.catalog.sqlite.rows import BLOCK_COLUMNS

ITER_PAGE = 10_000  # block rows per query of iter_blocks


class SQLiteBlockIndex(SQLiteDatabase, BlockIndex):
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
            pack_key = insert_pack(conn, pack_id, size, now)
            present = manifests.block_keys(conn, (b.block_id for b in blocks))
            fresh: dict[bytes, BlockRecord] = {}
            for b in blocks:  # a block already stored, or twice in the pack: its first entry
                if b.block_id not in present:
                    fresh.setdefault(b.block_id, b)
            conn.executemany(
                "INSERT INTO blocks (block_id, pack_key, pack_offset, stored_len,"
                " raw_len, codec, header_len, width, refcount, dead_since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                [
                    (
                        b.block_id,
                        pack_key,
                        b.offset,
                        b.stored_len,
                        b.raw_len,
                        b.codec,
                        b.header_len,
                        b.width,
                        now,
                    )
                    for b in fresh.values()
                ],
            )
            # after every row: a base may be in this very pack
            _point_at_bases(conn, [b for b in fresh.values() if b.base_id is not None])
            conn.executemany(
                "INSERT OR REPLACE INTO leases (block_id, holder, expires_at) VALUES (?, ?, ?)",
                [(b.block_id, lease_holder, lease_expires_at) for b in blocks],
            )
            return len(fresh)

    def get_block(self, block_id: bytes) -> BlockRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {BLOCK_COLUMNS} FROM block_rows WHERE {rows.id_is()}",
                rows.id_values([block_id]),
            )
            .fetchone()
        )
        return rows.block(row) if row else None

    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        return {r.block_id: r for r in self._blocks_where("{ids}", block_ids)}

    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("{ids} AND refcount = 0", block_ids)

    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where(
            "base_key IN (SELECT block_key FROM blocks WHERE {ids})", block_ids
        )

    def new_to_tenant(self, tenant_id: str, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where(
            "{ids} AND NOT EXISTS (SELECT 1 FROM tenant_refs t"
            " WHERE t.block_key = block_rows.block_key AND t.tenant_id = ?)",
            block_ids,
            tenant_id,
        )

    def _blocks_where(
        self, condition: str, block_ids: list[bytes], *after: object
    ) -> list[BlockRecord]:
        """The block rows matching ``condition``, whose ``{ids}`` stands for a match of the
        ids (distinct), asked for in batches; ``after``: the values of the parameters
        that follow."""
        out: list[BlockRecord] = []
        with self._read() as conn:
            for batch in batches(list(set(block_ids))):
                where = condition.format(ids=rows.ids_in(len(batch)))
                found = conn.execute(
                    f"SELECT {BLOCK_COLUMNS} FROM block_rows WHERE {where}",
                    (*rows.id_values(batch), *after),
                )
                out += [rows.block(row) for row in found.fetchall()]
        return out

    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        found = (
            self._conn()
            .execute(
                f"SELECT {BLOCK_COLUMNS} FROM block_rows WHERE pack_id = ? ORDER BY pack_offset",
                (pack_id,),
            )
            .fetchall()
        )
        return [rows.block(row) for row in found]

    def iter_blocks(self) -> Iterator[BlockRecord]:
        # a page at a time, each read whole, after the last row of the one before: memory
        # stays bounded and no statement stays open between pages
        conn = self._conn()
        query = (
            f"SELECT {BLOCK_COLUMNS}, pack_key, block_key FROM block_rows"
            " WHERE (pack_key, pack_offset, block_key) > (?, ?, ?)"
            " ORDER BY pack_key, pack_offset, block_key LIMIT ?"
        )
        after: tuple[int, int, int] = (-1, -1, -(2**62))
        while True:
            page = conn.execute(query, (*after, ITER_PAGE)).fetchall()
            yield from (rows.block(row[:-2]) for row in page)
            if len(page) < ITER_PAGE:
                return
            last = page[-1]
            after = (last[-2], last[2], last[-1])


def _point_at_bases(conn: sqlite3.Connection, deltas: list[BlockRecord]) -> None:
    """Set the base key of the rows just inserted for ``deltas``; MissingBlockError (to
    roll back) for a base not stored."""
    bases = {b.base_id for b in deltas if b.base_id is not None}
    keys = manifests.block_keys(conn, [*bases, *(b.block_id for b in deltas)])
    missing = {base.hex() for base in bases if base not in keys}
    if missing:
        raise MissingBlockError(sorted(missing))
    conn.executemany(
        "UPDATE blocks SET base_key = ? WHERE block_key = ?",
        [(keys[b.base_id], keys[b.block_id]) for b in deltas if b.base_id is not None],
    )


def insert_pack(conn: sqlite3.Connection, pack_id: str, size: int, now: float) -> int:
    """Record a pack; its key."""
    cursor = conn.execute(
        "INSERT INTO packs (pack_id, size, created_at) VALUES (?, ?, ?)", (pack_id, size, now)
    )
    key = cursor.lastrowid
    assert key is not None
    return key


def pack_key(conn: sqlite3.Connection, pack_id: str) -> int | None:
    """The key of a recorded pack, or None."""
    row = conn.execute("SELECT pack_key FROM packs WHERE pack_id = ?", (pack_id,)).fetchone()
    return None if row is None else int(row[0])
