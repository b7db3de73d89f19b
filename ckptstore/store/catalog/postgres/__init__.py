"""PostgresCatalog: the catalog in a PostgreSQL schema, shared by every process and
machine that opens it (psycopg 3, a connection pool per process)."""

from __future__ import annotations

from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.postgres.blocks import PostgresBlockIndex
from ckptstore.store.catalog.postgres.checkpoints import PostgresCheckpoints
from ckptstore.store.catalog.postgres.files import PostgresFiles
from ckptstore.store.catalog.postgres.leases import PostgresLeases
from ckptstore.store.catalog.postgres.lookups import PostgresLookups
from ckptstore.store.catalog.postgres.maintenance import PostgresMaintenance
from ckptstore.store.catalog.postgres.rebases import PostgresRebases
from ckptstore.store.catalog.postgres.schema import SCHEMA_VERSION
from ckptstore.store.catalog.postgres.service import PostgresServiceRecords


class PostgresCatalog(
    PostgresBlockIndex,
    PostgresLeases,
    PostgresCheckpoints,
    PostgresLookups,
    PostgresFiles,
    PostgresRebases,
    PostgresMaintenance,
    PostgresServiceRecords,
    Catalog,
):
    """The catalog in one PostgreSQL schema: each part a Protocol's methods over the
    pool of connections that PostgresDatabase keeps."""


__all__ = ["SCHEMA_VERSION", "PostgresCatalog"]
