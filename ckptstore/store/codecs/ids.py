"""Codec ids: the byte persisted with every block that says how its payload turns
back into the raw bytes. Ids never change meaning; a new encoding gets a new id
(FORMAT.md, "Codecs")."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Codec(IntEnum):
    RAW = 0  # payload is the raw bytes
    ZSTD = 1  # payload is one zstd frame of the raw bytes
    ZSTD_PLANES = 2  # u8 element width, then one zstd frame of the byte planes (read only)
    DELTA_PLANES = 3  # u8 element width, then zstd of the planes of delta_of(raw, base) (read only)
    FRAMED_PLANES = 4  # u8 element width, frame table, one zstd frame per byte plane
    GROUPED_DELTA = 5  # codec 4's frames of delta_of(raw, base), grouped (read only)
    BIASED_DELTA = 6  # codec 5 with a bias per group taken off the differences
    EXPONENT_PLANES = 7  # codec 4 with the elements grouped by their own exponent
    ZSTD_PREFIX = 8  # one zstd frame of the raw bytes with the base block as its prefix


# Codecs whose payload starts with the element width, and those that need a base block.
WIDTH_PREFIXED = (
    Codec.ZSTD_PLANES,
    Codec.DELTA_PLANES,
    Codec.FRAMED_PLANES,
    Codec.GROUPED_DELTA,
    Codec.BIASED_DELTA,
    Codec.EXPONENT_PLANES,
)
DELTA_CODECS = (Codec.DELTA_PLANES, Codec.GROUPED_DELTA, Codec.BIASED_DELTA)

PLANE_WIDTHS = (2, 4, 8)  # element widths codecs 2, 4 and 7 store
DELTA_WIDTHS = (1, 2, 4, 8)  # element widths codecs 3, 5 and 6 store
UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # an element by its width
INTS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
MAX_GROUP_LOG = 31  # the largest group size a payload may state, as log2


class DecodeError(Exception):
    """A payload that its codec cannot decode (the caller names the block)."""
