"""Manifest pages in PostgreSQL: a checkpoint's manifest written as pages, read back,
and the block rows its entries name found by key (FORMAT.md, "Catalog").

Pages are ``manifestpages.py``'s bytes, in BYTEA; the block rows are read from the
``block_rows`` view a range of keys at a time, since a checkpoint's blocks mostly have
consecutive keys."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from ckptstore.store.catalog.manifestpages import (
    ManifestPage,
    decode_page,
    encode_pages,
    key_ranges,
)

# database.py's (which imports the schema, which imports this module)
Connection = psycopg.Connection[tuple[Any, ...]]

KEY_BYTES = 8  # a key whose block id nobody knows is named by its key, big-endian
SCAN_PAGES = 16  # pages per query when every manifest is read (memory stays bounded)


def page_rows(
    checkpoint_id: str, keys: Sequence[int], offsets: Sequence[int], slots: Sequence[str | None]
) -> tuple[str, list[int], list[bytes]]:
    """The parameters of INSERT_PAGES for a whole manifest."""
    numbers: list[int] = []
    entries: list[bytes] = []
    for page, data in encode_pages(keys, offsets, slots):
        numbers.append(page)
        entries.append(data)
    return checkpoint_id, numbers, entries


INSERT_PAGES = (
    "INSERT INTO manifest_pages (checkpoint_id, page, entries)"
    " SELECT %s, p, e FROM unnest(%s::int[], %s::bytea[]) AS v(p, e)"
)


def read_pages(conn: Connection, checkpoint_id: str) -> list[ManifestPage]:
    """The pages of the manifest stored under ``checkpoint_id``, in order."""
    found = conn.execute(
        "SELECT entries FROM manifest_pages WHERE checkpoint_id = %s ORDER BY page",
        (checkpoint_id,),
    ).fetchall()
    return [decode_page(row[0]) for row in found]


def page_batches(
    conn: Connection, condition: str = "TRUE", extra: str = ""
) -> Iterator[list[tuple[Any, ...]]]:
    """Every stored page as rows ``(checkpoint_id, page, entries, *extra columns)`` in
    (checkpoint, page) order, SCAN_PAGES at a time (memory stays bounded):
    ``condition`` filters on ``m`` (manifest_pages) and ``c`` (its checkpoint's row,
    if any), ``extra`` adds columns of them. Entries are decoded (a ManifestPage)."""
    after: tuple[str, int] = ("", -1)
    columns = f", {extra}" if extra else ""
    while True:
        found = conn.execute(
            f"SELECT m.checkpoint_id, m.page, m.entries{columns} FROM manifest_pages m"
            " LEFT JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id"
            f" WHERE (m.checkpoint_id, m.page) > (%s, %s) AND {condition}"
            " ORDER BY m.checkpoint_id, m.page LIMIT %s",
            (*after, SCAN_PAGES),
        ).fetchall()
        if found:
            yield [(row[0], row[1], decode_page(row[2]), *row[3:]) for row in found]
        if len(found) < SCAN_PAGES:
            return
        after = (found[-1][0], found[-1][1])


def rows_by_key(conn: Connection, keys: Sequence[int], columns: str) -> dict[int, tuple[Any, ...]]:
    """``columns`` of ``block_rows`` (aliased ``b``) for those of ``keys`` present, by
    key: one query over the ranges the keys fall in."""
    return _columns_by_key(conn, "block_rows", keys, columns)


def block_columns_by_key(
    conn: Connection, keys: Iterable[int], columns: str
) -> dict[int, tuple[Any, ...]]:
    """``columns`` of the ``blocks`` table (aliased ``b``) for those of ``keys`` whose
    row is there, by key."""
    return _columns_by_key(conn, "blocks", keys, columns)


def _columns_by_key(
    conn: Connection, table: str, keys: Iterable[int], columns: str
) -> dict[int, tuple[Any, ...]]:
    """``columns`` of ``table`` (aliased ``b``) for those of ``keys`` present, by key:
    one query over the ranges the keys fall in."""
    wanted = {key for key in keys if key > 0}
    ranges = list(key_ranges(wanted))
    if not ranges:
        return {}
    found = conn.execute(
        f"SELECT b.block_key, {columns} FROM unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi)"
        f" JOIN {table} b ON b.block_key BETWEEN r.lo AND r.hi",
        ([lo for lo, _ in ranges], [hi for _, hi in ranges]),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in found if row[0] in wanted}


def ids_of_keys(conn: Connection, keys: Sequence[int]) -> dict[int, bytes]:
    """The block id of each key: from its row, else from lost_blocks (a row that went
    while referenced), else the key itself as KEY_BYTES big-endian bytes."""
    wanted = sorted(set(keys))
    found = conn.execute(
        "SELECT block_key, block_id FROM blocks WHERE block_key = ANY(%s)"
        " UNION ALL SELECT block_key, block_id FROM lost_blocks WHERE block_key = ANY(%s)",
        (wanted, wanted),
    ).fetchall()
    ids = {row[0]: bytes(row[1]) for row in found}
    return {key: ids.get(key) or key.to_bytes(KEY_BYTES, "big", signed=True) for key in wanted}


def keys_of_ids(conn: Connection, block_ids: Sequence[bytes]) -> dict[bytes, int]:
    """The key of each of ``block_ids`` that has a block row."""
    found = conn.execute(
        "SELECT block_id, block_key FROM blocks WHERE block_id = ANY(%s)",
        (sorted(set(block_ids)),),
    ).fetchall()
    return {bytes(row[0]): row[1] for row in found}
