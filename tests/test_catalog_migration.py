"""A store written before catalog schema 4 opens, migrates, verifies, rebases and
collects garbage as before: its block rows get their widths from their payloads once."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import replace
from pathlib import Path

from ckptstore import CheckpointStore
from ckptstore.store.catalog.manifestpages import PAGE_ENTRIES, decode_page
from ckptstore.store.catalog.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from ckptstore.store.catalog.records import ListQuery
from ckptstore.store.catalog.schema import MIGRATIONS
from ckptstore.store.catalog.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from ckptstore.store.codecs.ids import WIDTH_PREFIXED, Codec
from ckptstore.store.rebase import WIDTHS_SETTING
from tests.conftest import TEST_CONFIG, restore_bytes
from tests.crash_child import tensor_data_for

NO_DELTAS = dataclasses.replace(TEST_CONFIG, delta_max_depth=0)


def as_schema_12(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 12 wrote: job counts without
    sizes (and the triggers that kept them)."""
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        for trigger in ("insert", "delete", "update"):
            conn.execute(f"DROP TRIGGER checkpoints_count_{trigger}")
        conn.execute("ALTER TABLE job_counts DROP COLUMN size_bytes")
        for statement in MIGRATIONS[10]:
            if isinstance(statement, str) and "TRIGGER checkpoints_count" in statement:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 12")
    conn.close()


