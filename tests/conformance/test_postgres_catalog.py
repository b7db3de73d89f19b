"""The shipped catalog tests against PostgreSQL, each in a fresh schema; and its
migrations, version check and locks."""

from collections.abc import Iterator

import psycopg
import pytest

from ckptstore.errors import CheckpointNotFound, FormatError, InvalidArgument, MissingBlockError
from ckptstore.store.catalog.postgres import SCHEMA_VERSION, PostgresCatalog
from ckptstore.store.catalog.postgres import maintenance as removal
from ckptstore.store.catalog.postgres.schema import MIGRATIONS
from ckptstore.store.catalog.records import ListQuery
from ckptstore.testing.catalog import CatalogTests
from ckptstore.testing.catalog.helpers import NOW, bid, checkpoint


class TestPostgresCatalog(CatalogTests):
    @pytest.fixture(autouse=True)
    def small_removal_batches(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """GC removes dead blocks in transactions of 2, so every test crosses batches."""
        monkeypatch.setattr(removal, "REMOVAL_BATCH", 2)

    @pytest.fixture
    def catalog(self, postgres_url: str) -> Iterator[PostgresCatalog]:
        catalog = PostgresCatalog(postgres_url, pool_size=2)
        yield catalog
        catalog.close()

    def test_a_best_copy_writes_no_manifest_rows(
        self, catalog: PostgresCatalog, postgres_url: str
    ) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("src"), [(0, bid(1)), (1000, bid(2))], "h")
        catalog.replace_best(checkpoint("copy", type="best", parent_id="src"), None)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            count = "SELECT COUNT(*) FROM manifest_pages"
            assert conn.execute(count).fetchone() == (1,)
            catalog.delete_checkpoint("src", NOW)  # its rows pass to the copy
            assert conn.execute(count).fetchone() == (1,)
        assert [r.block_id for _, r in catalog.manifest("copy")] == [bid(1), bid(2)]

    def test_a_block_row_deleted_by_hand_is_still_named_by_its_id(
        self, catalog: PostgresCatalog, postgres_url: str
    ) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1)), (1000, bid(2))], "h")
        catalog.replace_best(checkpoint("copy", type="best", parent_id="c"), None)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DELETE FROM blocks WHERE block_id = %s", (bid(1),))
        with pytest.raises(MissingBlockError) as missing:
            catalog.manifest("copy")
        assert missing.value.block_ids == [bid(1).hex()]
        assert catalog.missing_manifest_blocks() == [("c", bid(1)), ("copy", bid(1))]
        assert catalog.checkpoints_using([bid(1)]) == {bid(1): ["c", "copy"]}

    def test_a_block_gone_after_its_key_was_read_fails_the_commit_naming_its_id(
        self, catalog: PostgresCatalog, postgres_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.add(catalog, 1, 2)
        read = catalog._keys_of

        def then_gone(block_ids: list[bytes]) -> dict[bytes, int]:
            keys = read(block_ids)  # read before the commit's transaction, as always
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("DELETE FROM blocks WHERE block_id = %s", (bid(2),))
            return keys

        monkeypatch.setattr(catalog, "_keys_of", then_gone)
        with pytest.raises(MissingBlockError) as missing:
            catalog.commit_checkpoint(checkpoint("c"), [(0, bid(1)), (1000, bid(2))], "h")
        assert missing.value.block_ids == [bid(2).hex()]
        with pytest.raises(CheckpointNotFound):
            catalog.get_checkpoint("c")

    def test_schema_version_is_recorded(self, catalog: PostgresCatalog) -> None:
        assert catalog.schema_version() == SCHEMA_VERSION

    def test_newer_schema_is_refused(self, postgres_url: str) -> None:
        PostgresCatalog(postgres_url).close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("INSERT INTO ckptstore_schema VALUES (%s)", (SCHEMA_VERSION + 1,))
        with pytest.raises(FormatError, match="schema version"):
            PostgresCatalog(postgres_url)

    def test_reopen_keeps_data_and_migrates_once(self, postgres_url: str) -> None:
        first = PostgresCatalog(postgres_url)
        first.set_setting_if_absent("x", "1")
        first.close()
        second = PostgresCatalog(postgres_url)
        assert second.get_setting("x") == "1"
        second.close()
        with psycopg.connect(postgres_url) as conn:
            versions = conn.execute("SELECT version FROM ckptstore_schema").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]

    def test_version_1_packs_and_checkpoints_get_live_bytes_metric_order_and_counts(
        self, postgres_url: str
    ) -> None:
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE ckptstore_schema (version INTEGER NOT NULL)")
            for statement in MIGRATIONS[1]:
                conn.execute(statement)
            conn.execute("INSERT INTO ckptstore_schema VALUES (1)")
            conn.execute("INSERT INTO packs VALUES ('p', 300, 0), ('q', 100, 0)")
            for n, metrics in enumerate(('{"loss": 2}', '{"loss": 1.5}', "{}")):
                conn.execute(
                    "INSERT INTO checkpoints (checkpoint_id, job_id, type, name, metrics,"
                    " status, size_bytes, stored_bytes, created_at)"
                    " VALUES (%s, 'job', 'automatic', 'n', %s, 'ready', 0, 0, %s)",
                    (f"c{n}", metrics, float(n)),
                )
            for n, length in enumerate((10, 20)):
                conn.execute(
                    "INSERT INTO blocks (block_id, pack_id, pack_offset, stored_len, raw_len,"
                    " codec, refcount, header_len) VALUES (%s, 'p', %s, %s, 12, 4, 1, 76)",
                    (bid(n), 16 + 100 * n, length),
                )
        catalog = PostgresCatalog(postgres_url)
        try:
            assert [(u.pack_id, u.live_bytes) for u in catalog.pack_usage()] == [
                ("p", 2 * 76 + 30),
                ("q", 0),
            ]
            page, total, _ = catalog.list_checkpoints(ListQuery("", "job", "loss", False, None))
            assert [r.checkpoint_id for r in page] == ["c1", "c0", "c2"] and total == 3
        finally:
            catalog.close()

    def test_version_1_endpoint_names_held_twice_are_told_apart(self, postgres_url: str) -> None:
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE ckptstore_schema (version INTEGER NOT NULL)")
            for statement in MIGRATIONS[1]:
                conn.execute(statement)
            conn.execute("INSERT INTO ckptstore_schema VALUES (1)")
            for endpoint_id, tenant, created in [("ep_b", "t", 1.0), ("ep_a", "t", 2.0)]:
                conn.execute(
                    "INSERT INTO endpoints (endpoint_id, tenant_id, name, checkpoint_id,"
                    " worker_count, status, created_at)"
                    " VALUES (%s, %s, 'serve', 'c1', 1, 'ready', %s)",
                    (endpoint_id, tenant, created),
                )
            conn.execute(
                "INSERT INTO endpoints (endpoint_id, tenant_id, name, checkpoint_id,"
                " worker_count, status, created_at) VALUES ('ep_c', 'u', 'serve', 'c1', 1,"
                " 'ready', 3.0)"
            )
        catalog = PostgresCatalog(postgres_url, pool_size=1)
        try:
            names = {e.endpoint_id: e.name for t in "tu" for e in catalog.list_endpoints(t)}
            # the older holder keeps the name; another tenant's endpoint is no clash
            assert names == {"ep_b": "serve", "ep_a": "serve (ep_a)", "ep_c": "serve"}
        finally:
            catalog.close()

    def test_a_url_without_a_schema_is_refused(self, postgres_url: str) -> None:
        missing = postgres_url.rsplit("%3D", 1)[0] + "%3Dno_such_schema_here"
        with pytest.raises(InvalidArgument, match="search_path"):
            PostgresCatalog(missing)

    def test_processes_opening_together_migrate_once(self, postgres_url: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            catalogs = list(
                pool.map(lambda _: PostgresCatalog(postgres_url, pool_size=1), range(4))
            )
        for catalog in catalogs:
            assert catalog.schema_version() == SCHEMA_VERSION
            catalog.close()
        with psycopg.connect(postgres_url) as conn:
            versions = conn.execute("SELECT version FROM ckptstore_schema").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]

    def test_the_gc_lock_is_exclusive_across_connections(self, catalog: PostgresCatalog) -> None:
        with catalog.exclusive(wait=False) as first:
            assert first
            with catalog.exclusive(wait=False) as second:
                assert not second
        with catalog.exclusive(wait=False) as again:
            assert again
