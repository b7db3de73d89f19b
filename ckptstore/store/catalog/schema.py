"""The catalog schema, as numbered migrations (FORMAT.md describes the tables)."""

from __future__ import annotations

from collections.abc import Sequence

from ckptstore.store.catalog.compact_schema import MIGRATION as COMPACT_CATALOG
from ckptstore.store.catalog.compact_schema import Step

SCHEMA_VERSION = 13

# Shared by the SQLite and PostgreSQL catalogs (the same SQL in both).
ID_PREFIX_AND_ENDPOINT_NAME_INDEXES = [
    "CREATE INDEX checkpoints_tenant ON checkpoints (tenant_id, checkpoint_id)",
    """UPDATE endpoints SET name = name || ' (' || endpoint_id || ')' WHERE EXISTS (
        SELECT 1 FROM endpoints e WHERE e.tenant_id = endpoints.tenant_id
        AND e.name = endpoints.name AND (e.created_at < endpoints.created_at
        OR (e.created_at = endpoints.created_at AND e.endpoint_id < endpoints.endpoint_id)))""",
    "CREATE UNIQUE INDEX endpoints_name ON endpoints (tenant_id, name)",
]

# Shared by the SQLite and PostgreSQL catalogs: best copies share manifests.
MANIFEST_SHARING = [
    "ALTER TABLE checkpoints ADD COLUMN manifest_of TEXT",
    "CREATE INDEX checkpoints_manifest_of ON checkpoints (manifest_of)"
    " WHERE manifest_of IS NOT NULL",
]

# The rows of metric_order for checkpoint ``row`` and each number ``j`` of its metrics.
_METRIC_ROWS = (
    "{row}.checkpoint_id, j.key, {row}.tenant_id, {row}.job_id, {row}.type, j.value,"
    " {row}.created_at, {row}.rowid"
)
_NUMBER = "j.type IN ('integer', 'real')"
_COUNT_UP = (
    "INSERT INTO job_counts VALUES ({row}.tenant_id, {row}.job_id, {row}.type, 1)"
    " ON CONFLICT (tenant_id, job_id, type) DO UPDATE SET checkpoints = checkpoints + 1"
)
_COUNT_DOWN = (
    "UPDATE job_counts SET checkpoints = checkpoints - 1"
    " WHERE tenant_id = {row}.tenant_id AND job_id = {row}.job_id AND type = {row}.type"
)
_SIZED_UP = (
    "INSERT INTO job_counts VALUES ({row}.tenant_id, {row}.job_id, {row}.type, 1,"
    " {row}.size_bytes) ON CONFLICT (tenant_id, job_id, type) DO UPDATE"
    " SET checkpoints = checkpoints + 1, size_bytes = size_bytes + excluded.size_bytes"
)
_SIZED_DOWN = (
    "UPDATE job_counts SET checkpoints = checkpoints - 1,"
    " size_bytes = size_bytes - {row}.size_bytes"
    " WHERE tenant_id = {row}.tenant_id AND job_id = {row}.job_id AND type = {row}.type"
)