def as_schema_11(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 11 wrote: blocks and packs
    keyed by their ids, a manifest row per entry naming its block's id, no per-tenant
    references."""
    as_schema_12(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        for trigger in ("live_insert", "live_delete", "live_update", "lost"):
            conn.execute(f"DROP TRIGGER blocks_{trigger}")
        conn.execute("DROP VIEW block_rows")
        conn.execute("ALTER TABLE packs RENAME TO packs_12")
        conn.execute("ALTER TABLE blocks RENAME TO blocks_12")
        for index in ("blocks_pack", "blocks_base", "blocks_dead"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute(
            "CREATE TABLE packs (pack_id TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " created_at REAL NOT NULL, live_bytes INTEGER NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "CREATE TABLE blocks (block_id BLOB PRIMARY KEY, pack_id TEXT NOT NULL,"
            " pack_offset INTEGER NOT NULL, stored_len INTEGER NOT NULL,"
            " raw_len INTEGER NOT NULL, codec INTEGER NOT NULL, base_id BLOB,"
            " refcount INTEGER NOT NULL DEFAULT 0, dead_since REAL,"
            " header_len INTEGER NOT NULL DEFAULT 76, width INTEGER DEFAULT -1) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX blocks_pack ON blocks (pack_id, pack_offset)")
        conn.execute("CREATE INDEX blocks_base ON blocks (base_id) WHERE base_id IS NOT NULL")
        conn.execute("CREATE INDEX blocks_dead ON blocks (dead_since) WHERE refcount = 0")
        conn.execute(
            "CREATE TABLE manifests (checkpoint_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " block_id BLOB NOT NULL, logical_offset INTEGER NOT NULL, slot TEXT,"
            " PRIMARY KEY (checkpoint_id, seq)) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX manifests_block ON manifests (block_id)")
        conn.execute(
            "INSERT INTO packs (pack_id, size, created_at, live_bytes)"
            " SELECT pack_id, size, created_at, live_bytes FROM packs_12"
        )
        conn.execute(
            "INSERT INTO blocks (block_id, pack_id, pack_offset, stored_len, raw_len, codec,"
            " base_id, refcount, dead_since, header_len, width)"
            " SELECT b.block_id, p.pack_id, b.pack_offset, b.stored_len, b.raw_len, b.codec,"
            " base.block_id, b.refcount, b.dead_since, b.header_len, b.width FROM blocks_12 b"
            " JOIN packs_12 p ON p.pack_key = b.pack_key"
            " LEFT JOIN blocks_12 base ON base.block_key = b.base_key"
        )
        ids = dict(conn.execute("SELECT block_key, block_id FROM blocks_12").fetchall())
        pages = conn.execute("SELECT checkpoint_id, page, entries FROM manifest_pages")
        for checkpoint_id, number, data in pages.fetchall():
            page = decode_page(data)
            conn.executemany(
                "INSERT INTO manifests (checkpoint_id, seq, block_id, logical_offset, slot)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (checkpoint_id, number * PAGE_ENTRIES + i, ids[key], offset, slot)
                    for i, (key, offset, slot) in enumerate(
                        zip(page.keys, page.offsets, page.slots, strict=True)
                    )
                ],
            )
        for table in ("blocks_12", "packs_12", "manifest_pages", "tenant_refs", "lost_blocks"):
            conn.execute(f"DROP TABLE {table}")
        for statement in MIGRATIONS[9]:
            if isinstance(statement, str) and statement.startswith("CREATE TRIGGER"):
                conn.execute(statement)  # the live bytes are copied: kept from here on
        conn.execute("PRAGMA user_version = 11")
    conn.close()


def as_schema_10(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 10 wrote: each best copy with
    manifest rows of its own."""
    as_schema_11(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        conn.execute(
            "INSERT INTO manifests (checkpoint_id, seq, block_id, logical_offset, slot)"
            " SELECT c.checkpoint_id, m.seq, m.block_id, m.logical_offset, m.slot"
            " FROM checkpoints c JOIN manifests m ON m.checkpoint_id = c.manifest_of"
        )
        conn.execute(
            "UPDATE blocks SET refcount = refcount + (SELECT COUNT(*) FROM checkpoints c"
            " JOIN manifests m ON m.checkpoint_id = c.manifest_of"
            " WHERE m.block_id = blocks.block_id)"
        )
        conn.execute("DROP INDEX checkpoints_manifest_of")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN manifest_of")
        conn.execute("PRAGMA user_version = 10")
    conn.close()


def as_schema_9(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 9 wrote: no metric order or
    counts kept per job (nor the triggers that keep them)."""
    as_schema_10(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        for trigger in ("metrics_insert", "metrics_delete", "metrics_update"):
            conn.execute(f"DROP TRIGGER checkpoints_{trigger}")
        for trigger in ("count_insert", "count_delete", "count_update"):
            conn.execute(f"DROP TRIGGER checkpoints_{trigger}")
        conn.execute("DROP TABLE metric_order")
        conn.execute("DROP TABLE job_counts")
        conn.execute("PRAGMA user_version = 9")
    conn.close()


def as_schema_8(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 8 wrote: no live bytes kept
    per pack (nor the triggers that keep them), the pack index on pack ids alone."""
    as_schema_9(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        for trigger in ("insert", "delete", "update"):
            conn.execute(f"DROP TRIGGER blocks_live_{trigger}")
        conn.execute("ALTER TABLE packs DROP COLUMN live_bytes")
        conn.execute("DROP INDEX blocks_pack")
        conn.execute("CREATE INDEX blocks_pack ON blocks (pack_id)")
        conn.execute("DROP INDEX checkpoints_pending")
        conn.execute("PRAGMA user_version = 8")
    conn.close()


def as_schema_3(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 3 wrote: the same tables
    without the columns schema 4 added (pack bytes did not change)."""
    as_schema_8(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        conn.execute("ALTER TABLE blocks DROP COLUMN header_len")
        conn.execute("ALTER TABLE blocks DROP COLUMN width")
        conn.execute("ALTER TABLE api_keys DROP COLUMN admin")  # schema 5
        conn.execute("ALTER TABLE rebases DROP COLUMN claimed_by")  # schema 6
        conn.execute("ALTER TABLE rebases DROP COLUMN claimed_until")
        conn.execute("DROP INDEX checkpoints_tenant")  # schema 7
        conn.execute("DROP INDEX endpoints_name")
        conn.execute("DROP TABLE files")  # schema 8
        conn.execute("ALTER TABLE checkpoints DROP COLUMN sha256")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN layout")
        conn.execute("DELETE FROM settings WHERE key = ?", (WIDTHS_SETTING,))
        conn.execute("PRAGMA user_version = 3")
    conn.close()


def payload_width(store: CheckpointStore, pack_id: str, offset: int, codec: int) -> int | None:
    """What the rebase read from a pack before schema 4: a byte-plane payload's first byte."""
    if codec not in WIDTH_PREFIXED:
        return None
    return store.context.blocks.get(pack_id, offset + 76, 1)[0]


def test_a_rebase_cut_short_before_schema_4_runs_on_the_widths_read_at_open(tmp_path, clock):
    root = tmp_path / "store"
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        old, new = (store.put("job", tensor_data_for(step), epoch=step) for step in range(2))
        store.settle()
    as_schema_3(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:  # as a crash would have left it
        conn.execute("INSERT INTO rebases VALUES (?, ?)", (new.checkpoint_id, old.checkpoint_id))
    conn.close()
    with CheckpointStore.open(root, config=TEST_CONFIG, clock=clock) as store:
        store.settle()
        catalog = store.context.catalog
        assert catalog.get_setting(WIDTHS_SETTING) is not None
        assert catalog.unknown_widths(b"", 10) == [] and catalog.pending_rebases() == []
        blocks = [record for _, record in catalog.manifest(new.checkpoint_id)]
        for record in blocks:
            expected = payload_width(store, record.pack_id, record.offset, record.codec)
            assert record.width == expected
        assert any(record.width for record in blocks)  # tensor blocks in byte planes
        assert Codec.BIASED_DELTA in [r.codec for _, r in catalog.manifest(old.checkpoint_id)]
        assert store.verify(read_data=True).ok
        for record in (old, new):
            assert restore_bytes(store, record.checkpoint_id) == tensor_data_for(record.epoch)


def test_deltas_written_before_schema_4_are_stored_whole_when_their_bases_die(tmp_path, clock):
    root = tmp_path / "store"
    with CheckpointStore.open(root, config=TEST_CONFIG, clock=clock) as store:
        kept, gone = (store.put("job", tensor_data_for(step), epoch=step) for step in range(2))
        store.settle()
        store.delete(gone.checkpoint_id)
    as_schema_3(root)
    clock.advance(TEST_CONFIG.gc_grace_s + 1)
    with CheckpointStore.open(root, config=TEST_CONFIG, clock=clock) as store:
        report = store.gc()
        assert report.blocks_materialized > 0 and report.blocks_removed > 0
        assert not any(r.base_id for _, r in store.context.catalog.manifest(kept.checkpoint_id))
        assert store.verify(read_data=True).ok
        assert restore_bytes(store, kept.checkpoint_id) == tensor_data_for(0)


def test_a_new_store_records_that_no_width_is_missing(store):
    assert store.context.catalog.get_setting(WIDTHS_SETTING) is not None


def test_packs_of_a_schema_8_store_get_their_live_bytes_and_gc_reclaims_them(tmp_path, clock):
    root = tmp_path / "store"
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        kept, gone = (store.put("job", tensor_data_for(step), epoch=step) for step in range(2))
        store.delete(gone.checkpoint_id)
        before = store.context.catalog.pack_usage()
    as_schema_8(root)
    clock.advance(TEST_CONFIG.gc_grace_s + 1)
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        catalog = store.context.catalog
        assert catalog.pack_usage() == before
        assert any(usage.live_bytes for usage in before)
        report = store.gc()
        assert report.blocks_removed > 0 and report.packs_deleted + report.packs_compacted > 0
        for usage in catalog.pack_usage():
            blocks = catalog.blocks_in_pack(usage.pack_id)
            assert usage.live_bytes == sum(block.entry_len for block in blocks)
        assert store.verify(read_data=True).ok
        assert restore_bytes(store, kept.checkpoint_id) == tensor_data_for(0)


def test_a_schema_9_store_lists_its_checkpoints_by_metric_and_counts_them(tmp_path, clock):
    root = tmp_path / "store"
    losses = [0.5, 0.1, None, 0.3]
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        for step, loss in enumerate(losses):
            metrics = {} if loss is None else {"loss": loss}
            store.put("job", tensor_data_for(step), epoch=step, metrics=metrics)
            clock.advance(1)
    as_schema_9(root)
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        query = ListQuery("", "job", "loss", descending=False, limit=3)
        page, total, cursor = store.context.catalog.list_checkpoints(query)
        assert [record.epoch for record in page] == [1, 3, 0] and total == 4
        rest, _, _ = store.context.catalog.list_checkpoints(replace(query, cursor=cursor))
        assert [record.epoch for record in rest] == [2]
        store.put("job", tensor_data_for(9), epoch=9, metrics={"loss": 0.0})
        page, total, _ = store.context.catalog.list_checkpoints(query)
        assert [record.epoch for record in page] == [9, 1, 3] and total == 5


def test_best_copies_of_a_schema_10_store_keep_their_own_rows_and_new_ones_share(tmp_path, clock):
    root = tmp_path / "store"
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        first = store.put("job", tensor_data_for(0), epoch=0, metrics={"validationLoss": 0.5})
    as_schema_10(root)
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        catalog = store.context.catalog
        (old_best,) = [c for c in store.list("job").checkpoints if c.type == "best"]
        store.delete(first.checkpoint_id)
        assert restore_bytes(store, old_best.checkpoint_id) == tensor_data_for(0)
        clock.advance(1)
        second = store.put("job", tensor_data_for(1), epoch=1, metrics={"validationLoss": 0.1})
        (new_best,) = [c for c in store.list("job").checkpoints if c.type == "best"]
        assert new_best.parent_id == second.checkpoint_id
        rows = "SELECT COUNT(*) FROM manifest_pages WHERE checkpoint_id = ?"
        assert catalog._conn().execute(rows, (new_best.checkpoint_id,)).fetchone() == (0,)
        store.delete(second.checkpoint_id)
        assert restore_bytes(store, new_best.checkpoint_id) == tensor_data_for(1)
        assert store.verify(read_data=True).ok
        store.delete(new_best.checkpoint_id)
        clock.advance(TEST_CONFIG.gc_grace_s + 1)
        store.gc()
        assert store.stats().blocks == 0


def as_schema_7(root: Path) -> None:
    """Turn a store's catalog into what the code of schema 7 wrote: no file rows, no
    digests, no layouts."""
    as_schema_8(root)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        conn.execute("DROP TABLE files")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN sha256")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN layout")
        conn.execute("PRAGMA user_version = 7")
    conn.close()


def test_checkpoints_from_schema_7_read_as_one_file_beside_new_folders(tmp_path, clock):
    root = tmp_path / "store"
    with CheckpointStore.open(root, config=TEST_CONFIG, clock=clock) as store:
        old = store.put("job", tensor_data_for(0), epoch=0)
    as_schema_7(root)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(tensor_data_for(1))
    with CheckpointStore.open(root, config=TEST_CONFIG, clock=clock) as store:
        assert store.context.catalog.schema_version() == SQLITE_SCHEMA_VERSION
        record = store.get(old.checkpoint_id)
        assert (record.layout, record.sha256) == ("file", None)
        (only,) = store.files(old.checkpoint_id)
        assert (only.path, only.offset, only.size_bytes) == (
            f"{old.checkpoint_id}.ckpt",
            0,
            len(tensor_data_for(0)),
        )
        new = store.put("job", folder, epoch=1)
        store.settle()  # slots of a folder name their file: no pairs with the old one
        assert restore_bytes(store, old.checkpoint_id) == tensor_data_for(0)
        with store.open_reader(new.checkpoint_id, path="model.safetensors") as reader:
            assert reader.read() == tensor_data_for(1)
        assert store.verify(read_data=True).ok


# The statements of PostgreSQL schemas 1 and 4 that made the block tables of schema 6.
_POSTGRES_BLOCK_TABLES = (
    "CREATE TABLE packs",
    "CREATE TABLE blocks",
    "CREATE INDEX blocks_",
    "CREATE TABLE manifests",
    "CREATE INDEX manifests_",
)


def as_postgres_schema_6(url: str) -> None:
    """Turn a PostgreSQL catalog into what the code of its schema 6 wrote: a manifest row
    per entry, blocks and packs keyed by id (made by the statements of schemas 1 and 4
    themselves), no per-tenant references."""
    import psycopg

    from ckptstore.store.catalog.manifestpages import decode_page
    from ckptstore.store.catalog.postgres.schema import MIGRATIONS as POSTGRES_MIGRATIONS

    with psycopg.connect(url) as conn:  # one transaction
        # schema 8's job sizes go, with the trigger function that kept them
        conn.execute("DROP TRIGGER checkpoints_listing ON checkpoints")
        conn.execute("DROP FUNCTION checkpoints_listing()")
        conn.execute("ALTER TABLE job_counts DROP COLUMN size_bytes")
        for statement in POSTGRES_MIGRATIONS[5]:
            if isinstance(statement, str) and "checkpoints_listing()" in statement:
                conn.execute(statement)
        packs = conn.execute("SELECT pack_id, size, created_at FROM packs").fetchall()
        blocks = conn.execute(
            "SELECT block_id, pack_id, pack_offset, stored_len, raw_len, codec, base_id,"
            " COALESCE((SELECT SUM(refs) FROM tenant_refs t WHERE t.block_key = b.block_key), 0),"
            " (SELECT dead_since FROM unreferenced_blocks u WHERE u.block_key = b.block_key),"
            " header_len, width FROM block_rows b"
        ).fetchall()
        ids = dict(conn.execute("SELECT block_key, block_id FROM blocks").fetchall())
        manifests = []
        for checkpoint_id, entries in conn.execute(
            "SELECT checkpoint_id, entries FROM manifest_pages ORDER BY checkpoint_id, page"
        ).fetchall():
            page = decode_page(entries)
            first = sum(1 for row in manifests if row[0] == checkpoint_id)
            manifests += [
                (checkpoint_id, first + n, ids[key], offset, slot)
                for n, (key, offset, slot) in enumerate(
                    zip(page.keys, page.offsets, page.slots, strict=True)
                )
            ]
        conn.execute("DROP VIEW block_rows")
        tables = ("blocks", "packs", "tenant_refs", "unreferenced_blocks", "manifest_pages")
        for table in (*tables, "lost_blocks"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP FUNCTION blocks_live_change(), blocks_live_move()")
        for statement in POSTGRES_MIGRATIONS[1]:
            if isinstance(statement, str) and statement.startswith(_POSTGRES_BLOCK_TABLES):
                conn.execute(statement)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO packs VALUES (%s, %s, %s)", packs)
            cur.executemany(
                "INSERT INTO blocks (block_id, pack_id, pack_offset, stored_len, raw_len, codec,"
                " base_id, refcount, dead_since, header_len, width)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                blocks,
            )
            cur.executemany("INSERT INTO manifests VALUES (%s, %s, %s, %s, %s)", manifests)
        for statement in POSTGRES_MIGRATIONS[4]:  # live bytes, and the triggers keeping them
            assert isinstance(statement, str)
            conn.execute(statement)
        conn.execute("DELETE FROM ckptstore_schema WHERE version > 6")


def _catalog_view(store: CheckpointStore, tenants: list[str]) -> dict[str, object]:
    """What a catalog says of its checkpoints and blocks, through the catalog API."""
    catalog = store.context.catalog
    ids = sorted(c.checkpoint_id for t in tenants for c in store.list("job", tenant=t).checkpoints)
    return {
        "manifests": {i: catalog.manifest(i) for i in ids},
        "slots": {i: catalog.slots(i) for i in ids},
        "files": {i: catalog.files(i) for i in ids},
        # by pack and offset: packs in the order of their keys since schema 7
        "blocks": sorted(catalog.iter_blocks(), key=lambda r: (r.pack_id, r.offset)),
        "packs": catalog.pack_usage(),
        "stats": catalog.stats(),
    }


def test_a_postgres_catalog_of_schema_6_reads_the_same_as_manifest_pages(
    tmp_path, clock, postgres_url
):
    import psycopg

    root = tmp_path / "store"
    open_store = lambda: CheckpointStore.open(  # noqa: E731
        root, catalog=postgres_url, config=TEST_CONFIG, clock=clock
    )
    with open_store() as store:
        for step in range(2):  # the first is re-encoded as deltas on the second
            store.put(
                "job", tensor_data_for(step), epoch=step, metrics={"validationLoss": 1 - step}
            )
            clock.advance(1)
        store.put("job", tensor_data_for(1), tenant="other", epoch=1)  # the same blocks
        store.settle()
        store.encode_deferred()  # as closing would, before the view
        before = _catalog_view(store, ["", "other"])
        bases = [r.base_id for _, m in before["manifests"].items() for _, r in m if r.base_id]
        assert bases  # a delta block
    as_postgres_schema_6(postgres_url)
    with open_store() as store:
        catalog = store.context.catalog
        assert catalog.schema_version() == POSTGRES_SCHEMA_VERSION
        assert _catalog_view(store, ["", "other"]) == before
        with psycopg.connect(postgres_url) as conn:
            # a block is unreferenced if and only if no tenant references it
            assert conn.execute(
                "SELECT COUNT(*) FROM blocks b WHERE"
                " EXISTS (SELECT 1 FROM tenant_refs t WHERE t.block_key = b.block_key)"
                " = EXISTS (SELECT 1 FROM unreferenced_blocks u WHERE u.block_key = b.block_key)"
            ).fetchone() == (0,)
        (theirs,) = store.list("job", tenant="other").checkpoints
        shared = [record.block_id for _, record in catalog.manifest(theirs.checkpoint_id)]
        for tenant in ("", "other"):
            assert catalog.new_to_tenant(tenant, shared) == []
        assert len(catalog.new_to_tenant("third", shared)) == len(set(shared))
        assert store.verify(read_data=True).ok
        (copy,) = [c for c in store.list("job").checkpoints if c.type == "best"]
        store.delete(copy.parent_id)  # its pages pass to the best copy
        assert restore_bytes(store, copy.checkpoint_id) == tensor_data_for(1)
        assert store.verify(read_data=True).ok
        for tenant in ("", "other"):
            for record in store.list("job", tenant=tenant).checkpoints:
                store.delete(record.checkpoint_id, tenant=tenant)
        clock.advance(TEST_CONFIG.gc_grace_s + 1)
        store.gc()
        assert store.stats().blocks == 0


def test_entries_of_a_postgres_schema_6_catalog_whose_block_row_is_gone_keep_its_id(
    tmp_path, clock, postgres_url
):
    import psycopg

    root = tmp_path / "store"
    with CheckpointStore.open(root, catalog=postgres_url, config=NO_DELTAS, clock=clock) as s:
        record = s.put("job", tensor_data_for(0), epoch=0)
        _, first = s.context.catalog.manifest(record.checkpoint_id)[0]
    as_postgres_schema_6(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # a damaged catalog
        conn.execute("DELETE FROM blocks WHERE block_id = %s", (first.block_id,))
    with CheckpointStore.open(root, catalog=postgres_url, config=NO_DELTAS, clock=clock) as s:
        report = s.verify()
        assert [(f.kind, f.block_id, f.checkpoints) for f in report.findings] == [
            ("missing_block", first.block_id.hex(), (record.checkpoint_id,))
        ]


def test_a_postgres_catalog_of_schema_2_migrates_to_folders(tmp_path, clock, postgres_url):
    import psycopg

    root = tmp_path / "store"
    with CheckpointStore.open(root, catalog=postgres_url, config=TEST_CONFIG, clock=clock) as s:
        old = s.put("job", tensor_data_for(0), epoch=0)
    as_postgres_schema_6(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as schema 2 left it
        for statement in (  # schemas 4 to 6
            "ALTER TABLE checkpoints DROP COLUMN manifest_of",
            "DROP TABLE metric_order",
            "DROP TABLE job_counts",
            "DROP TRIGGER checkpoints_listing ON checkpoints",
            "DROP FUNCTION checkpoints_listing()",
            "DROP TRIGGER blocks_live_insert ON blocks",
            "DROP TRIGGER blocks_live_delete ON blocks",
            "DROP TRIGGER blocks_live_update ON blocks",
            "DROP FUNCTION blocks_live_change()",
            "DROP FUNCTION blocks_live_move()",
            "ALTER TABLE packs DROP COLUMN live_bytes",
        ):
            conn.execute(statement)
        conn.execute("DROP TABLE files")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN sha256, DROP COLUMN layout")
        conn.execute("DELETE FROM ckptstore_schema WHERE version > 2")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(tensor_data_for(1))
    with CheckpointStore.open(root, catalog=postgres_url, config=TEST_CONFIG, clock=clock) as s:
        assert s.context.catalog.schema_version() == POSTGRES_SCHEMA_VERSION
        (only,) = s.files(old.checkpoint_id)
        assert (only.path, only.sha256) == (f"{old.checkpoint_id}.ckpt", None)
        new = s.put("job", folder, epoch=1)
        assert [f.path for f in s.files(new.checkpoint_id)] == ["model.safetensors"]
        assert restore_bytes(s, old.checkpoint_id) == tensor_data_for(0)
        assert s.verify(read_data=True).ok


def test_a_schema_12_store_gets_its_jobs_sizes(tmp_path, clock):
    root = tmp_path / "store"
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        first = store.put("job", tensor_data_for(0))
        store.put("job", tensor_data_for(1))
    as_schema_12(root)
    with CheckpointStore.open(root, config=NO_DELTAS, clock=clock) as store:
        catalog = store.context.catalog
        sizes = len(tensor_data_for(0)) + len(tensor_data_for(1))
        assert catalog.job_totals("", "job") == (2, sizes)
        store.delete(first.checkpoint_id)
        assert catalog.job_totals("", "job") == (1, len(tensor_data_for(1)))


def test_a_schema_11_catalog_keeps_each_tenants_blocks_and_its_lost_ids(tmp_path):
    """Migrating to integer keys and manifest pages keeps what each tenant sees, the
    shared manifest of a best copy, delta bases, and the id of a block whose row a
    damaged catalog lost."""
    from ckptstore.store.catalog.sqlite import SQLiteCatalog
    from ckptstore.testing.catalog.helpers import NOW, TTL, bid, checkpoint, record

    path = tmp_path / "catalog.sqlite"
    catalog = SQLiteCatalog(path)
    blocks = [record(1), record(2), record(3, base=bid(1)), record(4)]
    catalog.add_pack("pack0001", 4096, blocks, NOW, "h", NOW + TTL)
    catalog.commit_checkpoint(checkpoint("a"), [(0, bid(1)), (1000, bid(3))], "h", ["t#0", None])
    catalog.commit_checkpoint(
        checkpoint("b", tenant_id="other"), [(0, bid(2)), (1000, bid(1))], "h"
    )
    catalog.commit_checkpoint(checkpoint("c"), [(0, bid(4))], "h")
    catalog.replace_best(checkpoint("copy", type="best", parent_id="a"), None)
    catalog.close()
    as_schema_11(tmp_path)
    with sqlite3.connect(path) as conn:  # a damaged catalog: a referenced block's row is gone
        conn.execute("DELETE FROM blocks WHERE block_id = ?", (bid(4),))
    conn.close()

    catalog = SQLiteCatalog(path)
    try:
        assert catalog.schema_version() == SQLITE_SCHEMA_VERSION
        assert [(o, r.block_id) for o, r in catalog.manifest("copy")] == [
            (0, bid(1)),
            (1000, bid(3)),
        ]
        assert list(catalog.slots("a")) == ["t#0"]
        assert catalog.get_block(bid(3)).base_id == bid(1)
        assert catalog.lease_visible([bid(1), bid(2), bid(3)], "", "x", NOW + TTL) == {
            bid(1),
            bid(3),
        }
        assert catalog.lease_visible([bid(1), bid(2), bid(3)], "other", "y", NOW + TTL) == {
            bid(1),
            bid(2),
        }
        assert catalog.missing_manifest_blocks() == [("c", bid(4))]
        catalog.release_leases("x")
        catalog.release_leases("y")
        catalog.delete_checkpoint("b", NOW)
        assert catalog.lease_visible([bid(1), bid(2)], "other", "y", NOW + TTL) == set()
        assert [r.block_id for r in catalog.unreferenced([bid(1), bid(2)])] == [bid(2)]
    finally:
        catalog.close()
