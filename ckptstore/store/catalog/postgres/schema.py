"""The PostgreSQL catalog schema, as numbered migrations.

The same tables as the SQLite catalog (FORMAT.md describes them) in PostgreSQL's
types: BYTEA ids, BIGINT counts and offsets, DOUBLE PRECISION times, JSONB metrics
(sorted on and listed by key in SQL). Text that the catalog sorts on is ``COLLATE "C"``,
so listings come in byte order, as from SQLite, whatever the database's locale. A
``seq`` column gives the insertion order that SQLite's rowid gives. Since schema 7 a
block row holds no refcount (``unreferenced_blocks`` instead: compact_schema.py).

The version is a row of ``ckptstore_schema``; its numbering is this backend's own.
"""

from ckptstore.store.catalog.postgres.compact_schema import MIGRATION as COMPACT_CATALOG
from ckptstore.store.catalog.postgres.compact_schema import Step
from ckptstore.store.catalog.schema import ID_PREFIX_AND_ENDPOINT_NAME_INDEXES, MANIFEST_SHARING

SCHEMA_VERSION = 8

_ID = 'TEXT COLLATE "C"'

# The rows of metric_order for checkpoint ``row`` and each number ``j`` of its metrics.
_METRIC_ROWS = (
    "{row}.checkpoint_id, j.key, {row}.tenant_id, {row}.job_id, {row}.type,"
    " j.value::text::double precision, {row}.created_at, {row}.seq"
)
_NUMBER = "jsonb_typeof(j.value) = 'number'"

