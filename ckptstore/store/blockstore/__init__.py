import os
from pathlib import Path

from ckptstore.errors import InvalidArgument
from ckptstore.store.blockstore.base import BlockStore, ObjectInfo
from ckptstore.store.blockstore.local import LocalBlockStore

__all__ = ["BlockStore", "LocalBlockStore", "ObjectInfo", "open_blockstore"]

S3_ENDPOINT_VARIABLE = "CKPTSTORE_S3_ENDPOINT"


def open_blockstore(blocks: str | os.PathLike[str]) -> BlockStore:
    """The block store at ``blocks``: ``s3://bucket[/prefix]`` (the endpoint from
    ``CKPTSTORE_S3_ENDPOINT`` when set, else AWS's; region and credentials from the
    standard AWS variables) or a local directory."""
    if isinstance(blocks, str) and "://" in blocks:
        if not blocks.startswith("s3://"):
            raise InvalidArgument("blocks", blocks, "a directory or s3://bucket[/prefix]")
        from ckptstore.store.blockstore.s3 import S3BlockStore

        return S3BlockStore.from_url(blocks, os.environ.get(S3_ENDPOINT_VARIABLE) or None)
    return LocalBlockStore(Path(blocks))
