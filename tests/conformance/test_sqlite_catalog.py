from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptstore.errors import FormatError
from ckptstore.store.catalog.sqlite import SCHEMA_VERSION, SQLiteCatalog
from ckptstore.testing.catalog_tests import CatalogTests


class TestSQLiteCatalog(CatalogTests):
    @pytest.fixture
    def catalog(self, tmp_path: Path) -> Iterator[SQLiteCatalog]:
        catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
        yield catalog
        catalog.close()

    def test_schema_version_is_recorded(self, catalog: SQLiteCatalog) -> None:
        assert catalog.schema_version() == SCHEMA_VERSION

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "future.sqlite"
        SQLiteCatalog(path).close()
        import sqlite3

        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(FormatError, match="schema version"):
            SQLiteCatalog(path)

    def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        path = tmp_path / "c.sqlite"
        first = SQLiteCatalog(path)
        first.set_setting_if_absent("x", "1")
        first.close()
        second = SQLiteCatalog(path)
        assert second.get_setting("x") == "1"
        second.close()
