"""Decoders of the payloads the writer stores now: codecs 4, 6 and 7 (codec 5 is
codec 6 without biases, legacy.py). Each writes the raw bytes of a payload, whose
first byte (the element width) the caller has checked, into ``out``; raises
DecodeError or FrameLayoutError when the payload does not fit its codec."""

from __future__ import annotations

import struct

import numpy as np

from ckptstore.store.codecs.frames import ZstdWork, unframe_planes
from ckptstore.store.codecs.grouping import EXPONENT_KEYS, Grouping, grouping
from ckptstore.store.codecs.ids import MAX_GROUP_LOG, UINTS, DecodeError
from ckptstore.store.codecs.planes import join_exponents, join_planes

Base = bytes | memoryview


def decode_framed(
    work: ZstdWork, payload: memoryview, width: int, base: Base | None, out: np.ndarray
) -> None:
    """Codec 4's payload: width, frame table, a frame per plane, the partial element."""
    _unframe(work, payload, 1, width, out)


def decode_biased_delta(
    work: ZstdWork, payload: memoryview, width: int, base: Base | None, out: np.ndarray
) -> None:
    """Codec 6's payload: width, group size, each group's bias (when grouped), frame
    table, frames, the partial element XORed with the base's."""
    decode_delta(work, payload, width, base, out, biased=True)


def decode_delta(
    work: ZstdWork,
    payload: memoryview,
    width: int,
    base: Base | None,
    out: np.ndarray,
    *,
    biased: bool,
) -> None:
    """Codec 6's payload, or with ``biased`` False codec 5's (the same but the biases)."""
    if len(payload) < 2:
        raise DecodeError("delta payload without its group size")
    offset, group_log = 2, payload[1]
    if group_log > MAX_GROUP_LOG:
        raise DecodeError(f"group size 2**{group_log} is out of range")
    if base is None:
        raise DecodeError("delta block decoded without its base block")
    groups = grouping(base, width, group_log)
    biases = None
    if biased and groups is not None:
        count = len(groups.sizes)
        if len(payload) < offset + count * width:
            raise DecodeError(f"payload too short for its {count} group biases")
        biases = np.frombuffer(payload, f"<u{width}", count, offset).astype(UINTS[width])
        offset += count * width
    _unframe(work, payload, offset, width, out, base, groups, biases)


def _unframe(
    work: ZstdWork,
    payload: memoryview,
    offset: int,
    width: int,
    out: np.ndarray,
    base: Base | None = None,
    groups: Grouping | None = None,
    biases: np.ndarray | None = None,
) -> None:
    """The frames from ``offset`` on and the partial element after them, into ``out``
    (``base``: a delta's base block)."""
    n = len(out) // width
    sizes = [n] if groups is None else list(groups.sizes)
    planes = work.scratch("planes", n * width)
    end = unframe_planes(payload, offset, width, sizes, work.unzstd_into, planes)
    _check_tail(payload, end, len(out) - n * width)
    tail = np.frombuffer(payload[end:], np.uint8)
    if base is not None:  # a delta's partial element is XORed with the base's
        tail = tail ^ np.frombuffer(base, np.uint8)[n * width :]
    out[n * width :] = tail
    scratch = None if groups is None else work.scratch("grouped", n * width)
    join_planes(planes, width, out[: n * width], base, groups, biases, scratch)


def decode_exponents(
    work: ZstdWork, payload: memoryview, width: int, base: Base | None, out: np.ndarray
) -> None:
    """Codec 7's payload: width, group count less one, each group's last key, the group
    sizes, the frame table and frame of the key plane, those of the other planes, and
    the partial element."""
    n = len(out) // width
    groups, offset = _exponent_groups(payload, n)
    planes = work.scratch("planes", n * width)
    keys_at = (width - 1) * n
    offset = unframe_planes(payload, offset, 1, [n], work.unzstd_into, planes[keys_at:])
    end = unframe_planes(
        payload, offset, width - 1, list(groups.sizes), work.unzstd_into, planes[:keys_at]
    )
    _check_tail(payload, end, len(out) - n * width)
    out[n * width :] = np.frombuffer(payload[end:], np.uint8)
    try:
        join_exponents(planes, width, groups, out[: n * width], work.scratch("grouped", n * width))
    except ValueError as exc:
        raise DecodeError(f"exponent planes: {exc}") from exc


def _exponent_groups(payload: memoryview, n: int) -> tuple[Grouping, int]:
    """Codec 7's groups of ``n`` elements as its payload states them, and the offset of
    its frame table. Raises DecodeError unless they are well formed."""
    if len(payload) < 2:
        raise DecodeError("exponent payload without its group count")
    count = payload[1] + 1
    offset = 2 + count + 4 * count
    if len(payload) < offset:
        raise DecodeError(f"payload too short for its {count} groups")
    bounds = [key + 1 for key in payload[2 : 2 + count]]
    if bounds != sorted(set(bounds)) or bounds[-1] != EXPONENT_KEYS:
        raise DecodeError("group keys out of order")
    sizes = list(struct.unpack_from(f"<{count}I", payload, 2 + count))
    if sum(sizes) != n:
        raise DecodeError(f"groups of {sum(sizes)} elements, expected {n}")
    return Grouping.sized(bounds, sizes), offset


def _check_tail(payload: memoryview, end: int, expected: int) -> None:
    """Raises DecodeError unless the bytes after the frames are the partial element."""
    if len(payload) - end != expected:
        raise DecodeError(f"{len(payload) - end} bytes after the frames, expected {expected}")
