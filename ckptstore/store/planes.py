"""Byte planes: the transforms of tensor blocks that codecs 2 to 5 compress.

A block of ``n`` elements of ``w`` bytes becomes ``w`` planes (all first bytes,
then all second bytes, ...): zstd sees a float's exponent bytes together,
where they compress, apart from its mantissa bytes, which barely do. A delta
block stores the planes of its difference with a base block. Codecs 4 and 5
compress each plane as its own zstd frame, and codec 5 first groups the
elements by their base's exponent byte, so that each frame holds elements of
one magnitude: the size of a change in a float's bits follows the float's
exponent (FORMAT.md, "Codecs"; bench: entropy).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_INTS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
CONTEXTS = 128  # values of a group key: the top byte of the base element, sign bit dropped
SAMPLE_STRIDE = 16  # group bounds come from the keys of every 16th element

Compress = Callable[[np.ndarray], bytes]
# Decodes one zstd frame of exactly n bytes into the given array (raises DecodeError).
DecompressInto = Callable[[memoryview, int, np.ndarray], np.ndarray]


class FrameLayoutError(Exception):
    """A framed payload whose frame table does not fit it."""


def delta_of(raw: memoryview | bytes, base: memoryview | bytes, width: int) -> np.ndarray:
    """Each element minus the base's element (wrapping), zigzag-folded so that small
    changes either way give small codes with zero high bytes; the bytes of a partial
    last element are XORed. On float tensors this beats a plain XOR, which turns a
    step across a power of two into a run of one-bits (bench: corpora)."""
    out = np.bitwise_xor(np.frombuffer(raw, np.uint8), np.frombuffer(base, np.uint8))
    n = len(out) // width
    if n:
        ours = np.frombuffer(raw, UINTS[width], n)
        diff = np.subtract(ours, np.frombuffer(base, UINTS[width], n))
        sign = diff.view(_INTS[width]) >> (8 * width - 1)  # all ones where negative
        np.left_shift(diff, 1, out=diff)
        out[: n * width] = np.bitwise_xor(diff, sign.view(UINTS[width])).view(np.uint8)
    return out


def undo_delta(delta: np.ndarray, base: memoryview | bytes, width: int) -> np.ndarray:
    """The raw bytes back from ``delta_of``'s output (``delta`` is overwritten)."""
    theirs = np.frombuffer(base, np.uint8)
    n = len(delta) // width
    np.bitwise_xor(delta[n * width :], theirs[n * width :], out=delta[n * width :])
    if n:
        codes = delta[: n * width].view(UINTS[width])
        sign = np.subtract(0, codes & 1, dtype=UINTS[width])  # all ones where negative
        np.right_shift(codes, 1, out=codes)
        np.bitwise_xor(codes, sign, out=codes)
        np.add(codes, np.frombuffer(base, UINTS[width], n), out=codes)
    return delta


def to_planes(raw: memoryview | np.ndarray, width: int) -> np.ndarray:
    """All first bytes of each element, then all second bytes...; a partial last element
    is kept as it is at the end."""
    data = np.frombuffer(raw, np.uint8) if not isinstance(raw, np.ndarray) else raw
    n = len(data) // width
    out = np.empty(len(data), np.uint8)
    out[: n * width].reshape(width, n)[:] = data[: n * width].reshape(n, width).T
    out[n * width :] = data[n * width :]
    return out


def from_planes(
    planes: bytes | np.ndarray, width: int, out: np.ndarray | None = None
) -> np.ndarray:
    """The elements back from ``to_planes``' output, into ``out`` if given."""
    data = np.frombuffer(planes, np.uint8)
    n = len(data) // width
    out = np.empty(len(data), np.uint8) if out is None else out
    lanes = out[: n * width].reshape(n, width)
    rows = data[: n * width].reshape(width, n)
    for lane in range(width):  # one contiguous read per plane: 3x faster than a transpose
        lanes[:, lane] = rows[lane]
    out[n * width :] = data[n * width :]
    return out


def group_keys(base: memoryview | bytes, width: int) -> np.ndarray:
    """Each base element's group key: its top byte without the sign bit (a float's
    exponent, less its lowest bit)."""
    n = len(base) // width
    top = np.frombuffer(base, np.uint8, n * width).reshape(n, width)[:, width - 1]
    return top & (CONTEXTS - 1)


