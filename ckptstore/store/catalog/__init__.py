from ckptstore.store.catalog.base import (
    BlockIndex,
    Catalog,
    Checkpoints,
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
    ListQuery,
    PackUsage,
)
from ckptstore.store.catalog.sqlite import SQLiteCatalog

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
    "Leases",
    "ListQuery",
    "Maintenance",
    "PackUsage",
    "ParentRule",
    "Rebases",
    "SQLiteCatalog",
    "ServiceRecords",
]
