"""The block index in PostgreSQL: packs and the blocks whose entries they hold."""

from __future__ import annotations

from collections.abc import Iterator

from ckptstore.store.catalog.base import BlockIndex
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.database import Connection, PostgresDatabase, retried
from ckptstore.store.catalog.postgres.rows import BLOCK_ARRAY_TYPES, BLOCK_COLUMNS
from ckptstore.store.catalog.records import BlockRecord

_UNNEST_BLOCKS = "unnest(" + ", ".join(f"%s::{t}" for t in BLOCK_ARRAY_TYPES) + ")"


def hold_blocks(conn: Connection, block_ids: list[bytes], mode: str = "SHARE") -> list[bytes]:
    """Lock the rows of those of ``block_ids`` present (in id order, so that two
    transactions never wait on each other in a cycle); the ids found. A GC that wants
    to delete one of them waits until this transaction ends, then sees what it did."""
    found = conn.execute(
        f"SELECT block_id FROM blocks WHERE block_id = ANY(%s) ORDER BY block_id FOR {mode}",
        (sorted(set(block_ids)),),
    ).fetchall()
    return [row[0] for row in found]


def lease(conn: Connection, block_ids: list[bytes], holder: str, expires_at: float) -> None:
    """Lease ``block_ids`` (distinct) to ``holder`` until ``expires_at``."""
    conn.execute(
        "INSERT INTO leases (block_id, holder, expires_at)"
        " SELECT id, %s, %s FROM unnest(%s::bytea[]) AS id"
        " ON CONFLICT (block_id, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        (holder, expires_at, block_ids),
    )


ITER_PAGE = 10_000  # block rows per query of iter_blocks


class PostgresBlockIndex(PostgresDatabase, BlockIndex):
    @retried
    def add_pack(
        self,
        pack_id: str,
        size: int,
        blocks: list[BlockRecord],
        now: float,
        lease_holder: str,
        lease_expires_at: float,
    ) -> int:
        ordered = sorted(blocks, key=lambda b: b.block_id)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (%s, %s, %s)",
                (pack_id, size, now),
            )
            # The blocks present already, and the bases of new deltas, are held until
            # the leases commit: GC cannot remove them in between.
            bases = [b.base_id for b in blocks if b.base_id is not None]
            hold_blocks(conn, [b.block_id for b in blocks] + bases)
            added = conn.execute(
                f"INSERT INTO blocks ({BLOCK_COLUMNS}, refcount, dead_since)"
                f" SELECT *, 0, %s FROM {_UNNEST_BLOCKS} ON CONFLICT (block_id) DO NOTHING",
                (now, *rows.block_arrays(ordered)),
            ).rowcount
            lease(conn, sorted({b.block_id for b in blocks}), lease_holder, lease_expires_at)
            return added

    def get_block(self, block_id: bytes) -> BlockRecord | None:
        row = self._one(f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE block_id = %s", (block_id,))
        return rows.block(row) if row else None

    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        return {r.block_id: r for r in self._blocks_where("block_id = ANY(%s)", block_ids)}

    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("block_id = ANY(%s) AND refcount = 0", block_ids)

    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where("base_id = ANY(%s)", block_ids)

    def new_to_tenant(self, tenant_id: str, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where(
            "block_id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM manifests m"
            " JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            " WHERE m.block_id = blocks.block_id AND c.tenant_id = %s)",
            block_ids,
            tenant_id,
        )

    def _blocks_where(
        self, condition: str, block_ids: list[bytes], *after: object
    ) -> list[BlockRecord]:
        """The block rows matching ``condition``, whose first parameter is the ids (as
        one array, distinct); ``after``: the values of the parameters that follow."""
        found = self._all(
            f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE {condition}",
            (list(set(block_ids)), *after),
        )
        return [rows.block(row) for row in found]

    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        found = self._all(
            f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE pack_id = %s ORDER BY pack_offset",
            (pack_id,),
        )
        return [rows.block(row) for row in found]

    def iter_blocks(self) -> Iterator[BlockRecord]:
        # a page at a time, each read whole, after the last row of the one before: memory
        # stays bounded and no connection is held between pages
        order = "ORDER BY pack_id, pack_offset, block_id LIMIT %s"
        page = self._all(f"SELECT {BLOCK_COLUMNS} FROM blocks {order}", (ITER_PAGE,))
        while page:
            yield from (rows.block(row) for row in page)
            if len(page) < ITER_PAGE:
                return
            last = page[-1]
            page = self._all(
                f"SELECT {BLOCK_COLUMNS} FROM blocks"
                f" WHERE (pack_id, pack_offset, block_id) > (%s, %s, %s) {order}",
                (last[1], last[2], last[0], ITER_PAGE),
            )
