from __future__ import annotations

import os

from ckptstore.store.catalog.base import (
    BlockIndex,
    Catalog,
    Checkpoints,
    ExclusiveLock,
    Files,
    Leases,
    Maintenance,
    ParentRule,
    Rebases,
    ServiceRecords,
)
from ckptstore.store.catalog.records import (
    CHECKPOINT_TYPES,
    ApiKeyRecord,
    BlockRecord,
    CatalogStats,
    CheckpointRecord,
    EndpointRecord,
    FileRecord,
    JobListing,
    ListQuery,
    PackUsage,
)
from ckptstore.store.catalog.sqlite import SQLiteCatalog

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_catalog_url(value: str) -> bool:
    """Whether ``value`` names a database server's catalog rather than a file."""
    return value.startswith(POSTGRES_SCHEMES)


def open_catalog(url_or_path: str | os.PathLike[str]) -> Catalog:
    """The catalog a URL or path names: ``postgresql://...`` (the ``postgres`` extra),
    else a SQLite file at that path."""
    location = os.fspath(url_or_path)
    if is_catalog_url(location):
        try:
            from ckptstore.store.catalog.postgres import PostgresCatalog
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"a PostgreSQL catalog needs {exc.name}: pip install 'ckptstore[postgres]'",
                name=exc.name,
            ) from None
        return PostgresCatalog(location)
    return SQLiteCatalog(location)


__all__ = [
    "CHECKPOINT_TYPES",
    "ApiKeyRecord",
    "BlockIndex",
    "BlockRecord",
    "Catalog",
    "CatalogStats",
    "CheckpointRecord",
    "Checkpoints",
    "EndpointRecord",
    "ExclusiveLock",
    "FileRecord",
    "Files",
    "Leases",
    "JobListing",
    "ListQuery",
    "Maintenance",
    "PackUsage",
    "ParentRule",
    "Rebases",
    "SQLiteCatalog",
    "ServiceRecords",
    "is_catalog_url",
    "open_catalog",
]
