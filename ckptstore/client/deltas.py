"""How a push encodes a block the server lacks, when it holds the job's previous
checkpoint (bases.py): as a delta on that checkpoint's block at the same place when
that is smaller than the block's own encoding, else whole.

A tensor block's base is the block of the same slot and length (codec 6, by the
tensor's element width); any other block's, the block covering the same place of
the same file (codec 8). The whole encoding is the store's own (BlockCodec.encode),
so what is sent is about what the store keeps of the block.
"""

from __future__ import annotations

from ckptstore.blockframes import SentBlock
from ckptstore.client.bases import BaseBlock, LocalBase
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.codecs.ids import DELTA_WIDTHS


def encode_block(
    codec: BlockCodec,
    bid: bytes,
    data: bytes,
    width: int,
    slot: str | None,
    place: tuple[str, int],
    base: LocalBase,
) -> SentBlock:
    """The frame of one block: a delta on its base in ``base`` where that is smaller
    than its whole encoding, else the whole encoding (or the raw bytes). ``place``:
    the block's file ("" for a single file) and offset in it."""
    raw = memoryview(data)
    tensor = slot is not None
    whole_codec, whole = codec.encode(raw, width if tensor else None, aligned=tensor)
    found = _base_of(base, len(raw), width, slot, place)
    if found is not None and (base_raw := base.read(found)) is not None:
        if tensor:
            delta = codec.encode_delta(raw, base_raw, width, len(whole))
        else:
            delta = codec.encode_prefixed(raw, base_raw, len(whole))
        if delta is not None:
            delta_codec, payload = delta
            return SentBlock(
                bid, payload, len(raw), delta_codec, found.block_id, width or None, slot
            )
    return SentBlock(bid, whole, len(raw), whole_codec, None, width or None, slot)


def _base_of(
    base: LocalBase, raw_len: int, width: int, slot: str | None, place: tuple[str, int]
) -> BaseBlock | None:
    if slot is not None:
        return base.by_slot(slot, raw_len) if width in DELTA_WIDTHS else None
    return base.at_place(place[0], place[1], raw_len)
