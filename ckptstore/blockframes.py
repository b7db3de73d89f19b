"""The body of ``PUT .../blocks``: frames of block id, length and bytes (one definition
for the server that parses it and the client that writes it).

Version 1 (``application/octet-stream``): ``block_id[32] | u32 length (LE) | bytes``.
Version 2 (``FRAMES_V2`` content type): ``block_id[32] | u32 length | u8 width |
u16 slot length | slot (UTF-8) | bytes``, where width and slot are a tensor block's
element width and slot as the store's cutter gives them (0 and empty for opaque
bytes), so the server can encode it by its dtype and as a delta.

Parsing is pure: a malformed body raises ``BadBlockFrame`` naming the byte offset
and the problem, before any block is stored. Whether each block's bytes hash to
its id is the store's check (``BlockHashMismatch``), made when it is put.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ckptstore.errors import BadBlockFrame
from ckptstore.store.codecs.ids import Codec

FRAME = struct.Struct("<32sI")
FRAME_V2 = struct.Struct("<32sIBH")
FRAMES_V2 = "application/x-ckptstore-blocks; version=2"
FRAME_V3 = struct.Struct("<32sIIBBH")
FRAMES_V3 = "application/x-ckptstore-blocks; version=3"
FRAME_VERSIONS = (1, 2, 3)  # what a server takes (GET /v2/store: blockFrameVersions)
WIDTHS = (1, 2, 4, 8)  # element widths a version-2 or 3 frame may name
# The codecs a frame may name: those the store writes (not the read-only legacy ones),
# and of them those whose payload decodes against a base block.
SENDABLE = frozenset(
    (
        Codec.RAW,
        Codec.ZSTD,
        Codec.FRAMED_PLANES,
        Codec.BIASED_DELTA,
        Codec.EXPONENT_PLANES,
        Codec.ZSTD_PREFIX,
    )
)
BASED_CODECS = frozenset((Codec.BIASED_DELTA, Codec.ZSTD_PREFIX))

# block id, its bytes (a view into the body), element width or None, slot or None
Frame = tuple[bytes, bytes | memoryview, int | None, str | None]


def frames_v2(blocks: list[tuple[bytes, bytes, int, str | None]]) -> bytes:
    """The version-2 body of ``(block_id, data, width, slot)`` blocks; each block's
    bytes are copied once."""
    parts: list[bytes] = []
    for block_id, data, width, slot in blocks:
        name = slot.encode() if slot is not None else b""
        parts += [FRAME_V2.pack(block_id, len(data), width, len(name)), name, data]
    return b"".join(parts)


class SentBlock(NamedTuple):
    """A block as a version-3 frame carries it: encoded, perhaps as a delta on a base."""

    block_id: bytes
    payload: bytes | memoryview  # the block encoded by ``codec`` (a view into the body)
    raw_len: int
    codec: int  # codecs/ids.py Codec: 0 for the raw bytes
    base_id: bytes | None  # the block the payload decodes against (BASED_CODECS only)
    width: int | None  # tensor element width (None: opaque bytes)
    slot: str | None


def frames_v3(blocks: list[SentBlock]) -> bytes:
    """The version-3 body of ``blocks``; each payload is copied once."""
    parts: list[bytes | memoryview] = []
    for block in blocks:
        name = block.slot.encode() if block.slot is not None else b""
        header = FRAME_V3.pack(
            block.block_id,
            len(block.payload),
            block.raw_len,
            block.codec,
            block.width or 0,
            len(name),
        )
        parts += [header, block.base_id or b"", name, block.payload]
    return b"".join(parts)


def is_v2(content_type: str) -> bool:
    """Whether a ``Content-Type`` header names version-2 frames (spaces and case ignored)."""
    return content_type.replace(" ", "").lower() == FRAMES_V2.replace(" ", "")


def is_v3(content_type: str) -> bool:
    """Whether a ``Content-Type`` header names version-3 frames (spaces and case ignored)."""
    return content_type.replace(" ", "").lower() == FRAMES_V3.replace(" ", "")


def parse_frames(body: bytes | bytearray, *, v2: bool) -> list[Frame]:
    """The frames of a whole body, in order; raises ``BadBlockFrame`` if any is malformed."""
    return _parse_v2(memoryview(body)) if v2 else _parse_v1(memoryview(body))


def _parse_v1(view: memoryview) -> list[Frame]:
    frames: list[Frame] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < FRAME.size:
            raise BadBlockFrame(offset, "truncated frame header")
        claimed_id, length = FRAME.unpack_from(view, offset)
        start = offset + FRAME.size
        if start + length > len(view):
            raise BadBlockFrame(offset, f"length {length} runs past the end of the body")
        frames.append((bytes(claimed_id), view[start : start + length], None, None))
        offset = start + length
    return frames


def _parse_v2(view: memoryview) -> list[Frame]:
    frames: list[Frame] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < FRAME_V2.size:
            raise BadBlockFrame(offset, "truncated frame header")
        claimed_id, length, width, slot_len = FRAME_V2.unpack_from(view, offset)
        start = offset + FRAME_V2.size + slot_len
        if start + length > len(view):
            raise BadBlockFrame(offset, f"length {length} runs past the end of the body")
        if width and width not in WIDTHS:
            raise BadBlockFrame(offset, f"width {width} is not one of {WIDTHS}")
        slot = _slot(view[offset + FRAME_V2.size : start], offset)
        if slot is not None and not width:
            raise BadBlockFrame(offset, "slot without width")
        frames.append((bytes(claimed_id), view[start : start + length], width or None, slot))
        offset = start + length
    return frames


def parse_frames_v3(body: bytes | bytearray) -> list[SentBlock]:
    """The version-3 frames of a whole body, in order; raises ``BadBlockFrame`` if any
    is malformed (an unknown codec, a base where the codec takes none or none where
    it needs one, a raw payload of another length than the block's)."""
    view = memoryview(body)
    blocks: list[SentBlock] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < FRAME_V3.size:
            raise BadBlockFrame(offset, "truncated frame header")
        claimed_id, length, raw_len, codec, width, slot_len = FRAME_V3.unpack_from(view, offset)
        if codec not in SENDABLE:
            raise BadBlockFrame(offset, f"codec {codec} is not one of {sorted(SENDABLE)}")
        base_len = 32 if codec in BASED_CODECS else 0
        at = offset + FRAME_V3.size + base_len
        start = at + slot_len
        if start + length > len(view):
            raise BadBlockFrame(offset, f"length {length} runs past the end of the body")
        if width and width not in WIDTHS:
            raise BadBlockFrame(offset, f"width {width} is not one of {WIDTHS}")
        if codec == Codec.RAW and length != raw_len:
            raise BadBlockFrame(offset, f"raw payload of {length} bytes for a {raw_len}-byte block")
        slot = _slot(view[at:start], offset)
        if slot is not None and not width:
            raise BadBlockFrame(offset, "slot without width")
        base_id = bytes(view[at - base_len : at]) if base_len else None
        payload = view[start : start + length]
        blocks.append(
            SentBlock(bytes(claimed_id), payload, raw_len, codec, base_id, width or None, slot)
        )
        offset = start + length
    return blocks


def _slot(raw: memoryview, offset: int) -> str | None:
    if not raw:
        return None
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        raise BadBlockFrame(offset, "slot is not UTF-8") from None
