"""Pack file encoding (pure): a header, then one entry per block.

Layout (little-endian; FORMAT.md is the specification)::

    header  : magic b"CKPTPACK" | u16 version | u16 reserved | u32 reserved   (16 bytes)
    entry*  : block_id[32] | base_id[32] | u8 codec | u8 flags | u16 reserved
              | u32 raw_len | u32 stored_len | payload[stored_len]
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ckptstore.errors import FormatError

PACK_MAGIC = b"CKPTPACK"
PACK_VERSION = 1
HEADER = struct.Struct("<8sHHI")
ENTRY = struct.Struct("<32s32sBBHII")
FLAG_HAS_BASE = 0x01
NO_BASE = bytes(32)


@dataclass(frozen=True, slots=True)
class PackEntry:
    """Where one block sits in a pack and how it is encoded."""

    block_id: bytes
    offset: int  # of the entry header within the pack
    stored_len: int  # payload bytes
    raw_len: int
    codec: int
    base_id: bytes | None

    @property
    def entry_len(self) -> int:
        return ENTRY.size + self.stored_len


PACK_HEADER = HEADER.pack(PACK_MAGIC, PACK_VERSION, 0, 0)


def entry_header(entry: PackEntry) -> bytes:
    """The bytes before an entry's payload."""
    flags = FLAG_HAS_BASE if entry.base_id is not None else 0
    return ENTRY.pack(
        entry.block_id,
        entry.base_id or NO_BASE,
        entry.codec,
        flags,
        0,
        entry.raw_len,
        entry.stored_len,
    )


class PackBuilder:
    """Accumulates encoded blocks into the bytes of one pack.

    ``buffer`` may be handed in for reuse (its old contents are overwritten);
    it grows only if the pack outgrows it.
    """

    def __init__(self, buffer: bytearray | None = None) -> None:
        self.buffer = buffer if buffer is not None else bytearray(HEADER.size)
        self._size = HEADER.size
        self.buffer[: HEADER.size] = PACK_HEADER
        self.entries: list[PackEntry] = []

    @property
    def size(self) -> int:
        return self._size

    def _append(self, data: bytes | memoryview) -> None:
        end = self._size + len(data)
        if end <= len(self.buffer):
            self.buffer[self._size : end] = data
        else:  # past the buffer: CPython grows a bytearray with amortized headroom
            del self.buffer[self._size :]
            self.buffer += data
        self._size = end

    def add(
        self,
        block_id: bytes,
        codec: int,
        raw_len: int,
        payload: bytes | memoryview,
        base_id: bytes | None = None,
    ) -> PackEntry:
        entry = PackEntry(block_id, self._size, len(payload), raw_len, codec, base_id)
        self._append(entry_header(entry))
        self._append(payload)
        self.entries.append(entry)
        return entry

    def getbuffer(self) -> memoryview:
        return memoryview(self.buffer)[: self._size]


def check_header(data: bytes | memoryview) -> None:
    if len(data) < HEADER.size:
        raise FormatError("pack shorter than its header")
    magic, version, _, _ = HEADER.unpack_from(data)
    if magic != PACK_MAGIC:
        raise FormatError(f"not a ckptstore pack (magic {bytes(magic)!r})")
    if version != PACK_VERSION:
        raise FormatError(f"pack format version {version}; this ckptstore reads {PACK_VERSION}")


def parse_entry(data: bytes | memoryview) -> tuple[PackEntry, memoryview]:
    """The entry at the start of ``data`` and a view of its payload.

    Raises ValueError if ``data`` is too short for the entry it starts with.
    """
    if len(data) < ENTRY.size:
        raise ValueError("truncated entry header")
    block_id, base_id, codec, flags, _, raw_len, stored_len = ENTRY.unpack_from(data)
    end = ENTRY.size + stored_len
    if len(data) < end:
        raise ValueError("truncated entry payload")
    base = base_id if flags & FLAG_HAS_BASE else None
    entry = PackEntry(block_id, 0, stored_len, raw_len, codec, base)
    return entry, memoryview(data)[ENTRY.size : end]


def iter_entries(pack: bytes | memoryview) -> Iterator[tuple[PackEntry, memoryview]]:
    """Every entry of a whole pack, in order, with offsets filled in."""
    check_header(pack)
    view = memoryview(pack)
    offset = HEADER.size
    while offset < len(view):
        entry, payload = parse_entry(view[offset:])
        yield (
            PackEntry(
                entry.block_id, offset, entry.stored_len, entry.raw_len, entry.codec, entry.base_id
            ),
            payload,
        )
        offset += ENTRY.size + entry.stored_len