def group_bounds(keys: np.ndarray, minimum: int) -> list[int]:
    """Where the groups end, as the key each one stops before: keys taken in ascending
    order, counted on every SAMPLE_STRIDE-th element (a histogram of all of them costs
    more than the grouping), a group closed once it holds ``minimum`` elements by that
    count, and the remainder joining the last group (fewer, larger groups: each frame
    costs a header and a Huffman table). Empty when there is one group."""
    counts = np.bincount(keys[::SAMPLE_STRIDE], minlength=CONTEXTS).tolist()
    bounds: list[int] = []
    held = 0
    for key, count in enumerate(counts):
        held += count * SAMPLE_STRIDE
        if held >= minimum:
            bounds.append(key + 1)
            held = 0
    if len(bounds) < 2:
        return []
    bounds[-1] = CONTEXTS
    return bounds


def grouping(base: memoryview | bytes, width: int, group_log: int) -> list[np.ndarray] | None:
    """The indices of the elements of each group of a delta on ``base`` (ascending),
    None when there is one group in element order: with ``group_log`` 0, or too few
    elements for two groups of ``2**group_log``."""
    found = keys_and_bounds(base, width, group_log)
    return None if found is None else group_members(*found)


def keys_and_bounds(
    base: memoryview | bytes, width: int, group_log: int
) -> tuple[np.ndarray, list[int]] | None:
    """The group keys of ``base``'s elements and the bounds of their groups; None when
    there is one group."""
    n = len(base) // width
    if group_log == 0 or n < 2 << group_log:
        return None
    keys = group_keys(base, width)
    bounds = group_bounds(keys, 1 << group_log)
    return (keys, bounds) if bounds else None


def group_members(keys: np.ndarray, bounds: list[int]) -> list[np.ndarray]:
    """The indices of the elements of each group (ascending)."""
    out, low = [], 0
    for high in bounds:  # one pass per group: cheaper than sorting by key (few groups)
        if low == 0:
            inside = keys < high
        elif high == CONTEXTS:
            inside = keys >= low
        else:
            inside = (keys >= low) & (keys < high)
        out.append(np.flatnonzero(inside))
        low = high
    return out


def grouping_gain_bits(delta: np.ndarray, width: int, keys: np.ndarray, bounds: list[int]) -> float:
    """What grouping may save, in bits per element, judged on every SAMPLE_STRIDE-th
    element: how much knowing an element's group tells about its delta's bit length
    (mutual information). Grouping pays through exactly that: deltas of one magnitude
    in each frame. Cheap next to encoding the grouped payload to find out."""
    n = len(delta) // width
    values = delta[: n * width].view(UINTS[width])[::SAMPLE_STRIDE]
    lengths = np.frexp(values.astype(np.float64))[1]  # bit lengths, 0 for 0 (about, > 2**53)
    group = np.searchsorted(np.asarray(bounds), keys[::SAMPLE_STRIDE], side="right")
    joint = np.bincount(group * 66 + lengths, minlength=66 * len(bounds)).reshape(-1, 66)

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / len(values)
        return float(-(p * np.log2(p)).sum())

    return entropy(joint.sum(axis=0)) + entropy(joint.sum(axis=1)) - entropy(joint.ravel())


def frame_planes(
    elements: np.ndarray, width: int, sizes: list[int], compress: Compress
) -> list[bytes]:
    """The frame table, then the frames, of the planes of ``elements`` (whole elements
    only): for each plane, one frame per group of ``sizes``. A list, so that the
    caller joins the whole payload once."""
    n = len(elements) // width
    planes = to_planes(elements, width)
    frames = []
    for plane in range(width):
        start = plane * n
        for size in sizes:
            frames.append(compress(planes[start : start + size]))
            start += size
    return [struct.pack(f"<{len(frames)}I", *map(len, frames)), *frames]


def unframe_planes(
    payload: memoryview,
    offset: int,
    width: int,
    sizes: list[int],
    decompress_into: DecompressInto,
    planes: np.ndarray,
) -> int:
    """Decode ``frame_planes``' output, starting at ``offset``, into ``planes`` (the
    planes of ``sum(sizes)`` elements); returns the offset just past the last frame."""
    n = sum(sizes)
    count = width * len(sizes)
    if len(payload) < offset + 4 * count:
        raise FrameLayoutError(f"payload too short for its {count} frame lengths")
    lengths = struct.unpack_from(f"<{count}I", payload, offset)
    position = offset + 4 * count
    if position + sum(lengths) > len(payload):
        raise FrameLayoutError("frame lengths run past the end of the payload")
    frame = 0
    for plane in range(width):
        start = plane * n
        for size in sizes:
            length = lengths[frame]
            decompress_into(
                payload[position : position + length], size, planes[start : start + size]
            )
            position += length
            start += size
            frame += 1
    return position
