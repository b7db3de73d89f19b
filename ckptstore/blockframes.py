"""The body of ``PUT .../blocks``: frames of block id, length and bytes (one definition
for the server that parses it and the client that writes it).

Version 1 (``application/octet-stream``): ``block_id[32] | u32 length (LE) | bytes``.
Version 2 (``FRAMES_V2`` content type): ``block_id[32] | u32 length | u8 width |
u16 slot length | slot (UTF-8) | bytes``, where width and slot are a tensor block's
element width and slot as the store's cutter gives them (0 and empty for opaque
bytes), so the server can encode it by its dtype and as a delta.
"""

from __future__ import annotations

import struct

FRAME = struct.Struct("<32sI")
FRAME_V2 = struct.Struct("<32sIBH")
FRAMES_V2 = "application/x-ckptstore-blocks; version=2"
WIDTHS = (1, 2, 4, 8)  # element widths a version-2 frame may name


def frames_v2(blocks: list[tuple[bytes, bytes, int, str | None]]) -> bytes:
    """The version-2 body of ``(block_id, data, width, slot)`` blocks; each block's
    bytes are copied once."""
    parts: list[bytes] = []
    for block_id, data, width, slot in blocks:
        name = slot.encode() if slot is not None else b""
        parts += [FRAME_V2.pack(block_id, len(data), width, len(name)), name, data]
    return b"".join(parts)
