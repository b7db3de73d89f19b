"""ckptstore: deduplicating, compressing storage for ML training checkpoints."""

from ckptstore.errors import (
    CheckpointNotFound,
    CkptStoreError,
    CorruptBlockError,
    InvalidArgument,
    MissingBlockError,
)
from ckptstore.store.checkpoints import CheckpointPage, CheckpointStore, StoreStats
from ckptstore.store.context import StoreConfig

__all__ = [
    "CheckpointNotFound",
    "CheckpointPage",
    "CheckpointStore",
    "CkptStoreError",
    "CorruptBlockError",
    "InvalidArgument",
    "MissingBlockError",
    "StoreConfig",
    "StoreStats",
]
