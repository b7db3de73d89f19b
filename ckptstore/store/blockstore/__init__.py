import os
from pathlib import Path

from ckptstore.errors import InvalidArgument
from ckptstore.store.blockstore.base import BlockStore, ObjectInfo
from ckptstore.store.blockstore.local import LocalBlockStore

__all__ = ["BlockStore", "LocalBlockStore", "ObjectInfo", "open_blockstore"]

S3_ENDPOINT_VARIABLE = "CKPTSTORE_S3_ENDPOINT"
# per attempt of an S3 request: to connect, and between bytes of an answer
CONNECT_TIMEOUT_VARIABLE = "CKPTSTORE_S3_CONNECT_TIMEOUT_S"
READ_TIMEOUT_VARIABLE = "CKPTSTORE_S3_READ_TIMEOUT_S"


def open_blockstore(blocks: str | os.PathLike[str]) -> BlockStore:
    """The block store at ``blocks``: ``s3://bucket[/prefix]`` (the endpoint from
    ``CKPTSTORE_S3_ENDPOINT`` when set, else AWS's; region and credentials from the
    standard AWS variables) or a local directory."""
    if isinstance(blocks, str) and "://" in blocks:
        if not blocks.startswith("s3://"):
            raise InvalidArgument("blocks", blocks, "a directory or s3://bucket[/prefix]")
        from ckptstore.store.blockstore.s3 import S3BlockStore, S3Timeouts

        timeouts = S3Timeouts(
            connect_s=_seconds(CONNECT_TIMEOUT_VARIABLE, S3Timeouts.connect_s),
            read_s=_seconds(READ_TIMEOUT_VARIABLE, S3Timeouts.read_s),
        )
        endpoint = os.environ.get(S3_ENDPOINT_VARIABLE) or None
        return S3BlockStore.from_url(blocks, endpoint, timeouts)
    return LocalBlockStore(Path(blocks))


def _seconds(variable: str, default: float) -> float:
    """A positive number of seconds from ``variable``, ``default`` when unset."""
    value = os.environ.get(variable)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidArgument(variable, value, "a positive number of seconds")
    return seconds
