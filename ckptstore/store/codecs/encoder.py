"""BlockEncoder: how a new block is stored, for ingests and uploads alike.

Every new block is stored whole: zstd of its bytes, or of its byte planes for
numeric data (block.py). A tensor block's raw bytes are also offered to the
base cache: the rebase that follows the commit (rebase.py) re-encodes the
parent checkpoint's blocks as deltas against these very bytes, and the next
checkpoint's rebase re-encodes these blocks themselves.

With ``StoreConfig.defer_whole_encode`` (and deltas on), a tensor block of a
width byte planes store is not encoded at all: it is stored raw, and that
rebase encodes it once, as a delta or whole (rebase.py).
"""

from __future__ import annotations

from ckptstore.store.codecs.block import min_delta_len
from ckptstore.store.codecs.ids import PLANE_WIDTHS, Codec
from ckptstore.store.context import StoreContext

Encoded = tuple[Codec, bytes | memoryview]  # codec, payload


class BlockEncoder:
    """Encodes the new blocks of one ingest or upload; ``encode`` is thread-safe."""

    def __init__(self, ctx: StoreContext, writer: str) -> None:
        self._ctx = ctx
        self._cache = ctx.base_cache if ctx.config.delta_max_depth > 0 else None
        self._generation = ctx.base_cache.new_generation(writer)
        self._defer = defers_whole_encode(ctx)

    def encode(self, bid: bytes, raw: memoryview, width: int | None, slot: str | None) -> Encoded:
        """``width``: the element width for byte planes (0: none, None: judge the bytes);
        ``slot``: the tensor slot of a tensor block, None for any other block."""
        if self._defer and slot is not None and deferrable(len(raw), width):
            encoded: Encoded = (Codec.RAW, raw)
        else:
            encoded = self._ctx.codec.encode(raw, width, aligned=slot is not None)
        if slot is not None and self._cache is not None:
            self._cache.offer(bid, raw, self._generation)
        return encoded


def defers_whole_encode(ctx: StoreContext) -> bool:
    """Whether new tensor blocks are stored raw for the rebase to encode."""
    config = ctx.config
    return config.defer_whole_encode and config.delta_max_depth > 0 and ctx.codec.byte_planes


def deferrable(raw_len: int, width: int | None) -> bool:
    """Whether a tensor block is one the put may store raw: of a width byte planes
    store, and longer than the shortest delta (shorter ones, such as a step count,
    are encoded at once: no delta is tried on them)."""
    return width in PLANE_WIDTHS and raw_len > min_delta_len(width or 1)