# MIGRATIONS[n] takes a catalog from schema version n-1 to n.
MIGRATIONS: dict[int, Sequence[Step]] = {
    1: [
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE jobs (
            tenant_id TEXT NOT NULL DEFAULT '',
            job_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (tenant_id, job_id))""",
        """CREATE TABLE checkpoints (
            checkpoint_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            epoch INTEGER,
            step INTEGER,
            metrics TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            stored_bytes INTEGER NOT NULL,
            created_at REAL NOT NULL,
            parent_id TEXT,
            tenant_id TEXT NOT NULL DEFAULT '')""",
        # rowid ends every index of a rowid table: ties in created_at go by insertion order
        "CREATE INDEX checkpoints_job ON checkpoints (tenant_id, job_id, created_at)",
        "CREATE INDEX checkpoints_type ON checkpoints (tenant_id, job_id, type, created_at)",
        """CREATE TABLE packs (
            pack_id TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            created_at REAL NOT NULL)""",
        """CREATE TABLE blocks (
            block_id BLOB PRIMARY KEY,
            pack_id TEXT NOT NULL,
            pack_offset INTEGER NOT NULL,
            stored_len INTEGER NOT NULL,
            raw_len INTEGER NOT NULL,
            codec INTEGER NOT NULL,
            base_id BLOB,
            refcount INTEGER NOT NULL DEFAULT 0,
            dead_since REAL) WITHOUT ROWID""",
        "CREATE INDEX blocks_pack ON blocks (pack_id)",
        "CREATE INDEX blocks_base ON blocks (base_id) WHERE base_id IS NOT NULL",
        "CREATE INDEX blocks_dead ON blocks (dead_since) WHERE refcount = 0",
        """CREATE TABLE manifests (
            checkpoint_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            block_id BLOB NOT NULL,
            logical_offset INTEGER NOT NULL,
            PRIMARY KEY (checkpoint_id, seq)) WITHOUT ROWID""",
        "CREATE INDEX manifests_block ON manifests (block_id)",
        """CREATE TABLE leases (
            block_id BLOB NOT NULL,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (block_id, holder)) WITHOUT ROWID""",
        "CREATE INDEX leases_holder ON leases (holder)",
        """CREATE TABLE endpoints (
            endpoint_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            checkpoint_id TEXT NOT NULL,
            gpu_ids TEXT NOT NULL DEFAULT '[]',
            worker_count INTEGER NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL)""",
        "CREATE INDEX endpoints_checkpoint ON endpoints (checkpoint_id)",
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            key_hash BLOB NOT NULL UNIQUE,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            revoked_at REAL)""",
    ],
    # 2: tensor blocks name their slot ("<tensor>#<block index>"), so the next
    # checkpoint of the job finds the block at the same place to encode a delta against.
    2: ["ALTER TABLE manifests ADD COLUMN slot TEXT"],
    # 3: a committed checkpoint whose parent is still to be rebased onto it (rebase.py),
    # so that a rebase cut short by a crash runs again when the store is next opened.
    3: [
        """CREATE TABLE rebases (
            checkpoint_id TEXT PRIMARY KEY,
            parent_id TEXT NOT NULL)""",
        "CREATE INDEX rebases_parent ON rebases (parent_id)",
    ],
    # 4: a block row says all the engine needs without reading its pack: the length of
    # its entry's header, and the element width of a tensor block (NULL for opaque
    # bytes). New rows always give both; rows from before take the defaults: pack
    # format 1's 76-byte entry header, and -1 (records.UNKNOWN_WIDTH) until the engine
    # reads the width from the payload, once (rebase.record_legacy_widths).
    4: [
        "ALTER TABLE blocks ADD COLUMN header_len INTEGER NOT NULL DEFAULT 76",
        "ALTER TABLE blocks ADD COLUMN width INTEGER DEFAULT -1",
    ],
    # 5: an API key may be an operator's (admin): store-wide operations (GC, metrics)
    # need one; keys from before are a tenant's only.
    5: ["ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0"],
    # 6: a pending rebase is claimed by the process that runs it, until a time: with
    # several processes on one store exactly one runs it, and a dead one's claim lapses.
    6: [
        "ALTER TABLE rebases ADD COLUMN claimed_by TEXT",
        "ALTER TABLE rebases ADD COLUMN claimed_until REAL",
    ],
    # 7: references (refs.py) find a tenant's checkpoints by id prefix through an index
    # of that tenant's own ids; an endpoint's name is unique to its tenant (a name held
    # twice before keeps its older holder, the later ones get their id appended).
    7: ID_PREFIX_AND_ENDPOINT_NAME_INDEXES,
    # 8: a checkpoint may be a folder of files (layout "tree"); each file of a
    # checkpoint is a row of ``files`` (its range of the checkpoint's bytes), and every
    # file and checkpoint carries the SHA-256 of its bytes. Checkpoints from before
    # have no file rows and read as one file of the default name.
    8: [
        "ALTER TABLE checkpoints ADD COLUMN sha256 TEXT",
        "ALTER TABLE checkpoints ADD COLUMN layout TEXT NOT NULL DEFAULT 'file'",
        """CREATE TABLE files (
            checkpoint_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            path TEXT NOT NULL,
            logical_offset INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            mode INTEGER NOT NULL,
            sha256 TEXT,
            PRIMARY KEY (checkpoint_id, seq)) WITHOUT ROWID""",
        "CREATE UNIQUE INDEX files_path ON files (checkpoint_id, path)",
    ],
    # 9: each pack's live bytes (its blocks' entries), kept by triggers as block rows
    # come, go and move, so GC reads one row per pack instead of summing every block;
    # the pack index gives blocks by offset (verify pages through it); pending
    # checkpoints are found by an index, not a scan.
    9: [
        "ALTER TABLE packs ADD COLUMN live_bytes INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX blocks_pack",
        "CREATE INDEX blocks_pack ON blocks (pack_id, pack_offset)",
        """UPDATE packs SET live_bytes = COALESCE((SELECT SUM(b.header_len + b.stored_len)
            FROM blocks b WHERE b.pack_id = packs.pack_id), 0)""",
        """CREATE TRIGGER blocks_live_insert AFTER INSERT ON blocks BEGIN
            UPDATE packs SET live_bytes = live_bytes + NEW.header_len + NEW.stored_len
            WHERE pack_id = NEW.pack_id;
        END""",
        """CREATE TRIGGER blocks_live_delete AFTER DELETE ON blocks BEGIN
            UPDATE packs SET live_bytes = live_bytes - OLD.header_len - OLD.stored_len
            WHERE pack_id = OLD.pack_id;
        END""",
        """CREATE TRIGGER blocks_live_update AFTER UPDATE OF pack_id, header_len, stored_len
        ON blocks BEGIN
            UPDATE packs SET live_bytes = live_bytes - OLD.header_len - OLD.stored_len
            WHERE pack_id = OLD.pack_id;
            UPDATE packs SET live_bytes = live_bytes + NEW.header_len + NEW.stored_len
            WHERE pack_id = NEW.pack_id;
        END""",
        "CREATE INDEX checkpoints_pending ON checkpoints (created_at) WHERE status = 'pending'",
    ],
    # 10: a job's listing in the order of any metric, and its count by type, kept by
    # triggers on checkpoints: a page sorted by a metric walks an index of
    # (job, metric, value) instead of sorting the job, and the total is a sum of a few
    # counts instead of a count of the job. ``inserted`` is the checkpoint's rowid;
    # ``type`` is there so that a page of one type is read from the index alone.
    10: [
        """CREATE TABLE metric_order (
            checkpoint_id TEXT NOT NULL,
            key TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            value REAL NOT NULL,
            created_at REAL NOT NULL,
            inserted INTEGER NOT NULL,
            PRIMARY KEY (checkpoint_id, key)) WITHOUT ROWID""",
        # ascending by value, ties newest first; and descending, ties newest first
        """CREATE INDEX metric_order_up ON metric_order
            (tenant_id, job_id, key, value, created_at DESC, inserted DESC)""",
        """CREATE INDEX metric_order_down ON metric_order
            (tenant_id, job_id, key, value DESC, created_at DESC, inserted DESC)""",
        f"""INSERT INTO metric_order SELECT {_METRIC_ROWS.format(row="c")}
            FROM checkpoints c, json_each(c.metrics) j WHERE {_NUMBER}""",
        f"""CREATE TRIGGER checkpoints_metrics_insert AFTER INSERT ON checkpoints BEGIN
            INSERT INTO metric_order SELECT {_METRIC_ROWS.format(row="NEW")}
            FROM json_each(NEW.metrics) j WHERE {_NUMBER};
        END""",
        """CREATE TRIGGER checkpoints_metrics_delete AFTER DELETE ON checkpoints BEGIN
            DELETE FROM metric_order WHERE checkpoint_id = OLD.checkpoint_id;
        END""",
        f"""CREATE TRIGGER checkpoints_metrics_update
        AFTER UPDATE OF checkpoint_id, tenant_id, job_id, type, metrics, created_at
        ON checkpoints
        BEGIN
            DELETE FROM metric_order WHERE checkpoint_id = OLD.checkpoint_id;
            INSERT INTO metric_order SELECT {_METRIC_ROWS.format(row="NEW")}
            FROM json_each(NEW.metrics) j WHERE {_NUMBER};
        END""",
        """CREATE TABLE job_counts (
            tenant_id TEXT NOT NULL,
            job_id TEXT NOT NULL,
            type TEXT NOT NULL,
            checkpoints INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, job_id, type)) WITHOUT ROWID""",
        """INSERT INTO job_counts SELECT tenant_id, job_id, type, COUNT(*) FROM checkpoints
            GROUP BY tenant_id, job_id, type""",
        f"""CREATE TRIGGER checkpoints_count_insert AFTER INSERT ON checkpoints BEGIN
            {_COUNT_UP.format(row="NEW")};
        END""",
        f"""CREATE TRIGGER checkpoints_count_delete AFTER DELETE ON checkpoints BEGIN
            {_COUNT_DOWN.format(row="OLD")};
        END""",
        f"""CREATE TRIGGER checkpoints_count_update AFTER UPDATE OF tenant_id, job_id, type
        ON checkpoints BEGIN
            {_COUNT_DOWN.format(row="OLD")};
            {_COUNT_UP.format(row="NEW")};
        END""",
    ],
    # 11: a best copy reads its source's manifest rows (``manifest_of``) instead of a
    # copy of them; when the source goes, its rows pass to a copy (catalog/sharing.py).
    11: MANIFEST_SHARING,
    # 12: blocks and packs keyed by integers in insertion order, manifests as pages of
    # entries instead of a row per block, references counted per tenant (compact_schema.py).
    12: COMPACT_CATALOG,
    # 13: each job's total size by type beside its count, kept by the same triggers, so
    # a listing's summary reads a few rows instead of summing the job's checkpoints.
    13: [
        "ALTER TABLE job_counts ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0",
        """UPDATE job_counts SET size_bytes = COALESCE((SELECT SUM(c.size_bytes)
            FROM checkpoints c WHERE c.tenant_id = job_counts.tenant_id
            AND c.job_id = job_counts.job_id AND c.type = job_counts.type), 0)""",
        "DROP TRIGGER checkpoints_count_insert",
        "DROP TRIGGER checkpoints_count_delete",
        "DROP TRIGGER checkpoints_count_update",
        f"""CREATE TRIGGER checkpoints_count_insert AFTER INSERT ON checkpoints BEGIN
            {_SIZED_UP.format(row="NEW")};
        END""",
        f"""CREATE TRIGGER checkpoints_count_delete AFTER DELETE ON checkpoints BEGIN
            {_SIZED_DOWN.format(row="OLD")};
        END""",
        f"""CREATE TRIGGER checkpoints_count_update
        AFTER UPDATE OF tenant_id, job_id, type, size_bytes ON checkpoints BEGIN
            {_SIZED_DOWN.format(row="OLD")};
            {_SIZED_UP.format(row="NEW")};
        END""",
    ],
}
