"""How a push encodes a block the server lacks: whole, or when it holds the job's
previous checkpoint (bases.py) as a delta on that checkpoint's block at the same
place when that is smaller than the block's own encoding.

A tensor block's base is the block of the same slot and length (codec 6, by the
tensor's element width); any other block's, the block covering the same place of
the same file (codec 8). The whole encoding is the store's (BlockCodec.encode),
as the caller's codec makes it: the push leaves out exponent groups (codec 4 for
codec 7), a little larger for much less work.
"""

from __future__ import annotations

from ckptstore.blockframes import SentBlock
from ckptstore.client.bases import BaseBlock, LocalBase
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import DELTA_WIDTHS

# A tensor block's delta at most this fraction of its raw bytes is sent without
# encoding the block whole to compare (which costs as much again): a tensor block of
# trained weights is rarely stored that small whole, and if it is, a delta this
# small still costs little.
SURELY_SMALLER = 0.25


def encode_block(
    codec: BlockCodec,
    bid: bytes,
    data: bytes,
    width: int,
    slot: str | None,
    place: tuple[str, int],
    base: LocalBase | None,
) -> SentBlock:
    """The frame of one block: a delta on its base in ``base`` (if given) where that is
    smaller than its whole encoding, else the whole encoding (or the raw bytes).
    ``place``: the block's file ("" for a single file) and offset in it."""
    raw = memoryview(data)
    tensor = slot is not None
    delta = None if base is None else _delta(codec, bid, raw, width, slot, place, base)
    if delta is not None and tensor and len(delta.payload) <= SURELY_SMALLER * len(raw):
        return delta
    whole_codec, whole = codec.encode(raw, width if tensor else None, aligned=tensor)
    if delta is not None and len(delta.payload) < len(whole):
        return delta
    return SentBlock(bid, whole, len(raw), whole_codec, None, width or None, slot)


def _delta(
    codec: BlockCodec,
    bid: bytes,
    raw: memoryview,
    width: int,
    slot: str | None,
    place: tuple[str, int],
    base: LocalBase,
) -> SentBlock | None:
    """The block as a delta on its base, if it has one and the delta is smaller than
    its raw bytes."""
    found = _base_of(base, len(raw), width, slot, place)
    if found is None or (base_raw := base.read(found)) is None:
        return None
    if slot is not None:
        delta = codec.encode_delta(raw, base_raw, width, len(raw))
    else:
        delta = codec.encode_prefixed(raw, base_raw, len(raw))
    if delta is None:
        return None
    return SentBlock(bid, delta[1], len(raw), delta[0], found.block_id, width or None, slot)


def _base_of(
    base: LocalBase, raw_len: int, width: int, slot: str | None, place: tuple[str, int]
) -> BaseBlock | None:
    if slot is not None:
        return base.by_slot(slot, raw_len) if width in DELTA_WIDTHS else None
    return base.at_place(place[0], place[1], raw_len)
