"""The block index in SQLite: packs and the blocks whose entries they hold."""

from __future__ import annotations

from collections.abc import Iterator

from ckptstore.store.catalog.base import BlockIndex
from ckptstore.store.catalog.records import BlockRecord
from ckptstore.store.catalog.sqlite import rows
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
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (?, ?, ?)",
                (pack_id, size, now),
            )
            added: int = conn.executemany(
                f"INSERT OR IGNORE INTO blocks ({BLOCK_COLUMNS}, refcount, dead_since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                [(*rows.block_values(b), now) for b in blocks],
            ).rowcount  # summed over the rows, not counting what the triggers change
            conn.executemany(
                "INSERT OR REPLACE INTO leases (block_id, holder, expires_at) VALUES (?, ?, ?)",
                [(b.block_id, lease_holder, lease_expires_at) for b in blocks],
            )
            return added

    def get_block(self, block_id: bytes) -> BlockRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE block_id = ?", (block_id,))
            .fetchone()
        )
        return rows.block(row) if row else None

    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        return {r.block_id: r for r in self._blocks_where("block_id IN ({})", block_ids)}

    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("block_id IN ({}) AND refcount = 0", block_ids)

    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("base_id IN ({})", block_ids)

    def new_to_tenant(self, tenant_id: str, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where(
            "block_id IN ({}) AND NOT EXISTS (SELECT 1 FROM manifests m"
            " JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            " WHERE m.block_id = blocks.block_id AND c.tenant_id = ?)",
            block_ids,
            tenant_id,
        )

    def _blocks_where(
        self, condition: str, block_ids: list[bytes], *after: object
    ) -> list[BlockRecord]:
        """The block rows matching ``condition``, whose ``{}`` stands for the ids (distinct),
        asked for in batches; ``after``: the values of the parameters that follow."""
        out: list[BlockRecord] = []
        with self._read() as conn:
            for batch in batches(list(set(block_ids))):
                where = condition.format(",".join("?" * len(batch)))
                found = conn.execute(
                    f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE {where}", (*batch, *after)
                )
                out += [rows.block(row) for row in found.fetchall()]
        return out

    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        found = (
            self._conn()
            .execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE pack_id = ? ORDER BY pack_offset",
                (pack_id,),
            )
            .fetchall()
        )
        return [rows.block(row) for row in found]

    def iter_blocks(self) -> Iterator[BlockRecord]:
        # a page at a time, each read whole, after the last row of the one before: memory
        # stays bounded and no statement stays open between pages
        conn = self._conn()
        page = conn.execute(
            f"SELECT {BLOCK_COLUMNS} FROM blocks ORDER BY pack_id, pack_offset, block_id LIMIT ?",
            (ITER_PAGE,),
        ).fetchall()
        while page:
            yield from (rows.block(row) for row in page)
            if len(page) < ITER_PAGE:
                return
            last = page[-1]
            page = conn.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks"
                " WHERE (pack_id, pack_offset, block_id) > (?, ?, ?)"
                " ORDER BY pack_id, pack_offset, block_id LIMIT ?",
                (last[1], last[2], last[0], ITER_PAGE),
            ).fetchall()
