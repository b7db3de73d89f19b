from ckptstore.store.blockstore.base import BlockStore, ObjectInfo
from ckptstore.store.blockstore.local import LocalBlockStore

__all__ = ["BlockStore", "LocalBlockStore", "ObjectInfo"]
