"""SQLiteCatalog: the whole catalog in one SQLite file, one part per Protocol."""

from __future__ import annotations

from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.schema import SCHEMA_VERSION
from ckptstore.store.catalog.sqlite.blocks import SQLiteBlockIndex
from ckptstore.store.catalog.sqlite.checkpoints import SQLiteCheckpoints
from ckptstore.store.catalog.sqlite.files import SQLiteFiles
from ckptstore.store.catalog.sqlite.leases import SQLiteLeases
from ckptstore.store.catalog.sqlite.lookups import SQLiteLookups
from ckptstore.store.catalog.sqlite.maintenance import SQLiteMaintenance
from ckptstore.store.catalog.sqlite.rebases import SQLiteRebases
from ckptstore.store.catalog.sqlite.service import SQLiteServiceRecords


class SQLiteCatalog(
    SQLiteBlockIndex,
    SQLiteLeases,
    SQLiteCheckpoints,
    SQLiteLookups,
    SQLiteFiles,
    SQLiteRebases,
    SQLiteMaintenance,
    SQLiteServiceRecords,
    Catalog,
):
    """The catalog in one SQLite file: each part a Protocol's methods over the one
    connection per thread that SQLiteDatabase keeps."""


__all__ = ["SCHEMA_VERSION", "SQLiteCatalog"]
