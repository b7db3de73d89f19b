"""Schema 7 of the PostgreSQL catalog (schema.py): integer keys and manifest pages, the
SQLite catalog's schema 12 in PostgreSQL's types (FORMAT.md).

Blocks and packs are keyed by identity columns given in insertion order (never
reused); a block names its pack and base by key. A checkpoint's manifest is a few
rows of manifest pages (``manifestpages.py``) instead of a row per block, and
``tenant_refs`` counts each block's references per tenant (what an upload's "which
blocks do you have" answers from). Reads see the columns of the catalog API through
the view ``block_rows``.

Unlike SQLite's, a block row here holds no refcount: a block is referenced while it
has a ``tenant_refs`` row, and one without any is in ``unreferenced_blocks`` (since
when: what GC's grace period counts from). An update of a row in PostgreSQL writes a
new version of it and of every index entry pointing at it, so a refcount in the row
would rewrite every block of a checkpoint, and its entry in the index of block ids (at
random places), at each commit and delete; this way block rows are only written when
they come, move or go.

``MIGRATION`` converts a schema-6 catalog in the migration's one transaction, keeping
every row's meaning; entries naming a block whose row is gone (only a damaged catalog
has them) keep its id in ``lost_blocks``, under a negative key.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from operator import itemgetter
from typing import Any

import psycopg

from ckptstore.store.catalog.postgres.pages import INSERT_PAGES, page_rows

_ID = 'TEXT COLLATE "C"'

# Each pack's live bytes, kept as block rows come, go and move (as since schema 4, on
# pack keys now); the ids of referenced blocks (or bases) whose rows go, which the
# store's own code never deletes: a damaged or hand-edited catalog still names them;
# and no unreferenced_blocks row outlives its block's.
_LIVE_BYTES = [
    """CREATE OR REPLACE FUNCTION blocks_live_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE packs p SET live_bytes = p.live_bytes + s.n FROM (
                SELECT pack_key, SUM(header_len + stored_len) AS n FROM new_rows
                GROUP BY pack_key) s
            WHERE p.pack_key = s.pack_key;
        ELSE
            UPDATE packs p SET live_bytes = p.live_bytes - s.n FROM (
                SELECT pack_key, SUM(header_len + stored_len) AS n FROM old_rows
                GROUP BY pack_key) s
            WHERE p.pack_key = s.pack_key;
            INSERT INTO lost_blocks (block_key, block_id)
            SELECT o.block_key, o.block_id FROM old_rows o
            WHERE EXISTS (SELECT 1 FROM tenant_refs t WHERE t.block_key = o.block_key)
            OR EXISTS (SELECT 1 FROM blocks d WHERE d.base_key = o.block_key)
            ON CONFLICT (block_key) DO UPDATE SET block_id = EXCLUDED.block_id;
            DELETE FROM unreferenced_blocks u USING old_rows o WHERE u.block_key = o.block_key;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER blocks_live_insert AFTER INSERT ON blocks
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION blocks_live_change()""",
    """CREATE TRIGGER blocks_live_delete AFTER DELETE ON blocks
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION blocks_live_change()""",
    # A move is a row trigger named by its columns: other updates neither fire it
    # nor collect their rows for it.
    """CREATE OR REPLACE FUNCTION blocks_live_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE packs SET live_bytes = live_bytes - OLD.header_len - OLD.stored_len
        WHERE pack_key = OLD.pack_key;
        UPDATE packs SET live_bytes = live_bytes + NEW.header_len + NEW.stored_len
        WHERE pack_key = NEW.pack_key;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER blocks_live_update AFTER UPDATE OF pack_key, header_len, stored_len
        ON blocks FOR EACH ROW
        WHEN (OLD.pack_key IS DISTINCT FROM NEW.pack_key
            OR OLD.header_len IS DISTINCT FROM NEW.header_len
            OR OLD.stored_len IS DISTINCT FROM NEW.stored_len)
        EXECUTE FUNCTION blocks_live_move()""",
]

# Reads see the block columns the catalog API speaks of: the pack's id, the base's id.
_BLOCK_ROWS_VIEW = """CREATE VIEW block_rows AS SELECT
    b.block_key, b.block_id, p.pack_id, b.pack_offset, b.stored_len, b.raw_len, b.codec,
    CASE WHEN b.base_key IS NULL THEN NULL ELSE COALESCE(base.block_id,
        (SELECT l.block_id FROM lost_blocks l WHERE l.block_key = b.base_key)) END AS base_id,
    b.header_len, b.width, b.pack_key, b.base_key
    FROM blocks b JOIN packs p ON p.pack_key = b.pack_key
    LEFT JOIN blocks base ON base.block_key = b.base_key"""

# The next key of an identity column after the largest given (keys are never reused).
_RESTART = (
    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
    " COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
)

_BEFORE = [
    "DROP TRIGGER blocks_live_insert ON blocks",
    "DROP TRIGGER blocks_live_delete ON blocks",
    "DROP TRIGGER blocks_live_update ON blocks",
    "DROP INDEX blocks_pack",
    "DROP INDEX blocks_base",
    "DROP INDEX blocks_dead",
    "DROP INDEX blocks_unknown_width",
    "DROP INDEX manifests_block",
    "ALTER TABLE packs RENAME TO packs_6",
    "ALTER INDEX packs_pkey RENAME TO packs_6_pkey",
    "ALTER TABLE blocks RENAME TO blocks_6",
    "ALTER INDEX blocks_pkey RENAME TO blocks_6_pkey",
    f"""CREATE TABLE packs (
        pack_key BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        pack_id {_ID} NOT NULL UNIQUE,
        size BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        live_bytes BIGINT NOT NULL DEFAULT 0)""",
    # with packs that block rows name without a pack row (catalogs of early tests)
    """INSERT INTO packs (pack_key, pack_id, size, created_at, live_bytes)
        OVERRIDING SYSTEM VALUE
        SELECT ROW_NUMBER() OVER (ORDER BY created_at, pack_id), pack_id, size, created_at,
            live_bytes FROM (
            SELECT pack_id, size, created_at, live_bytes FROM packs_6
            UNION ALL SELECT pack_id, MAX(pack_offset + header_len + stored_len), 0,
                SUM(header_len + stored_len)
            FROM blocks_6 o WHERE NOT EXISTS (SELECT 1 FROM packs_6 p WHERE p.pack_id = o.pack_id)
            GROUP BY pack_id) AS every_pack""",
    _RESTART.format(table="packs", column="pack_key"),
    # the fixed-width columns first: no padding between them
    """CREATE TABLE blocks (
        block_key BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        pack_key BIGINT NOT NULL,
        pack_offset BIGINT NOT NULL,
        stored_len BIGINT NOT NULL,
        raw_len BIGINT NOT NULL,
        base_key BIGINT,
        codec INTEGER NOT NULL,
        header_len INTEGER NOT NULL,
        width INTEGER,
        block_id BYTEA NOT NULL UNIQUE)""",
    "CREATE TABLE lost_blocks (block_key BIGINT PRIMARY KEY, block_id BYTEA NOT NULL)",
    """INSERT INTO lost_blocks (block_key, block_id)
        SELECT -ROW_NUMBER() OVER (ORDER BY id), id FROM (
            SELECT m.block_id AS id FROM manifests m
            WHERE NOT EXISTS (SELECT 1 FROM blocks_6 o WHERE o.block_id = m.block_id)
            UNION SELECT d.base_id FROM blocks_6 d WHERE d.base_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM blocks_6 o WHERE o.block_id = d.base_id)) AS gone""",
    """WITH keyed AS (
        SELECT ROW_NUMBER() OVER (ORDER BY p.pack_key, o.pack_offset, o.block_id) AS block_key,
            p.pack_key, o.*
        FROM blocks_6 o JOIN packs p ON p.pack_id = o.pack_id)
    INSERT INTO blocks (block_key, pack_key, pack_offset, stored_len, raw_len, base_key,
        codec, header_len, width, block_id)
    OVERRIDING SYSTEM VALUE
    SELECT k.block_key, k.pack_key, k.pack_offset, k.stored_len, k.raw_len,
        COALESCE(base.block_key, l.block_key), k.codec,
        k.header_len, k.width, k.block_id
    FROM keyed k LEFT JOIN keyed base ON base.block_id = k.base_id
    LEFT JOIN lost_blocks l ON l.block_id = k.base_id
    ORDER BY k.block_key""",
    _RESTART.format(table="blocks", column="block_key"),
    f"""CREATE TABLE tenant_refs (
        block_key BIGINT NOT NULL,
        tenant_id {_ID} NOT NULL,
        refs BIGINT NOT NULL,
        PRIMARY KEY (block_key, tenant_id))""",
    """INSERT INTO tenant_refs (block_key, tenant_id, refs)
        SELECT n.block_key, c.tenant_id, COUNT(*) FROM manifests m
        JOIN checkpoints c ON c.checkpoint_id = m.checkpoint_id
        JOIN blocks n ON n.block_id = m.block_id
        GROUP BY n.block_key, c.tenant_id ORDER BY n.block_key""",
    """CREATE TABLE unreferenced_blocks (
        block_key BIGINT PRIMARY KEY,
        dead_since DOUBLE PRECISION NOT NULL)""",
    # the blocks no manifest names, dead since their refcount reached 0 (or now, for
    # one whose refcount said otherwise)
    """INSERT INTO unreferenced_blocks (block_key, dead_since)
        SELECT n.block_key, COALESCE(o.dead_since, EXTRACT(EPOCH FROM now())::double precision)
        FROM blocks n JOIN blocks_6 o ON o.block_id = n.block_id
        WHERE NOT EXISTS (SELECT 1 FROM tenant_refs t WHERE t.block_key = n.block_key)
        ORDER BY n.block_key""",
    f"""CREATE TABLE manifest_pages (
        checkpoint_id {_ID} NOT NULL,
        page INTEGER NOT NULL,
        entries BYTEA NOT NULL,
        PRIMARY KEY (checkpoint_id, page))""",
    # a page is a zstd frame already: stored out of line as it is, not compressed again
    "ALTER TABLE manifest_pages ALTER COLUMN entries SET STORAGE EXTERNAL",
]

_AFTER = [
    "DROP TABLE manifests",
    "DROP TABLE blocks_6",
    "DROP TABLE packs_6",
    "CREATE INDEX blocks_pack ON blocks (pack_key, pack_offset)",
    "CREATE INDEX blocks_base ON blocks (base_key) WHERE base_key IS NOT NULL",
    "CREATE INDEX unreferenced_since ON unreferenced_blocks (dead_since)",
    "CREATE INDEX blocks_unknown_width ON blocks (block_id) WHERE width = -1",
    # every new block is in it until its commit: vacuumed after a fiftieth of it
    # changed, GC's scans of unreferenced_since skip fewer stale entries
    "ALTER TABLE unreferenced_blocks SET (autovacuum_vacuum_scale_factor = 0.02)",
    *_LIVE_BYTES,
    _BLOCK_ROWS_VIEW,
]

Connection = psycopg.Connection[tuple[Any, ...]]


def _convert_manifests(conn: Connection) -> None:
    """Every checkpoint's manifest rows as manifest pages, in ``seq`` order; the rows
    read through a cursor, one checkpoint's in memory at a time."""
    with conn.cursor(name="ckptstore_manifest_rows") as rows:
        rows.itersize = 50_000
        rows.execute(
            "SELECT m.checkpoint_id, COALESCE(n.block_key, l.block_key), m.logical_offset,"
            " m.slot FROM manifests m LEFT JOIN blocks n ON n.block_id = m.block_id"
            " LEFT JOIN lost_blocks l ON l.block_id = m.block_id"
            " ORDER BY m.checkpoint_id, m.seq"
        )
        for checkpoint_id, entries in groupby(rows, key=itemgetter(0)):
            found = list(entries)
            conn.execute(
                INSERT_PAGES,
                page_rows(
                    checkpoint_id,
                    [row[1] for row in found],
                    [row[2] for row in found],
                    [row[3] for row in found],
                ),
            )


Step = str | Callable[[Connection], None]

MIGRATION: list[Step] = [*_BEFORE, _convert_manifests, *_AFTER]
