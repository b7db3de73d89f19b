"""The PostgreSQL catalog schema, as numbered migrations.

The same tables as the SQLite catalog (FORMAT.md describes them) in PostgreSQL's
types: BYTEA ids, BIGINT counts and offsets, DOUBLE PRECISION times, JSONB metrics
(sorted on and listed by key in SQL). Text that the catalog sorts on is ``COLLATE "C"``,
so listings come in byte order, as from SQLite, whatever the database's locale. A
``seq`` column gives the insertion order that SQLite's rowid gives.

The version is a row of ``ckptstore_schema``; its numbering is this backend's own.
"""

from ckptstore.store.catalog.schema import ID_PREFIX_AND_ENDPOINT_NAME_INDEXES

SCHEMA_VERSION = 3

_ID = 'TEXT COLLATE "C"'

# MIGRATIONS[n] takes a catalog from schema version n-1 to n.
MIGRATIONS: dict[int, list[str]] = {
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
    2: ID_PREFIX_AND_ENDPOINT_NAME_INDEXES,
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
}
