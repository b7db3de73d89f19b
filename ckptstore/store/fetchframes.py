"""Frames of a block fetch (server to client): each block as the store keeps it.

Layout (little-endian; ``docs/http-api.md``, "Block fetch")::

    frame : flags u8 | codec u8 | reserved u16 | raw_len u32 | payload_len u32
            | block_id[32] | base_id[32] (only when flags has HAS_BASE) | payload

``codec`` is the store's codec id of the payload (codecs/ids.py); a frame with
HAS_BASE is a delta that decodes only with the raw bytes of ``base_id``, which the
receiver holds or got in an earlier frame of the same answer. A frame with ERROR
carries the JSON error answer the server would have sent as its payload, and ends
the stream: a block that could not be read after the answer had started.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ckptstore.errors import FormatError

FRAMES_MEDIA = "application/x-ckptstore-frames; version=1"
HEAD = struct.Struct("<BBHII32s")
BASE_LEN = 32
HAS_BASE = 0x01
ERROR = 0x80
# A block's raw length fits a pack entry's u32; a payload larger than its block by more
# than this is not one any codec writes (bounds what a receiver buffers).
PAYLOAD_SLACK = 1 << 16
MAX_ERROR_BYTES = 1 << 20  # an error frame's JSON answer is never longer


@dataclass(frozen=True, slots=True)
class Frame:
    """One block as sent: decode ``payload`` with ``codec`` (and the base's raw bytes)."""

    block_id: bytes
    codec: int
    raw_len: int
    base_id: bytes | None
    payload: bytes | memoryview


def frame_head(
    block_id: bytes, codec: int, raw_len: int, payload_len: int, base_id: bytes | None = None
) -> bytes:
    """The bytes of a frame before its payload."""
    flags = HAS_BASE if base_id is not None else 0
    head = HEAD.pack(flags, codec, 0, raw_len, payload_len, block_id)
    return head if base_id is None else head + base_id


def error_frame(body: dict[str, Any]) -> bytes:
    """A frame carrying an error answer's JSON body; the stream ends after it."""
    payload = json.dumps(body).encode()
    return HEAD.pack(ERROR, 0, 0, 0, len(payload), bytes(32)) + payload


class StreamError(Exception):
    """The server ended the stream with an error frame; ``body`` is its JSON answer."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        super().__init__(str(body.get("error", body)))


class FrameReader:
    """Parses frames from the chunks of a body as they arrive (``feed``)."""

    def __init__(self, max_raw_len: int) -> None:
        self._buffer = bytearray()
        self._max_raw_len = max_raw_len

    def feed(self, chunk: bytes) -> Iterator[Frame]:
        """The frames completed by ``chunk``; raises StreamError at an error frame and
        FormatError at bytes that are no frame."""
        self._buffer += chunk
        start = 0
        view = memoryview(self._buffer)
        try:
            while len(view) - start >= HEAD.size:
                flags, codec, _, raw_len, payload_len, bid = HEAD.unpack_from(view, start)
                base_len = BASE_LEN if flags & HAS_BASE else 0
                if flags & ~(HAS_BASE | ERROR) or raw_len > self._max_raw_len:
                    raise FormatError(f"not a block frame (flags {flags}, {raw_len} bytes)")
                if not flags & ERROR and payload_len > raw_len + PAYLOAD_SLACK:
                    raise FormatError(f"frame of {payload_len} bytes for a {raw_len}-byte block")
                if flags & ERROR and payload_len > MAX_ERROR_BYTES:
                    raise FormatError(f"error frame of {payload_len} bytes")
                end = start + HEAD.size + base_len + payload_len
                if len(view) < end:
                    break
                at = start + HEAD.size
                payload = bytes(view[at + base_len : end])
                if flags & ERROR:
                    raise StreamError(json.loads(payload))
                base = bytes(view[at : at + base_len]) if base_len else None
                yield Frame(bytes(bid), codec, raw_len, base, payload)
                start = end
        finally:
            view.release()
            del self._buffer[:start]

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not complete."""
        return len(self._buffer)
