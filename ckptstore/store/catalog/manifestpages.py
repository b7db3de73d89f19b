"""Manifest pages: a checkpoint's block list stored compactly, as a few catalog rows.

A checkpoint of a large training run has hundreds of thousands of blocks. Its
manifest (each entry: the block's integer key in the catalog, its logical offset in
the checkpoint, and its tensor slot or none) is cut into pages of ``PAGE_ENTRIES``
entries, and each page is one row holding one zstd frame (FORMAT.md, "Manifest
pages"). Consecutive entries mostly name consecutive block keys and advance the
offset by the same block length, so the frame stores differences, which compress
to a few bytes per entry; slots are text that repeats a tensor's name.

Both catalogs store the same bytes; this module is their only reader and writer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import zstandard

PAGE_ENTRIES = 4096  # entries per page (per catalog row)
FORMAT_VERSION = 1  # the first byte of every page
ZSTD_LEVEL = 3

_HEADER = struct.Struct("<BI")  # version, entries
_NO_SLOT = -1  # a slot length that says the entry has no slot


class ManifestPageError(ValueError):
    """A manifest page that cannot be decoded: damaged, or of an unknown version."""


@dataclass(frozen=True, slots=True)
class ManifestPage:
    """The entries of one page, in manifest order."""

    keys: list[int]  # the catalog key of each entry's block
    offsets: list[int]  # the logical offset of each entry in the checkpoint
    slots: list[str | None]  # the tensor slot of each entry, or None

    def __len__(self) -> int:
        return len(self.keys)


def encode_page(keys: Sequence[int], offsets: Sequence[int], slots: Sequence[str | None]) -> bytes:
    """One page of entries as bytes: a version byte, then a zstd frame of the entry
    count, the key and offset differences (little-endian int64) and the slots
    (int32 lengths, -1 for none, then their UTF-8 bytes)."""
    count = len(keys)
    if len(offsets) != count or len(slots) != count:
        raise ValueError(f"{count} keys, {len(offsets)} offsets and {len(slots)} slots")
    key_array = np.asarray(keys, dtype="<i8")
    offset_array = np.asarray(offsets, dtype="<i8")
    encoded = [slot.encode() if slot is not None else None for slot in slots]
    lengths = np.array([_NO_SLOT if s is None else len(s) for s in encoded], dtype="<i4")
    body = b"".join(
        (
            struct.pack("<I", count),
            np.diff(key_array, prepend=np.int64(0)).astype("<i8").tobytes(),
            np.diff(offset_array, prepend=np.int64(0)).astype("<i8").tobytes(),
            lengths.tobytes(),
            b"".join(s for s in encoded if s is not None),
        )
    )
    frame = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(body)
    return _HEADER.pack(FORMAT_VERSION, count) + frame


def decode_page(data: bytes) -> ManifestPage:
    """The entries of a page made by ``encode_page``; ManifestPageError if it is damaged."""
    try:
        version, count = _HEADER.unpack_from(data)
        if version != FORMAT_VERSION:
            raise ManifestPageError(f"manifest page format {version}, not {FORMAT_VERSION}")
        # streamed: memory grows with the bytes the frame gives, not with the size its
        # header states (which a damaged page may make anything)
        frame = zstandard.ZstdDecompressor().decompressobj()
        body = frame.decompress(bytes(data[_HEADER.size :]))
        if not frame.eof or frame.unused_data:
            raise ManifestPageError("damaged manifest page: its frame does not end where it does")
    except (struct.error, zstandard.ZstdError) as exc:
        raise ManifestPageError(f"damaged manifest page: {exc}") from exc
    end_keys = 4 + 8 * count
    end_offsets = end_keys + 8 * count
    end_lengths = end_offsets + 4 * count
    if len(body) < end_lengths or struct.unpack_from("<I", body)[0] != count:
        raise ManifestPageError("damaged manifest page: its entry count does not match")
    keys = np.cumsum(np.frombuffer(body, "<i8", count, 4)).tolist()
    offsets = np.cumsum(np.frombuffer(body, "<i8", count, end_keys)).tolist()
    lengths = np.frombuffer(body, "<i4", count, end_offsets).tolist()
    slots: list[str | None] = []
    at = end_lengths
    for length in lengths:
        if length == _NO_SLOT:
            slots.append(None)
            continue
        try:
            slots.append(body[at : at + length].decode())
        except UnicodeDecodeError as exc:
            raise ManifestPageError(f"damaged manifest page: {exc}") from exc
        at += length
    if at != len(body):
        raise ManifestPageError("damaged manifest page: its slots do not match their lengths")
    return ManifestPage(keys, offsets, slots)


def encode_pages(
    keys: Sequence[int], offsets: Sequence[int], slots: Sequence[str | None]
) -> Iterator[tuple[int, bytes]]:
    """A whole manifest as ``(page number, page bytes)``, pages numbered from 0."""
    for page, start in enumerate(range(0, len(keys), PAGE_ENTRIES)):
        end = start + PAGE_ENTRIES
        yield page, encode_page(keys[start:end], offsets[start:end], slots[start:end])


def key_ranges(keys: Iterable[int], max_gap: int = 64) -> Iterator[tuple[int, int]]:
    """Inclusive ``(low, high)`` ranges covering the distinct ``keys``, a new range
    wherever two sorted keys are more than ``max_gap`` apart: a checkpoint's blocks
    mostly have consecutive keys, so a few range reads fetch them all."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    low = previous = ordered[0]
    for key in ordered[1:]:
        if key - previous > max_gap:
            yield low, previous
            low = key
        previous = key
    yield low, previous
