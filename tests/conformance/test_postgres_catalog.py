"""The shipped catalog tests against PostgreSQL, each in a fresh schema; and its
migrations, version check and locks."""

from collections.abc import Iterator

import psycopg
import pytest

from ckptstore.errors import FormatError, InvalidArgument
from ckptstore.store.catalog.postgres import SCHEMA_VERSION, PostgresCatalog
from ckptstore.store.catalog.postgres.schema import MIGRATIONS
from ckptstore.testing.catalog import CatalogTests


class TestPostgresCatalog(CatalogTests):
    @pytest.fixture
    def catalog(self, postgres_url: str) -> Iterator[PostgresCatalog]:
        catalog = PostgresCatalog(postgres_url, pool_size=2)
        yield catalog
        catalog.close()

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
