"""Schema 12 of the SQLite catalog (schema.py): integer keys and manifest pages (FORMAT.md).

Blocks are keyed by an integer given in insertion order, so that one checkpoint's
blocks sit on few pages of the table and its indexes; packs likewise. Block ids are
found through an index of their first 8 bytes (a block's row holds the whole id). A checkpoint's
manifest is a few rows of manifest pages (``manifestpages.py``) instead of a row per
block, and ``tenant_refs`` says which tenants' checkpoints reference each block (what
the upload's "which blocks do you have" answers from, for that tenant alone).

``MIGRATION`` converts a schema-11 catalog in the migration's one transaction,
keeping every row's meaning; entries naming a block whose row is gone (only a
damaged catalog has them) keep its id in ``lost_blocks``, under a negative key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from itertools import groupby
from operator import itemgetter

from ckptstore.store.catalog.manifestpages import encode_pages

_LIVE_TRIGGERS = [
    """CREATE TRIGGER blocks_live_insert AFTER INSERT ON blocks BEGIN
        UPDATE packs SET live_bytes = live_bytes + NEW.header_len + NEW.stored_len
        WHERE pack_key = NEW.pack_key;
    END""",
    """CREATE TRIGGER blocks_live_delete AFTER DELETE ON blocks BEGIN
        UPDATE packs SET live_bytes = live_bytes - OLD.header_len - OLD.stored_len
        WHERE pack_key = OLD.pack_key;
    END""",
    """CREATE TRIGGER blocks_live_update AFTER UPDATE OF pack_key, header_len, stored_len
    ON blocks BEGIN
        UPDATE packs SET live_bytes = live_bytes - OLD.header_len - OLD.stored_len
        WHERE pack_key = OLD.pack_key;
        UPDATE packs SET live_bytes = live_bytes + NEW.header_len + NEW.stored_len
        WHERE pack_key = NEW.pack_key;
    END""",
    # a referenced block (or a base) never loses its row through the store's own code;
    # if it does (a damaged or hand-edited catalog), its id stays known to verify
    """CREATE TRIGGER blocks_lost AFTER DELETE ON blocks
    WHEN OLD.refcount > 0 OR EXISTS (SELECT 1 FROM blocks d WHERE d.base_key = OLD.block_key)
    BEGIN
        INSERT OR REPLACE INTO lost_blocks (block_key, block_id)
        VALUES (OLD.block_key, OLD.block_id);
    END""",
]

# Reads see the block columns the catalog API speaks of: the pack's id, the base's id.
_BLOCK_ROWS_VIEW = """CREATE VIEW block_rows AS SELECT
    b.block_key, b.block_id, p.pack_id, b.pack_offset, b.stored_len, b.raw_len, b.codec,
    CASE WHEN b.base_key IS NULL THEN NULL ELSE COALESCE(base.block_id,
        (SELECT l.block_id FROM lost_blocks l WHERE l.block_key = b.base_key)) END AS base_id,
    b.header_len, b.width, b.refcount, b.dead_since, b.pack_key, b.base_key
    FROM blocks b JOIN packs p ON p.pack_key = b.pack_key
    LEFT JOIN blocks base ON base.block_key = b.base_key"""

_BEFORE = [
    "DROP TRIGGER blocks_live_insert",
    "DROP TRIGGER blocks_live_delete",
    "DROP TRIGGER blocks_live_update",
    "DROP INDEX blocks_pack",
    "DROP INDEX blocks_base",
    "DROP INDEX blocks_dead",
    "DROP INDEX manifests_block",
    "ALTER TABLE packs RENAME TO packs_11",
    "ALTER TABLE blocks RENAME TO blocks_11",
    """CREATE TABLE packs (
        pack_key INTEGER PRIMARY KEY AUTOINCREMENT,
        pack_id TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        live_bytes INTEGER NOT NULL DEFAULT 0)""",
    """INSERT INTO packs (pack_id, size, created_at, live_bytes)
        SELECT pack_id, size, created_at, live_bytes FROM packs_11 ORDER BY created_at, pack_id""",
    # packs that block rows name without a pack row (test catalogs of early schemas)
    """INSERT INTO packs (pack_id, size, created_at, live_bytes)
        SELECT pack_id, MAX(pack_offset + header_len + stored_len), 0,
            SUM(header_len + stored_len)
        FROM blocks_11 WHERE pack_id NOT IN (SELECT pack_id FROM packs)
        GROUP BY pack_id ORDER BY pack_id""",
    """CREATE TABLE blocks (
        block_key INTEGER PRIMARY KEY AUTOINCREMENT,
        block_id BLOB NOT NULL,
        pack_key INTEGER NOT NULL,
        pack_offset INTEGER NOT NULL,
        stored_len INTEGER NOT NULL,
        raw_len INTEGER NOT NULL,
        codec INTEGER NOT NULL,
        base_key INTEGER,
        refcount INTEGER NOT NULL DEFAULT 0,
        dead_since REAL,
        header_len INTEGER NOT NULL,
        width INTEGER)""",
    """INSERT INTO blocks (block_id, pack_key, pack_offset, stored_len, raw_len, codec,
            refcount, dead_since, header_len, width)
        SELECT b.block_id, p.pack_key, b.pack_offset, b.stored_len, b.raw_len, b.codec,
            b.refcount, b.dead_since, b.header_len, b.width
        FROM blocks_11 b JOIN packs p ON p.pack_id = b.pack_id
        ORDER BY p.pack_key, b.pack_offset, b.block_id""",
    # whole ids, for the joins below only (blocks_id, made at the end, holds prefixes)
    "CREATE UNIQUE INDEX blocks_migrating ON blocks (block_id)",
    "CREATE TABLE lost_blocks (block_key INTEGER PRIMARY KEY, block_id BLOB NOT NULL)",
    """INSERT INTO lost_blocks (block_key, block_id)
        SELECT -ROW_NUMBER() OVER (ORDER BY id), id FROM (
            SELECT block_id AS id FROM manifests
            UNION SELECT base_id FROM blocks_11 WHERE base_id IS NOT NULL)
        WHERE id NOT IN (SELECT block_id FROM blocks)""",
    """UPDATE blocks SET base_key = (
            SELECT COALESCE(n.block_key, l.block_key) FROM blocks_11 o
            LEFT JOIN blocks n ON n.block_id = o.base_id
            LEFT JOIN lost_blocks l ON l.block_id = o.base_id
            WHERE o.block_id = blocks.block_id)
        WHERE block_id IN (SELECT block_id FROM blocks_11 WHERE base_id IS NOT NULL)""",
    """CREATE TABLE tenant_refs (
        block_key INTEGER NOT NULL,
        tenant_id TEXT NOT NULL,
        refs INTEGER NOT NULL,
        PRIMARY KEY (block_key, tenant_id)) WITHOUT ROWID""",
    """INSERT INTO tenant_refs (block_key, tenant_id, refs)
        SELECT n.block_key, c.tenant_id, COUNT(*) FROM manifests m
        JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id
        JOIN blocks n ON n.block_id = m.block_id
        GROUP BY n.block_key, c.tenant_id""",
    """CREATE TABLE manifest_pages (
        checkpoint_id TEXT NOT NULL,
        page INTEGER NOT NULL,
        entries BLOB NOT NULL,
        PRIMARY KEY (checkpoint_id, page))""",
]

_AFTER = [
    "DROP INDEX blocks_migrating",
    # the first 8 bytes of each id: a lookup by id names them (sqlite/rows.py, id_is)
    "CREATE INDEX blocks_id ON blocks (substr(block_id, 1, 8))",
    # rows from before schema 4 whose width is still to be read: none once read
    "CREATE INDEX blocks_unknown_width ON blocks (block_id) WHERE width = -1",
    "DROP TABLE manifests",
    "DROP TABLE blocks_11",
    "DROP TABLE packs_11",
    "CREATE INDEX blocks_pack ON blocks (pack_key, pack_offset)",
    "CREATE INDEX blocks_base ON blocks (base_key) WHERE base_key IS NOT NULL",
    "CREATE INDEX blocks_dead ON blocks (dead_since) WHERE refcount = 0",
    *_LIVE_TRIGGERS,
    _BLOCK_ROWS_VIEW,
]


def _convert_manifests(conn: sqlite3.Connection) -> None:
    """Every checkpoint's manifest rows as manifest pages, in ``seq`` order."""
    found = conn.execute(
        "SELECT m.checkpoint_id, COALESCE(n.block_key, l.block_key), m.logical_offset, m.slot"
        " FROM manifests m LEFT JOIN blocks n ON n.block_id = m.block_id"
        " LEFT JOIN lost_blocks l ON l.block_id = m.block_id"
        " ORDER BY m.checkpoint_id, m.seq"
    )
    for checkpoint_id, entries in groupby(found, key=itemgetter(0)):
        rows = list(entries)
        pages = encode_pages(
            [row[1] for row in rows], [row[2] for row in rows], [row[3] for row in rows]
        )
        conn.executemany(
            "INSERT INTO manifest_pages (checkpoint_id, page, entries) VALUES (?, ?, ?)",
            [(checkpoint_id, page, data) for page, data in pages],
        )


Step = str | Callable[[sqlite3.Connection], None]

MIGRATION: list[Step] = [*_BEFORE, _convert_manifests, *_AFTER]