# MIGRATIONS[n] takes a catalog from schema version n-1 to n: SQL statements, and
# functions of the connection where a step is done in Python.
MIGRATIONS: dict[int, list[Step]] = {
    1: [
        f"CREATE TABLE settings (key {_ID} PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE jobs (
            tenant_id {_ID} NOT NULL DEFAULT '',
            job_id {_ID} NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            settings TEXT NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (tenant_id, job_id))""",
        f"""CREATE TABLE checkpoints (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            checkpoint_id {_ID} PRIMARY KEY,
            job_id {_ID} NOT NULL,
            type TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            epoch BIGINT,
            step BIGINT,
            metrics JSONB NOT NULL DEFAULT '{{}}',
            status TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            stored_bytes BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            parent_id {_ID},
            tenant_id {_ID} NOT NULL DEFAULT '')""",
        "CREATE INDEX checkpoints_job ON checkpoints (tenant_id, job_id, created_at, seq)",
        "CREATE INDEX checkpoints_type ON checkpoints (tenant_id, job_id, type, created_at, seq)",
        "CREATE INDEX checkpoints_pending ON checkpoints (created_at) WHERE status = 'pending'",
        f"""CREATE TABLE packs (
            pack_id {_ID} PRIMARY KEY,
            size BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        f"""CREATE TABLE blocks (
            block_id BYTEA PRIMARY KEY,
            pack_id {_ID} NOT NULL,
            pack_offset BIGINT NOT NULL,
            stored_len BIGINT NOT NULL,
            raw_len BIGINT NOT NULL,
            codec INTEGER NOT NULL,
            base_id BYTEA,
            refcount BIGINT NOT NULL DEFAULT 0,
            dead_since DOUBLE PRECISION,
            header_len INTEGER NOT NULL,
            width INTEGER)""",
        "CREATE INDEX blocks_pack ON blocks (pack_id, pack_offset)",
        "CREATE INDEX blocks_base ON blocks (base_id) WHERE base_id IS NOT NULL",
        "CREATE INDEX blocks_dead ON blocks (dead_since) WHERE refcount = 0",
        "CREATE INDEX blocks_unknown_width ON blocks (block_id) WHERE width = -1",
        f"""CREATE TABLE manifests (
            checkpoint_id {_ID} NOT NULL,
            seq BIGINT NOT NULL,
            block_id BYTEA NOT NULL,
            logical_offset BIGINT NOT NULL,
            slot TEXT,
            PRIMARY KEY (checkpoint_id, seq))""",
        "CREATE INDEX manifests_block ON manifests (block_id)",
        f"""CREATE TABLE leases (
            block_id BYTEA NOT NULL,
            holder {_ID} NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (block_id, holder))""",
        "CREATE INDEX leases_holder ON leases (holder)",
        "CREATE INDEX leases_expiry ON leases (expires_at)",
        f"""CREATE TABLE endpoints (
            endpoint_id {_ID} PRIMARY KEY,
            tenant_id {_ID} NOT NULL,
            name TEXT NOT NULL,
            checkpoint_id {_ID} NOT NULL,
            gpu_ids TEXT NOT NULL DEFAULT '[]',
            worker_count BIGINT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX endpoints_checkpoint ON endpoints (checkpoint_id)",
        f"""CREATE TABLE api_keys (
            key_id {_ID} PRIMARY KEY,
            key_hash BYTEA NOT NULL UNIQUE,
            tenant_id {_ID} NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION,
            admin BOOLEAN NOT NULL DEFAULT FALSE)""",
        # a committed checkpoint whose parent is still to be rebased onto it (rebase.py);
        # claimed_by, claimed_until: the process rebasing it holds it until then (a dead
        # one's claim lapses and another process takes the work)
        f"""CREATE TABLE rebases (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            checkpoint_id {_ID} PRIMARY KEY,
            parent_id {_ID} NOT NULL,
            claimed_by TEXT,
            claimed_until DOUBLE PRECISION)""",
        "CREATE INDEX rebases_parent ON rebases (parent_id)",
    ],
    # 2: the SQLite catalog's schema 7: a tenant's checkpoints by id prefix (refs.py)
    # through an index, endpoint names unique per tenant
    2: [*ID_PREFIX_AND_ENDPOINT_NAME_INDEXES],
    # 3: folders of files and SHA-256 digests (the SQLite catalog's schema 8)
    3: [
        "ALTER TABLE checkpoints ADD COLUMN sha256 TEXT",
        "ALTER TABLE checkpoints ADD COLUMN layout TEXT NOT NULL DEFAULT 'file'",
        f"""CREATE TABLE files (
            checkpoint_id {_ID} NOT NULL,
            seq BIGINT NOT NULL,
            path TEXT COLLATE "C" NOT NULL,
            logical_offset BIGINT NOT NULL,
            size_bytes BIGINT NOT NULL,
            mode INTEGER NOT NULL,
            sha256 TEXT,
            PRIMARY KEY (checkpoint_id, seq))""",
        "CREATE UNIQUE INDEX files_path ON files (checkpoint_id, path)",
    ],
    # 4: the SQLite catalog's schema 9: each pack's live bytes (its blocks' entries),
    # kept by triggers as block rows come, go and move, so GC reads one row per pack
    # instead of summing every block.
    4: [
        "ALTER TABLE packs ADD COLUMN live_bytes BIGINT NOT NULL DEFAULT 0",
        """UPDATE packs p SET live_bytes = s.n FROM (
            SELECT pack_id, SUM(header_len + stored_len) AS n FROM blocks GROUP BY pack_id) s
            WHERE p.pack_id = s.pack_id""",
        """CREATE FUNCTION blocks_live_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE packs p SET live_bytes = p.live_bytes + s.n FROM (
                    SELECT pack_id, SUM(header_len + stored_len) AS n FROM new_rows
                    GROUP BY pack_id) s
                WHERE p.pack_id = s.pack_id;
            ELSE
                UPDATE packs p SET live_bytes = p.live_bytes - s.n FROM (
                    SELECT pack_id, SUM(header_len + stored_len) AS n FROM old_rows
                    GROUP BY pack_id) s
                WHERE p.pack_id = s.pack_id;
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER blocks_live_insert AFTER INSERT ON blocks
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION blocks_live_change()""",
        """CREATE TRIGGER blocks_live_delete AFTER DELETE ON blocks
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION blocks_live_change()""",
        # A move is a row trigger named by its columns: refcount updates (every commit
        # and delete) neither fire it nor collect their rows for it.
        """CREATE FUNCTION blocks_live_move() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE packs SET live_bytes = live_bytes - OLD.header_len - OLD.stored_len
            WHERE pack_id = OLD.pack_id;
            UPDATE packs SET live_bytes = live_bytes + NEW.header_len + NEW.stored_len
            WHERE pack_id = NEW.pack_id;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER blocks_live_update AFTER UPDATE OF pack_id, header_len, stored_len
            ON blocks FOR EACH ROW
            WHEN (OLD.pack_id IS DISTINCT FROM NEW.pack_id
                OR OLD.header_len IS DISTINCT FROM NEW.header_len
                OR OLD.stored_len IS DISTINCT FROM NEW.stored_len)
            EXECUTE FUNCTION blocks_live_move()""",
        # Every new block is in blocks_dead until its commit, and each commit leaves a
        # dead row version behind: vacuumed after a fiftieth of the table changed (not
        # the default fifth), GC's scans of blocks_dead skip fewer stale entries.
        "ALTER TABLE blocks SET (autovacuum_vacuum_scale_factor = 0.02)",
        # Every new block is in blocks_dead until its commit: vacuumed sooner than the
        # default fifth of the table, GC's index scans skip fewer stale entries.
        "ALTER TABLE blocks SET (autovacuum_vacuum_scale_factor = 0.02)",
    ],
    # 5: the SQLite catalog's schema 10: a job's listing in the order of any metric, and
    # its count by type, kept by a trigger on checkpoints: a page sorted by a metric
    # walks an index of (job, metric, value) instead of sorting the job, and the total
    # is a sum of a few counts.
    # ``inserted`` is the checkpoint's seq; ``type`` is there so that a page of one
    # type is read from the index alone.
    5: [
        f"""CREATE TABLE metric_order (
            checkpoint_id {_ID} NOT NULL,
            key {_ID} NOT NULL,
            tenant_id {_ID} NOT NULL,
            job_id {_ID} NOT NULL,
            type TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            inserted BIGINT NOT NULL,
            PRIMARY KEY (checkpoint_id, key))""",
        # ascending by value, ties newest first; and descending, ties newest first
        """CREATE INDEX metric_order_up ON metric_order
            (tenant_id, job_id, key, value, created_at DESC, inserted DESC)""",
        """CREATE INDEX metric_order_down ON metric_order
            (tenant_id, job_id, key, value DESC, created_at DESC, inserted DESC)""",
        f"""CREATE TABLE job_counts (
            tenant_id {_ID} NOT NULL,
            job_id {_ID} NOT NULL,
            type TEXT NOT NULL,
            checkpoints BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, job_id, type))""",
        f"""INSERT INTO metric_order SELECT {_METRIC_ROWS.format(row="c")}
            FROM checkpoints c, jsonb_each(c.metrics) j WHERE {_NUMBER}""",
        """INSERT INTO job_counts SELECT tenant_id, job_id, type, COUNT(*) FROM checkpoints
            GROUP BY tenant_id, job_id, type""",
        f"""CREATE FUNCTION checkpoints_listing() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                DELETE FROM metric_order WHERE checkpoint_id = OLD.checkpoint_id;
                UPDATE job_counts SET checkpoints = checkpoints - 1
                WHERE tenant_id = OLD.tenant_id AND job_id = OLD.job_id AND type = OLD.type;
            END IF;
            IF TG_OP IN ('UPDATE', 'INSERT') THEN
                INSERT INTO metric_order SELECT {_METRIC_ROWS.format(row="NEW")}
                FROM jsonb_each(NEW.metrics) j WHERE {_NUMBER};
                INSERT INTO job_counts VALUES (NEW.tenant_id, NEW.job_id, NEW.type, 1)
                ON CONFLICT (tenant_id, job_id, type)
                DO UPDATE SET checkpoints = job_counts.checkpoints + 1;
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER checkpoints_listing AFTER INSERT OR DELETE
            OR UPDATE OF checkpoint_id, tenant_id, job_id, type, metrics, created_at
            ON checkpoints FOR EACH ROW EXECUTE FUNCTION checkpoints_listing()""",
    ],
    # 6: best copies read their source's manifest rows (as SQLite's schema 11)
    6: [*MANIFEST_SHARING],
    # 7: blocks and packs keyed by integers in insertion order, manifests as pages of
    # entries instead of a row per block, references counted per tenant (as SQLite's
    # schema 12; compact_schema.py)
    7: COMPACT_CATALOG,
    # 8: each job's total size by type beside its count (as SQLite's schema 13)
    8: [
        "ALTER TABLE job_counts ADD COLUMN size_bytes BIGINT NOT NULL DEFAULT 0",
        """UPDATE job_counts SET size_bytes = COALESCE((SELECT SUM(c.size_bytes)
            FROM checkpoints c WHERE c.tenant_id = job_counts.tenant_id
            AND c.job_id = job_counts.job_id AND c.type = job_counts.type), 0)""",
        f"""CREATE OR REPLACE FUNCTION checkpoints_listing() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                DELETE FROM metric_order WHERE checkpoint_id = OLD.checkpoint_id;
                UPDATE job_counts SET checkpoints = checkpoints - 1,
                    size_bytes = size_bytes - OLD.size_bytes
                WHERE tenant_id = OLD.tenant_id AND job_id = OLD.job_id AND type = OLD.type;
            END IF;
            IF TG_OP IN ('UPDATE', 'INSERT') THEN
                INSERT INTO metric_order SELECT {_METRIC_ROWS.format(row="NEW")}
                FROM jsonb_each(NEW.metrics) j WHERE {_NUMBER};
                INSERT INTO job_counts VALUES (NEW.tenant_id, NEW.job_id, NEW.type, 1,
                    NEW.size_bytes)
                ON CONFLICT (tenant_id, job_id, type)
                DO UPDATE SET checkpoints = job_counts.checkpoints + 1,
                    size_bytes = job_counts.size_bytes + EXCLUDED.size_bytes;
            END IF;
            RETURN NULL;
        END $$""",
        "DROP TRIGGER checkpoints_listing ON checkpoints",
        """CREATE TRIGGER checkpoints_listing AFTER INSERT OR DELETE
            OR UPDATE OF checkpoint_id, tenant_id, job_id, type, metrics, created_at, size_bytes
            ON checkpoints FOR EACH ROW EXECUTE FUNCTION checkpoints_listing()""",
    ],
}
