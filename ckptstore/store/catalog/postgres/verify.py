"""Verify's queries in PostgreSQL over manifest pages (schema 7): entries whose block
row is gone, entries whose span is not their block's length, and the checkpoints that
use given blocks.

Each reads every stored page in one snapshot, a few pages per query, and looks their
keys up a batch at a time: memory stays bounded by a batch, not by the store."""

from __future__ import annotations

from collections import defaultdict

from ckptstore.store.catalog.postgres.database import Connection, PostgresDatabase
from ckptstore.store.catalog.postgres.pages import block_columns_by_key, ids_of_keys, page_batches


class ManifestChecks(PostgresDatabase):
    def missing_manifest_blocks(self) -> list[tuple[str, bytes]]:
        gone: dict[str, set[int]] = defaultdict(set)  # by the checkpoint storing the pages
        with self._read() as conn:
            for batch in page_batches(conn):
                keys = {key for _, _, page in batch for key in page.keys}
                present = block_columns_by_key(conn, keys, "TRUE")
                for checkpoint_id, _, page in batch:
                    gone[checkpoint_id].update(key for key in page.keys if key not in present)
            found: set[tuple[str, bytes]] = set()
            for manifest_id, keys in gone.items():
                if not keys:
                    continue
                ids = ids_of_keys(conn, list(keys))
                for reader in _readers(conn, manifest_id):  # the owner and its best copies
                    found.update((reader, ids[key]) for key in keys)
        return sorted(found)

    def manifest_gaps(self) -> list[tuple[str, bytes, int, int]]:
        found: list[tuple[str, bytes, int, int]] = []
        # the entry before the page at hand: (checkpoint, key, offset, size of the checkpoint)
        held: tuple[str, int, int, int] | None = None
        lengths: dict[int, tuple[bytes, int]] = {}
        with self._read() as conn:
            for batch in page_batches(conn, "c.status = 'ready'", "c.size_bytes"):
                keys = {key for _, _, page, _ in batch for key in page.keys}
                rows = block_columns_by_key(conn, keys, "b.block_id, b.raw_len")
                known = {key: (bytes(row[0]), row[1]) for key, row in rows.items()}
                if held is not None and held[1] in lengths:
                    known[held[1]] = lengths[held[1]]
                lengths = known
                for checkpoint_id, _, page, size in batch:
                    for key, offset in zip(page.keys, page.offsets, strict=True):
                        if held is not None:
                            end = offset if held[0] == checkpoint_id else held[3]
                            found += _gap(held, end, lengths)
                        held = (checkpoint_id, key, offset, size)
            if held is not None:
                found += _gap(held, held[3], lengths)
        return sorted(found, key=lambda gap: (gap[0], gap[2]))

    def checkpoints_using(self, block_ids: list[bytes]) -> dict[bytes, list[str]]:
        result: dict[bytes, list[str]] = {block: [] for block in block_ids}
        with self._read() as conn:
            # each block's key (from its row, or lost_blocks), then every block stored as
            # a delta on it, however deep
            found = conn.execute(
                "WITH RECURSIVE roots(root, k) AS ("
                " SELECT block_id, block_key FROM blocks WHERE block_id = ANY(%s)"
                " UNION ALL SELECT block_id, block_key FROM lost_blocks WHERE block_id = ANY(%s))"
                " , dependents(root, k) AS (SELECT root, k FROM roots"
                " UNION SELECT d.root, b.block_key FROM blocks b"
                "  JOIN dependents d ON b.base_key = d.k)"
                " SELECT root, k FROM dependents",
                (list(set(block_ids)), list(set(block_ids))),
            ).fetchall()
            roots_of: dict[int, set[bytes]] = defaultdict(set)
            for root, key in found:
                roots_of[key].add(bytes(root))
            manifests: dict[bytes, set[str]] = defaultdict(set)
            if roots_of:
                for batch in page_batches(conn):
                    for checkpoint_id, _, page in batch:
                        for key in set(page.keys) & roots_of.keys():
                            for root in roots_of[key]:
                                manifests[root].add(checkpoint_id)
            for root, manifest_ids in manifests.items():
                users = set(manifest_ids)
                for manifest_id in manifest_ids:
                    users.update(_readers(conn, manifest_id))
                result[root] = sorted(users)
        return result


def _gap(
    entry: tuple[str, int, int, int], end: int, lengths: dict[int, tuple[bytes, int]]
) -> list[tuple[str, bytes, int, int]]:
    """The finding of an entry whose span (to ``end``) is not its block's raw length
    (none for an entry whose block row is gone: missing_manifest_blocks names it)."""
    checkpoint_id, key, offset, _ = entry
    if key not in lengths:
        return []
    block_id, raw_len = lengths[key]
    span = end - offset
    return [] if span == raw_len else [(checkpoint_id, block_id, offset, span)]


def _readers(conn: Connection, manifest_id: str) -> list[str]:
    """The checkpoints that read the pages stored under ``manifest_id``: it, if it is
    there, and its best copies."""
    found = conn.execute(
        "SELECT checkpoint_id FROM checkpoints WHERE checkpoint_id = %s OR manifest_of = %s",
        (manifest_id, manifest_id),
    ).fetchall()
    return [row[0] for row in found]
