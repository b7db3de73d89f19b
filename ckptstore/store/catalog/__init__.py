from ckptstore.store.catalog.base import (
    CHECKPOINT_TYPES,
    BlockRecord,
    Catalog,
    CatalogStats,
    CheckpointRecord,
    ListQuery,
    PackUsage,
)
from ckptstore.store.catalog.sqlite import SQLiteCatalog

__all__ = [
    "CHECKPOINT_TYPES",
    "BlockRecord",
    "Catalog",
    "CatalogStats",
    "CheckpointRecord",
    "ListQuery",
    "PackUsage",
    "SQLiteCatalog",
]
