"""Decoders of codecs the writer no longer uses but every reader keeps reading
(FORMAT.md, "Codecs"): 2 and 3, all planes in one zstd frame (of the raw bytes, or
of their delta on a base block), and 5, codec 6 without biases."""

from __future__ import annotations

import numpy as np

from ckptstore.store.codecs.decode import Base, decode_delta
from ckptstore.store.codecs.frames import ZstdWork
from ckptstore.store.codecs.ids import DecodeError
from ckptstore.store.codecs.planes import from_planes, undo_delta


def decode_one_frame(
    work: ZstdWork, payload: memoryview, width: int, base: Base | None, out: np.ndarray
) -> None:
    """Codec 2's payload: width, one zstd frame of the planes."""
    from_planes(work.unzstd_into(payload[1:], len(out)), width, out)


def decode_one_frame_delta(
    work: ZstdWork, payload: memoryview, width: int, base: Base | None, out: np.ndarray
) -> None:
    """Codec 3's payload: width, one zstd frame of the planes of the delta on ``base``."""
    if base is None:
        raise DecodeError("delta block decoded without its base block")
    decode_one_frame(work, payload, width, None, out)
    undo_delta(out, base, width)


def decode_grouped_delta(
    work: ZstdWork, payload: memoryview, width: int, base: Base | None, out: np.ndarray
) -> None:
    """Codec 5's payload: codec 6's without the group biases."""
    decode_delta(work, payload, width, base, out, biased=False)
