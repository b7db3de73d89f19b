"""Block codecs, keyed by the id byte persisted with every block.

A block id is always the hash of the raw bytes; the codec only says how the
stored payload turns back into them. Ids never change meaning; new encodings
get new ids (see FORMAT.md).
"""

from __future__ import annotations

import threading
from enum import IntEnum

import zstandard

from ckptstore.errors import FormatError


class Codec(IntEnum):
    RAW = 0  # payload is the raw bytes
    ZSTD = 1  # payload is one zstd frame of the raw bytes
    # 2 (zstd of byte planes) and 3 (zstd of byte planes of XOR with base) are reserved.


# Level 1: same ratio as 3 on float tensors, faster (bench/results/*-engine.md).
DEFAULT_ZSTD_LEVEL = 1


class DecodeError(Exception):
    """A payload that its codec cannot decode (the caller names the block)."""


class BlockCodec:
    """Encodes and decodes block payloads; safe to share between threads."""

    def __init__(self, zstd_level: int = DEFAULT_ZSTD_LEVEL) -> None:
        self.zstd_level = zstd_level
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self.zstd_level, write_checksum=False)
            self._local.compressor = compressor
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        return decompressor

    def encode(self, raw: memoryview) -> tuple[Codec, bytes | memoryview]:
        """The smallest encoding of ``raw``: zstd, or the raw bytes if zstd does not shrink it."""
        compressed = self._compressor().compress(raw)
        if len(compressed) < len(raw):
            return Codec.ZSTD, compressed
        return Codec.RAW, raw

    def decode(self, codec: int, payload: bytes | memoryview, raw_len: int) -> bytes:
        """The raw bytes of a payload; raises DecodeError if it cannot be decoded."""
        if codec == Codec.RAW:
            if len(payload) != raw_len:
                raise DecodeError(f"raw payload is {len(payload)} bytes, expected {raw_len}")
            return bytes(payload)
        if codec == Codec.ZSTD:
            try:
                raw = self._decompressor().decompress(payload, max_output_size=raw_len)
            except zstandard.ZstdError as exc:
                raise DecodeError(f"zstd: {exc}") from exc
            if len(raw) != raw_len:
                raise DecodeError(f"decoded {len(raw)} bytes, expected {raw_len}")
            return raw
        raise FormatError(
            f"unknown codec id {codec}; this ckptstore knows {[c.value for c in Codec]}"
        )
