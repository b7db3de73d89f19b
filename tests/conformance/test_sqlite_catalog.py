import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptstore.errors import FormatError
from ckptstore.store.catalog.records import UNKNOWN_WIDTH
from ckptstore.store.catalog.schema import MIGRATIONS
from ckptstore.store.catalog.sqlite import SCHEMA_VERSION, SQLiteCatalog
from ckptstore.store.catalog.sqlite import maintenance as removal
from ckptstore.store.rebase import choose_rebase_parent
from ckptstore.testing.catalog import CatalogTests
from ckptstore.testing.catalog.helpers import NOW, bid, checkpoint


def old_catalog(path: Path, version: int) -> sqlite3.Connection:
    """A catalog as ckptstore left it at schema ``version`` (its migrations only)."""
    conn = sqlite3.connect(path)
    for target in range(1, version + 1):
        for statement in MIGRATIONS[target]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


class TestSQLiteCatalog(CatalogTests):
    @pytest.fixture(autouse=True)
    def small_removal_batches(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """GC removes dead blocks in transactions of 2, so every test crosses batches."""
        monkeypatch.setattr(removal, "REMOVAL_BATCH", 2)

    @pytest.fixture
    def catalog(self, tmp_path: Path) -> Iterator[SQLiteCatalog]:
        catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
        yield catalog
        catalog.close()

    def test_a_best_copy_writes_no_manifest_rows(self, catalog: SQLiteCatalog) -> None:
        self.add(catalog, 1, 2)
        catalog.commit_checkpoint(checkpoint("src"), [(0, bid(1)), (1000, bid(2))], "h")
        catalog.replace_best(checkpoint("copy", type="best", parent_id="src"), None)
        count = "SELECT COUNT(*) FROM manifest_pages"
        assert catalog._conn().execute(count).fetchone()[0] == 1  # a page holds both entries
        catalog.delete_checkpoint("src", NOW)  # its page passes to the copy
        assert catalog._conn().execute(count).fetchone()[0] == 1
        assert [r.block_id for _, r in catalog.manifest("copy")] == [bid(1), bid(2)]

    def test_schema_version_is_recorded(self, catalog: SQLiteCatalog) -> None:
        assert catalog.schema_version() == SCHEMA_VERSION

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "future.sqlite"
        SQLiteCatalog(path).close()
        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(FormatError, match="schema version"):
            SQLiteCatalog(path)

    def test_version_1_catalog_is_migrated_and_keeps_its_checkpoints(self, tmp_path: Path) -> None:
        path = tmp_path / "v1.sqlite"
        with old_catalog(path, 1) as conn:
            conn.execute(
                "INSERT INTO blocks (block_id, pack_id, pack_offset, stored_len, raw_len, codec,"
                " refcount) VALUES (?, 'p', 16, 10, 10, 0, 1)",
                (bid(1),),
            )
            conn.execute(
                "INSERT INTO checkpoints (checkpoint_id, job_id, type, name, status, size_bytes,"
                " stored_bytes, created_at) VALUES ('c1', 'job', 'automatic', 'c1', 'ready',"
                f" 10, 10, {NOW})"
            )
            conn.execute("INSERT INTO manifests VALUES ('c1', 0, ?, 0)", (bid(1),))
        conn.close()
        catalog = SQLiteCatalog(path)
        try:
            assert catalog.schema_version() == SCHEMA_VERSION
            assert [r.block_id for _, r in catalog.manifest("c1")] == [bid(1)]
            assert catalog.slots("c1") == {}  # v1 manifests have no slots
            assert catalog.pending_rebases() == []
            parent = catalog.commit_checkpoint(
                checkpoint("c2", created=NOW + 1), [(0, bid(1))], "h", ["t#0"], choose_rebase_parent
            )
            assert parent == "c1" and catalog.pending_rebases() == [("c2", "c1")]
            assert list(catalog.slots("c2")) == ["t#0"]
        finally:
            catalog.close()

    def test_version_3_blocks_get_pack_format_1_headers_and_an_unknown_width(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "v3.sqlite"
        with old_catalog(path, 3) as conn:
            conn.execute(
                "INSERT INTO blocks (block_id, pack_id, pack_offset, stored_len, raw_len, codec,"
                " refcount) VALUES (?, 'p', 16, 10, 12, 4, 1)",
                (bid(1),),
            )
            conn.execute("INSERT INTO packs VALUES ('p', 102, 0)")
        conn.close()
        catalog = SQLiteCatalog(path)
        try:
            (old,) = catalog.unknown_widths(b"", 10)
            assert (old.header_len, old.width, old.entry_end) == (76, UNKNOWN_WIDTH, 16 + 76 + 10)
            assert catalog.pack_usage()[0].live_bytes == 76 + 10
            catalog.record_widths({bid(1): 2})
            assert catalog.get_block(bid(1)).width == 2
            assert catalog.unknown_widths(b"", 10) == []
        finally:
            catalog.close()

    def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        path = tmp_path / "c.sqlite"
        first = SQLiteCatalog(path)
        first.set_setting_if_absent("x", "1")
        first.close()
        second = SQLiteCatalog(path)
        assert second.get_setting("x") == "1"
        second.close()

    def test_version_6_endpoint_names_held_twice_are_told_apart(self, tmp_path: Path) -> None:
        path = tmp_path / "v6.sqlite"
        with old_catalog(path, 6) as conn:
            conn.execute(
                "INSERT INTO checkpoints (checkpoint_id, job_id, type, name, status, size_bytes,"
                f" stored_bytes, created_at) VALUES ('c1', 'job', 'automatic', 'c1', 'ready', 10,"
                f" 10, {NOW})"
            )
            for endpoint_id, tenant, created in [
                ("ep_b", "t", NOW),
                ("ep_a", "t", NOW + 1),
                ("ep_c", "u", NOW + 2),
            ]:
                conn.execute(
                    "INSERT INTO endpoints (endpoint_id, tenant_id, name, checkpoint_id,"
                    " worker_count, status, created_at)"
                    " VALUES (?, ?, 'serve', 'c1', 1, 'ready', ?)",
                    (endpoint_id, tenant, created),
                )
        conn.close()
        catalog = SQLiteCatalog(path)
        try:
            names = {e.endpoint_id: e.name for t in "tu" for e in catalog.list_endpoints(t)}
            # the older holder keeps the name; another tenant's endpoint is no clash
            assert names == {"ep_b": "serve", "ep_a": "serve (ep_a)", "ep_c": "serve"}
        finally:
            catalog.close()
