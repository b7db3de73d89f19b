"""Manifests and references in SQLite: manifest pages, block keys, per-tenant refcounts.

A checkpoint's manifest is stored as manifest pages (``manifestpages.py``) naming
blocks by ``block_key``; these functions turn block ids into keys and back, read and
write the pages, and apply a manifest's reference counts to ``blocks.refcount`` and
``tenant_refs`` as a few statements over a staged set (schema 12, FORMAT.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ckptstore.errors import MissingBlockError
from ckptstore.store.catalog.manifestpages import decode_page, encode_pages, key_ranges
from ckptstore.store.catalog.records import BlockRecord
from ckptstore.store.catalog.sqlite import rows
from ckptstore.store.catalog.sqlite.database import batches
from ckptstore.store.catalog.sqlite.rows import BLOCK_COLUMNS


@dataclass(frozen=True, slots=True)
class Manifest:
    """A checkpoint's entries, in order."""

    keys: list[int]
    offsets: list[int]
    slots: list[str | None]


def block_keys(conn: sqlite3.Connection, block_ids: Iterable[bytes]) -> dict[bytes, int]:
    """The key of each of ``block_ids`` that has a block row."""
    found: dict[bytes, int] = {}
    for batch in batches(sorted(set(block_ids))):
        query = f"SELECT block_id, block_key FROM blocks WHERE {rows.ids_in(len(batch))}"
        found.update(conn.execute(query, rows.id_values(batch)).fetchall())
    return found


def blocks_by_key(conn: sqlite3.Connection, keys: Iterable[int]) -> dict[int, BlockRecord]:
    """The records of the blocks whose keys are among ``keys`` (those with a row):
    ranges of nearby keys are read with one query each, scattered keys in batches."""
    wanted = set(keys)
    found: dict[int, BlockRecord] = {}
    select = f"SELECT block_key, {BLOCK_COLUMNS} FROM block_rows WHERE "
    singles: list[int] = []
    for low, high in key_ranges(wanted):
        if low == high:
            singles.append(low)
            continue
        for row in conn.execute(select + "block_key BETWEEN ? AND ?", (low, high)):
            if row[0] in wanted:
                found[row[0]] = rows.block(row[1:])
    for batch in batches(singles):
        marks = ",".join("?" * len(batch))
        for row in conn.execute(select + f"block_key IN ({marks})", batch):
            found[row[0]] = rows.block(row[1:])
    return found


def existing_keys(conn: sqlite3.Connection, keys: Iterable[int]) -> set[int]:
    """Those of ``keys`` that have a block row."""
    wanted = set(keys)
    found: set[int] = set()
    for low, high in key_ranges(wanted):
        query = "SELECT block_key FROM blocks WHERE block_key BETWEEN ? AND ?"
        found.update(row[0] for row in conn.execute(query, (low, high)) if row[0] in wanted)
    return found


def lost_ids(conn: sqlite3.Connection, keys: Iterable[int]) -> dict[int, bytes]:
    """The block id of each of ``keys`` whose row is gone: as ``lost_blocks`` recorded it,
    else (never recorded) the key itself as 8 big-endian bytes."""
    out: dict[int, bytes] = {}
    for batch in batches(sorted(set(keys))):
        marks = ",".join("?" * len(batch))
        query = f"SELECT block_key, block_id FROM lost_blocks WHERE block_key IN ({marks})"
        out.update(conn.execute(query, batch).fetchall())
        for key in batch:
            out.setdefault(key, key.to_bytes(8, "big", signed=True))
    return out


# -- pages ----------------------------------------------------------------------
def write_pages(
    conn: sqlite3.Connection, checkpoint_id: str, pages: list[tuple[int, bytes]]
) -> None:
    conn.executemany(
        "INSERT INTO manifest_pages (checkpoint_id, page, entries) VALUES (?, ?, ?)",
        [(checkpoint_id, page, data) for page, data in pages],
    )


def encode_manifest(
    keys: list[int], offsets: list[int], slots: list[str | None]
) -> list[tuple[int, bytes]]:
    """The pages of a manifest, to write inside the commit's transaction."""
    return list(encode_pages(keys, offsets, slots))


def read_manifest(conn: sqlite3.Connection, manifest_key: str) -> Manifest:
    """Every entry of the manifest stored under ``manifest_key``, in order."""
    manifest = Manifest([], [], [])
    for page in iter_pages(conn, manifest_key):
        manifest.keys.extend(page.keys)
        manifest.offsets.extend(page.offsets)
        manifest.slots.extend(page.slots)
    return manifest


