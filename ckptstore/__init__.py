"""ckptstore: deduplicating, compressing storage for ML training checkpoints."""

from ckptstore.api import CheckpointAPI
from ckptstore.client import Client
from ckptstore.errors import (
    CheckpointNotFound,
    CkptStoreError,
    CorruptBlockError,
    InvalidArgument,
    MissingBlockError,
)
from ckptstore.store.checkpoints import CheckpointPage, CheckpointStore, StoreStats
from ckptstore.store.context import StoreConfig
from ckptstore.training import Job, job

__all__ = [
    "CheckpointAPI",
    "CheckpointNotFound",
    "CheckpointPage",
    "CheckpointStore",
    "Client",
    "CkptStoreError",
    "CorruptBlockError",
    "InvalidArgument",
    "Job",
    "MissingBlockError",
    "StoreConfig",
    "StoreStats",
    "job",
]
