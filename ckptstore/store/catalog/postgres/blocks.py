"""The block index in PostgreSQL: packs and the blocks whose entries they hold."""

from __future__ import annotations

from collections.abc import Iterator

from ckptstore.errors import MissingBlockError
from ckptstore.store.catalog.base import BlockIndex
from ckptstore.store.catalog.postgres import rows
from ckptstore.store.catalog.postgres.database import Connection, PostgresDatabase, retried
from ckptstore.store.catalog.postgres.rows import BLOCK_ARRAY_TYPES, BLOCK_COLUMNS
from ckptstore.store.catalog.records import BlockRecord

# A pack's new block rows (schema 7): the values of BLOCK_COLUMNS as arrays, the pack
# and the base given by key, keys handed out in the order of the arrays; each new
# block unreferenced from the time given.
_INSERT_BLOCKS = (
    "WITH added AS (INSERT INTO blocks (block_id, pack_key, pack_offset, stored_len, raw_len,"
    " codec, base_key, header_len, width)"
    " SELECT v.id, %s, v.off, v.stored, v.raw, v.codec, y.block_key, v.hl, v.w"
    " FROM unnest(" + ", ".join(f"%s::{t}" for t in BLOCK_ARRAY_TYPES) + ") WITH ORDINALITY"
    " AS v(id, pack, off, stored, raw, codec, base, hl, w, n)"
    " LEFT JOIN blocks y ON y.block_id = v.base ORDER BY v.n ON CONFLICT (block_id) DO NOTHING"
    " RETURNING block_key)"
    " INSERT INTO unreferenced_blocks (block_key, dead_since) SELECT block_key, %s FROM added"
)


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


def insert_order(blocks: list[BlockRecord], present: set[bytes]) -> list[list[BlockRecord]]:
    """The new rows of ``blocks`` in turns, each a statement: whole blocks and deltas
    on blocks already ``present`` first (in the pack's order, which their keys then
    follow), then deltas on the blocks of the turn before, so that every base has its
    key when its deltas are inserted. MissingBlockError if a delta's base is nowhere."""
    ids = {b.block_id for b in blocks}
    turns: list[list[BlockRecord]] = []
    placed = set(present)
    waiting = [b for b in blocks if b.block_id not in present]
    while waiting:
        turn = [b for b in waiting if b.base_id is None or b.base_id in placed]
        if not turn:
            gone = {b.base_id for b in waiting if b.base_id is not None and b.base_id not in ids}
            raise MissingBlockError(sorted(base.hex() for base in gone))
        turns.append(turn)
        placed |= {b.block_id for b in turn}
        waiting = [b for b in waiting if b.block_id not in placed]
    return turns


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
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO packs (pack_id, size, created_at) VALUES (%s, %s, %s)"
                " RETURNING pack_key",
                (pack_id, size, now),
            ).fetchone()
            assert row is not None
            # The blocks present already, and the bases of new deltas, are held until
            # the leases commit: GC cannot remove them in between.
            bases = [b.base_id for b in blocks if b.base_id is not None]
            present = set(hold_blocks(conn, [b.block_id for b in blocks] + bases))
            added = 0
            for turn in insert_order(blocks, present):
                added += conn.execute(
                    _INSERT_BLOCKS, (row[0], *rows.block_arrays(turn), now)
                ).rowcount
            lease(conn, sorted({b.block_id for b in blocks}), lease_holder, lease_expires_at)
            return added

    def get_block(self, block_id: bytes) -> BlockRecord | None:
        row = self._one(f"SELECT {BLOCK_COLUMNS} FROM block_rows WHERE block_id = %s", (block_id,))
        return rows.block(row) if row else None

    def get_blocks(self, block_ids: list[bytes]) -> dict[bytes, BlockRecord]:
        return {r.block_id: r for r in self._blocks_where("block_id = ANY(%s)", block_ids)}

    def unreferenced(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where(
            "block_id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM tenant_refs t"
            " WHERE t.block_key = block_rows.block_key)",
            block_ids,
        )

    def deltas_on(self, block_ids: list[bytes]) -> list[BlockRecord]:
        return self._blocks_where(
            "base_key IN (SELECT y.block_key FROM blocks y WHERE y.block_id = ANY(%s))", block_ids
        )

    def new_to_tenant(self, tenant_id: str, block_ids: list[bytes]) -> list[BlockRecord]:
        # tenant_refs (schema 7): the tenant's own references, whoever else has the block
        return self._blocks_where(
            "block_id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM tenant_refs t"
            " WHERE t.block_key = block_rows.block_key AND t.tenant_id = %s)",
            block_ids,
            tenant_id,
        )

    def _blocks_where(
        self, condition: str, block_ids: list[bytes], *after: object
    ) -> list[BlockRecord]:
        """The block rows matching ``condition``, whose first parameter is the ids (as
        one array, distinct); ``after``: the values of the parameters that follow."""
        found = self._all(
            f"SELECT {BLOCK_COLUMNS} FROM block_rows WHERE {condition}",
            (list(set(block_ids)), *after),
        )
        return [rows.block(row) for row in found]

    def blocks_in_pack(self, pack_id: str) -> list[BlockRecord]:
        found = self._all(
            f"SELECT {BLOCK_COLUMNS} FROM block_rows"
            " WHERE pack_key = (SELECT pack_key FROM packs WHERE pack_id = %s)"
            " ORDER BY pack_offset",
            (pack_id,),
        )
        return [rows.block(row) for row in found]

    def iter_blocks(self) -> Iterator[BlockRecord]:
        # a page at a time, each read whole, after the last row of the one before: memory
        # stays bounded and no connection is held between pages
        select = f"SELECT {BLOCK_COLUMNS}, pack_key, block_key FROM block_rows"
        order = "ORDER BY pack_key, pack_offset, block_key LIMIT %s"
        page = self._all(f"{select} {order}", (ITER_PAGE,))
        while page:
            yield from (rows.block(row[:-2]) for row in page)
            if len(page) < ITER_PAGE:
                return
            last = page[-1]
            page = self._all(
                f"{select} WHERE (pack_key, pack_offset, block_key) > (%s, %s, %s) {order}",
                (last[-2], last[2], last[-1], ITER_PAGE),
            )