def iter_pages(conn: sqlite3.Connection, manifest_key: str) -> Iterator[Manifest]:
    """The manifest's pages, decoded one at a time, in order."""
    found = conn.execute(
        "SELECT entries FROM manifest_pages WHERE checkpoint_id = ? ORDER BY page",
        (manifest_key,),
    ).fetchall()
    for (data,) in found:
        page = decode_page(data)
        yield Manifest(page.keys, page.offsets, page.slots)


def all_pages(conn: sqlite3.Connection) -> Iterator[tuple[str, Manifest]]:
    """``(manifest key, page)`` for every page of the catalog, by manifest and page; one
    page in memory at a time (each read after the one before, by key)."""
    after: tuple[str, int] = ("", -1)
    query = (
        "SELECT checkpoint_id, page, entries FROM manifest_pages"
        " WHERE (checkpoint_id, page) > (?, ?) ORDER BY checkpoint_id, page LIMIT 16"
    )
    while True:
        found = conn.execute(query, after).fetchall()
        for checkpoint_id, number, data in found:
            page = decode_page(data)
            yield checkpoint_id, Manifest(page.keys, page.offsets, page.slots)
            after = (checkpoint_id, number)
        if len(found) < 16:
            return


# -- references -----------------------------------------------------------------
def add_references(
    conn: sqlite3.Connection, tenant_id: str, counts: dict[int, int], ids: dict[int, bytes]
) -> None:
    """Count ``counts`` (block key: entries) as references of ``tenant_id``'s checkpoint;
    MissingBlockError (to roll back) naming the blocks (``ids``: by key) whose rows
    went since their keys were read."""
    stage(conn, counts)
    if apply(conn, tenant_id, None) != len(counts):
        gone = set(counts) - existing_keys(conn, counts)
        raise MissingBlockError(sorted(ids[key].hex() for key in gone))


def drop_references(
    conn: sqlite3.Connection, tenant_id: str, manifest_key: str, now: float
) -> None:
    """Take back the references of the manifest under ``manifest_key``; a block left
    with none is dead from ``now``."""
    counts: dict[int, int] = {}
    for page in iter_pages(conn, manifest_key):
        for key in page.keys:
            counts[key] = counts.get(key, 0) - 1
    stage(conn, counts)
    apply(conn, tenant_id, now)


def stage(conn: sqlite3.Connection, counts: dict[int, int]) -> None:
    """``temp.ref_changes`` (block key, refcount change) holding ``counts``, private to
    the connection, in key order."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ref_changes"
        " (block_key INTEGER PRIMARY KEY, n INTEGER NOT NULL)"
    )
    conn.execute("DELETE FROM temp.ref_changes")
    conn.executemany(
        "INSERT INTO temp.ref_changes (block_key, n) VALUES (?, ?)", sorted(counts.items())
    )


def apply(conn: sqlite3.Connection, tenant_id: str, now: float | None) -> int:
    """Apply the staged changes to the blocks' refcounts (a block left with none is dead
    from ``now``) and to ``tenant_id``'s references, each in one statement visiting the
    blocks in key order; how many block rows changed."""
    changed: int = conn.execute(
        "UPDATE blocks SET refcount = refcount + (SELECT n FROM temp.ref_changes c"
        "  WHERE c.block_key = blocks.block_key),"
        " dead_since = CASE WHEN refcount + (SELECT n FROM temp.ref_changes c"
        "  WHERE c.block_key = blocks.block_key) <= 0 THEN ? ELSE NULL END"
        " WHERE block_key IN (SELECT block_key FROM temp.ref_changes)",
        (now,),
    ).rowcount
    conn.execute(
        "INSERT INTO tenant_refs (block_key, tenant_id, refs)"
        " SELECT block_key, ?, n FROM temp.ref_changes WHERE true"
        " ON CONFLICT (block_key, tenant_id) DO UPDATE SET refs = refs + excluded.refs",
        (tenant_id,),
    )
    conn.execute(
        "DELETE FROM tenant_refs WHERE tenant_id = ? AND refs <= 0 AND block_key IN"
        " (SELECT block_key FROM temp.ref_changes WHERE n < 0)",
        (tenant_id,),
    )
    conn.execute("DELETE FROM temp.ref_changes")
    return changed
