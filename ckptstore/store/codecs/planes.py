"""Byte planes: the transforms of tensor blocks that codecs 2 to 6 compress.

A block of ``n`` elements of ``w`` bytes becomes ``w`` planes (all first bytes,
then all second bytes, ...): zstd sees a float's exponent bytes together,
where they compress, apart from its mantissa bytes, which barely do. A delta
block stores the planes of its difference with a base block. Codecs 4 to 6
compress each plane as its own zstd frame; codecs 5 and 6 first group the
elements by their base's exponent byte, so that each frame holds elements of
one magnitude (the size of a change in a float's bits follows the float's
exponent), and codec 6 takes each group's typical change off its differences.
Codec 7 groups a whole block's elements by their own exponent, stored first in
element order: how many low mantissa bits are zero, and how the others are
spread, follow the exponent (FORMAT.md, "Codecs"; bench: entropy). The loops
run in C (_kernels.c) where the extension was built, else in numpy.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

try:  # the loops of split_planes and join_planes in C (_kernels.c)
    from ckptstore.store.codecs import _kernels
except ImportError:  # built without a C compiler: numpy does the same, slower (bench: byte_planes)
    _kernels = None

UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_INTS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
CONTEXTS = 128  # values of a group key: the top byte of the base element, sign bit dropped
EXPONENT_KEYS = 256  # codec 7's keys: an element's top byte once rotated left a bit
SAMPLE_STRIDE = 16  # group bounds come from the keys of every 16th element
BIAS_STRIDE = 64  # group biases from the differences of every 64th (256+ per group)

Compress = Callable[[np.ndarray], bytes]
# Decodes one zstd frame of exactly n bytes into the given array (raises DecodeError).
DecompressInto = Callable[[memoryview, int, np.ndarray], np.ndarray]


class FrameLayoutError(Exception):
    """A framed payload whose frame table does not fit it."""


def delta_of(
    raw: memoryview | bytes,
    base: memoryview | bytes,
    width: int,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Each element minus the base's element (wrapping), less ``shift`` where given
    (one value per element), zigzag-folded so that small changes either way give
    small codes with zero high bytes; the bytes of a partial last element are XORed.
    On float tensors this beats a plain XOR, which turns a step across a power of two
    into a run of one-bits (bench: corpora)."""
    out = np.bitwise_xor(np.frombuffer(raw, np.uint8), np.frombuffer(base, np.uint8))
    n = len(out) // width
    if n:
        ours = np.frombuffer(raw, UINTS[width], n)
        diff = np.subtract(ours, np.frombuffer(base, UINTS[width], n))
        if shift is not None:
            np.subtract(diff, shift, out=diff)
        sign = diff.view(_INTS[width]) >> (8 * width - 1)  # all ones where negative
        np.left_shift(diff, 1, out=diff)
        out[: n * width] = np.bitwise_xor(diff, sign.view(UINTS[width])).view(np.uint8)
    return out


def undo_delta(
    delta: np.ndarray, base: memoryview | bytes, width: int, shift: np.ndarray | None = None
) -> np.ndarray:
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
        if shift is not None:
            np.add(codes, shift, out=codes)
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


def key_counts(base: memoryview | bytes, width: int, stride: int = 1) -> list[int]:
    """How many of the base's elements 0, stride, 2 * stride... have each group key."""
    if _kernels is not None:
        return _kernels.key_counts(base, width, stride)
    return np.bincount(group_keys(base, width)[::stride], minlength=CONTEXTS).tolist()


def group_bounds(sampled: list[int], minimum: int) -> list[int]:
    """Where the groups end, as the key each one stops before: keys taken in ascending
    order, counted on every SAMPLE_STRIDE-th element (``sampled``: the count of each
    key there; counting every element costs more than the grouping), a group closed
    once it holds ``minimum`` elements by that count, and the remainder joining the
    last group (fewer, larger groups: each frame costs a header and a Huffman
    table). Empty when there is one group."""
    keys = len(sampled)
    bounds: list[int] = []
    held = 0
    for key, count in enumerate(sampled):
        held += count * SAMPLE_STRIDE
        if held >= minimum:
            bounds.append(key + 1)
            held = 0
    if len(bounds) < 2:
        return []
    bounds[-1] = keys
    return bounds


@dataclass(frozen=True)
class Grouping:
    """How the elements of a block are grouped: by a key (codecs 5 and 6: their base
    element's, codec 7: their own), keys in ascending order, elements of a group in
    index order."""

    bounds: tuple[int, ...]  # the key each group stops before; the last is the key count
    sizes: tuple[int, ...]  # the elements of each group
    group_of_key: bytes  # a byte per key: the group it falls in

    @classmethod
    def of(cls, bounds: list[int], counts: list[int]) -> Grouping:
        """The grouping that closes groups at ``bounds``, given each key's count."""
        edges = list(zip([0, *bounds], bounds, strict=False))  # (low, high) of each group
        return cls.sized(bounds, [sum(counts[low:high]) for low, high in edges])

    @classmethod
    def sized(cls, bounds: list[int], sizes: list[int]) -> Grouping:
        """The grouping that closes groups at ``bounds`` (ascending), of these sizes."""
        return cls(tuple(bounds), tuple(sizes), _key_table(tuple(bounds)))


@functools.lru_cache(maxsize=4096)
def _key_table(bounds: tuple[int, ...]) -> bytes:
    """The group of each key, for groups closing at ``bounds``: blocks of a tensor
    share a few bounds, so a decode or a rebase rarely builds one."""
    keys_in = np.diff(bounds, prepend=0)  # how many keys each group spans
    return np.repeat(np.arange(len(bounds), dtype=np.uint8), keys_in).tobytes()


def grouping(base: memoryview | bytes, width: int, group_log: int) -> Grouping | None:
    """The grouping of a delta on ``base`` into groups of at least ``2**group_log``
    elements; None when there is one group in element order: with ``group_log`` 0,
    or too few elements for two groups."""
    if group_log == 0 or len(base) // width < 2 << group_log:
        return None
    bounds = group_bounds(key_counts(base, width, SAMPLE_STRIDE), 1 << group_log)
    if not bounds:
        return None
    return Grouping.of(bounds, key_counts(base, width))


def group_members(base: memoryview | bytes, width: int, groups: Grouping) -> list[np.ndarray]:
    """The indices of the elements of each group (ascending): numpy's way to group."""
    keys = group_keys(base, width)
    out, low = [], 0
    for high in groups.bounds:  # one pass per group: cheaper than sorting by key (few groups)
        if low == 0:
            inside = keys < high
        elif high == CONTEXTS:
            inside = keys >= low
        else:
            inside = (keys >= low) & (keys < high)
        out.append(np.flatnonzero(inside))
        low = high
    return out


def group_biases(
    raw: memoryview | bytes, base: memoryview | bytes, width: int, groups: Grouping
) -> np.ndarray:
    """What each group's differences lose before zigzag folding (codec 6): their median,
    judged on every BIAS_STRIDE-th element. Optimizer moments decay and weights
    shrink by about one factor at all magnitudes, which moves a float's bits by about
    one amount in each group; codes around zero then have high bytes of zero
    (bench: entropy)."""
    n = len(base) // width
    ours = np.frombuffer(raw, UINTS[width], n)[::BIAS_STRIDE]
    theirs = np.frombuffer(base, UINTS[width], n)[::BIAS_STRIDE]
    diff = np.subtract(ours, theirs).view(_INTS[width])
    group = np.frombuffer(groups.group_of_key, np.uint8)[_top_keys(theirs, width)]
    if width <= 4:  # one sort of (group, difference) packed in an int64: 7x a lexsort
        packed = np.sort((group.astype(np.int64) << 32) | (diff.astype(np.int64) + (1 << 31)))
        by_group, ranked = packed >> 32, (packed & 0xFFFFFFFF) - (1 << 31)
    else:
        order = np.lexsort((diff, group))  # by group, then by difference
        by_group, ranked = group[order], diff[order]
    starts = np.searchsorted(by_group, np.arange(len(groups.sizes)))
    ends = np.append(starts[1:], len(ranked))
    middle = np.minimum((starts + ends) // 2, len(ranked) - 1)  # a grouping has samples
    biases = np.where(ends > starts, ranked[middle], 0)  # a group without any: no bias
    return biases.astype(_INTS[width]).view(UINTS[width])


def _top_keys(values: np.ndarray, width: int) -> np.ndarray:
    """The group keys of base elements given as unsigned integers."""
    return (values >> (8 * width - 8)).astype(np.intp) & (CONTEXTS - 1)


def _shift(
    base: memoryview | bytes, width: int, groups: Grouping, biases: np.ndarray
) -> np.ndarray:
    """Each whole element's bias: its group's."""
    return biases[np.frombuffer(groups.group_of_key, np.uint8)[group_keys(base, width)]]


def _layout(
    width: int, groups: Grouping | None, biases: np.ndarray | None
) -> tuple[bytes | None, tuple[int, ...], bytes | None]:
    """The C loops' group arguments: each key's group, the group sizes, the biases."""
    table, sizes = (None, ()) if groups is None else (groups.group_of_key, groups.sizes)
    return table, sizes, None if biases is None else biases.astype(f"<u{width}").tobytes()


def split_planes(
    raw: memoryview | bytes,
    width: int,
    planes: np.ndarray,
    base: memoryview | bytes | None = None,
    groups: Grouping | None = None,
    biases: np.ndarray | None = None,
    scratch: np.ndarray | None = None,
) -> None:
    """The planes of ``raw``'s whole elements into ``planes`` (``width`` times their
    count): of their ``delta_of`` on ``base`` when given, grouped by ``groups``
    (which needs the base), each group's differences less its value of ``biases``.
    ``scratch``: as many bytes as ``planes`` that the C loop may use when grouping
    (else it gets memory of its own)."""
    n = len(planes) // width
    if _kernels is not None:
        if groups is not None and scratch is None:
            scratch = np.empty(len(planes), np.uint8)
        _kernels.split(raw, width, base, *_layout(width, groups, biases), planes, scratch)
        return
    data = np.frombuffer(raw, np.uint8, n * width)
    if base is not None:
        shift = None if biases is None else _shift(base, width, groups, biases)  # type: ignore[arg-type]
        data = delta_of(data, np.frombuffer(base, np.uint8, n * width), width, shift)
    if groups is not None:
        values = data.view(UINTS[width])
        members = group_members(base, width, groups)  # type: ignore[arg-type]
        data = np.concatenate([values[m] for m in members]).view(np.uint8)
    planes[:] = to_planes(data, width)


def join_planes(
    planes: np.ndarray,
    width: int,
    out: np.ndarray,
    base: memoryview | bytes | None = None,
    groups: Grouping | None = None,
    biases: np.ndarray | None = None,
    scratch: np.ndarray | None = None,
) -> None:
    """``split_planes`` undone: the whole elements back into ``out`` from ``planes``
    (``scratch`` as there)."""
    n = len(planes) // width
    if _kernels is not None:
        if groups is not None and scratch is None:
            scratch = np.empty(len(planes), np.uint8)
        _kernels.assemble(planes, width, base, *_layout(width, groups, biases), out, scratch)
        return
    if groups is None:
        from_planes(planes, width, out[: n * width])
    else:
        grouped = from_planes(planes, width)
        values, start = out[: n * width].view(UINTS[width]), 0
        for members in group_members(base, width, groups):  # type: ignore[arg-type]
            values[members] = grouped[start * width : (start + len(members)) * width].view(
                UINTS[width]
            )
            start += len(members)
    if base is not None:
        shift = None if biases is None else _shift(base, width, groups, biases)  # type: ignore[arg-type]
        undo_delta(out[: n * width], np.frombuffer(base, np.uint8, n * width), width, shift)


def grouping_gain_bits(
    raw: memoryview | bytes,
    base: memoryview | bytes,
    width: int,
    groups: Grouping,
    biases: np.ndarray | None = None,
) -> float:
    """What grouping (each group's differences less its value of ``biases``) may save,
    in bits per element, judged on every SAMPLE_STRIDE-th element. A delta's code
    costs about the entropy of its bit length plus the bits below its leading one;
    grouping pays through knowing the bit length better (the mutual information of
    group and length), a bias through shorter codes. Cheap next to encoding the
    grouped payload to find out."""
    joint, plain, below_plain, below_shifted = gain_counts(raw, base, width, groups, biases)
    samples = int(plain.sum())
    if not samples:
        return 0.0

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / samples
        return float(-(p * np.log2(p)).sum())

    given_group = entropy(joint.ravel()) - entropy(joint.sum(axis=1))
    return entropy(plain) - given_group + (below_plain - below_shifted) / samples


CODE_LENGTHS = 66  # bit lengths of a delta's code counted apart: 0 to 64 (numpy's frexp: 65)


def gain_counts(
    raw: memoryview | bytes,
    base: memoryview | bytes,
    width: int,
    groups: Grouping,
    biases: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """What ``grouping_gain_bits`` judges by, on every SAMPLE_STRIDE-th element: the
    counts of (group, bit length of the code less the group's bias), of the bit length
    of the plain code, and the sums of both lengths less one (bits below the leading
    one)."""
    count = len(groups.sizes)
    if _kernels is not None:
        packed = None if biases is None else biases.astype(f"<u{width}").tobytes()
        joint, plain, below_plain, below_shifted = _kernels.gain_counts(
            raw, base, width, SAMPLE_STRIDE, groups.group_of_key, count, packed
        )
        return (
            np.array(joint, np.int64).reshape(count, CODE_LENGTHS),
            np.array(plain, np.int64),
            below_plain,
            below_shifted,
        )
    n = len(base) // width
    ours = np.frombuffer(raw, UINTS[width], n)[::SAMPLE_STRIDE]
    theirs = np.frombuffer(base, UINTS[width], n)[::SAMPLE_STRIDE]
    group = np.frombuffer(groups.group_of_key, np.uint8)[_top_keys(theirs, width)].astype(np.intp)
    lengths = _code_lengths(ours, theirs, width, None)
    shifted = lengths if biases is None else _code_lengths(ours, theirs, width, biases[group])
    joint = np.bincount(group * CODE_LENGTHS + shifted, minlength=CODE_LENGTHS * count)
    return (
        joint.reshape(count, CODE_LENGTHS),
        np.bincount(lengths, minlength=CODE_LENGTHS),
        int(np.maximum(lengths - 1, 0).sum()),
        int(np.maximum(shifted - 1, 0).sum()),
    )


def _code_lengths(
    ours: np.ndarray, theirs: np.ndarray, width: int, shift: np.ndarray | None
) -> np.ndarray:
    """The bit lengths of the zigzag codes of ``ours`` against ``theirs`` (0 for 0)."""
    codes = delta_of(ours.tobytes(), theirs.tobytes(), width, shift).view(UINTS[width])
    lengths = np.frexp(codes.astype(np.float64))[1]
    rounded = lengths > 53  # a float64 may round such a code up to the next power of two
    if rounded.any():
        lengths[rounded] = [int(code).bit_length() for code in codes[rounded]]
    return lengths


def frame_planes(
    planes: np.ndarray, width: int, sizes: list[int], compress: Compress
) -> list[bytes]:
    """The frame table, then the frames, of ``planes`` (``split_planes``' output): for
    each plane, one frame per group of ``sizes``. A list, so that the caller joins
    the whole payload once."""
    n = len(planes) // width
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


def exponent_keys(raw: memoryview | bytes, width: int) -> np.ndarray:
    """Codec 7's key of each whole element: its top byte once the element is rotated
    left by one bit (for bf16, fp32 and fp64, its exponent, or the exponent's top
    byte)."""
    n = len(raw) // width
    lanes = np.frombuffer(raw, np.uint8, n * width).reshape(n, width)
    return (lanes[:, width - 1] << 1) | (lanes[:, width - 2] >> 7)


def exponent_counts(raw: memoryview | bytes, width: int, stride: int = 1) -> list[int]:
    """How many of the elements 0, stride, 2 * stride... have each of codec 7's keys."""
    if _kernels is not None:
        return _kernels.exponent_counts(raw, width, stride)
    keys = exponent_keys(raw, width)[::stride]
    return np.bincount(keys, minlength=EXPONENT_KEYS).tolist()


def exponent_bounds(raw: memoryview | bytes, width: int, group_log: int) -> list[int] | None:
    """Where codec 7's groups of a block's elements by their own key end (as
    ``group_bounds``), for groups of at least ``2**group_log`` elements; None when
    they would make one group."""
    if len(raw) // width < 2 << group_log:
        return None
    return group_bounds(exponent_counts(raw, width, SAMPLE_STRIDE), 1 << group_log) or None


def _rotated(values: np.ndarray, width: int, left: bool) -> np.ndarray:
    """The elements (unsigned integers) rotated by one bit."""
    bits = 8 * width - 1
    if left:
        return (values << 1) | (values >> bits)
    return (values >> 1) | (values << bits)


def split_exponents(
    raw: memoryview | bytes, width: int, bounds: list[int], planes: np.ndarray, scratch: np.ndarray
) -> Grouping:
    """Codec 7's planes of ``raw``'s whole elements into ``planes`` (``width`` times
    their count), grouped by their keys at ``bounds``; returns that grouping, sized.
    Each element is rotated left by a bit; the last plane holds its top byte, in
    element order, the others its other bytes, grouped by that byte. ``scratch``: at
    least as many bytes as ``planes``, for the C loop."""
    n = len(planes) // width
    table = _key_table(tuple(bounds))
    if _kernels is not None:
        sizes = _kernels.split_exponents(raw, width, table, len(bounds), planes, scratch)
        return Grouping(tuple(bounds), tuple(sizes), table)
    keys = exponent_keys(raw, width)
    group = np.frombuffer(table, np.uint8)[keys]
    groups = Grouping(
        tuple(bounds), tuple(np.bincount(group, minlength=len(bounds)).tolist()), table
    )
    order = np.argsort(group, kind="stable")
    turned = _rotated(np.frombuffer(raw, UINTS[width], n), width, left=True)
    lanes = to_planes(turned[order].view(np.uint8), width).reshape(width, n)
    planes.reshape(width, n)[: width - 1] = lanes[: width - 1]
    planes[(width - 1) * n :] = keys
    return groups


def join_exponents(
    planes: np.ndarray, width: int, groups: Grouping, out: np.ndarray, scratch: np.ndarray
) -> None:
    """``split_exponents`` undone: the whole elements back into ``out`` from ``planes``
    (``scratch`` as there). Raises ValueError when the keys do not fill the groups'
    sizes."""
    n = len(planes) // width
    if _kernels is not None:
        _kernels.assemble_exponents(planes, width, groups.group_of_key, groups.sizes, out, scratch)
        return
    keys = planes[(width - 1) * n :]
    order = np.argsort(_groups_of(keys, groups), kind="stable")
    grouped = np.empty(n * width, np.uint8)
    grouped.reshape(width, n)[: width - 1] = planes[: (width - 1) * n].reshape(width - 1, n)
    grouped[(width - 1) * n :] = keys[order]
    turned = np.empty(n, UINTS[width])
    turned[order] = from_planes(grouped, width).view(UINTS[width])
    out[: n * width] = _rotated(turned, width, left=False).view(np.uint8)


def _groups_of(keys: np.ndarray, groups: Grouping) -> np.ndarray:
    """The group of each key; ValueError unless the groups' sizes count them (as the
    C loops, which find a group that would overflow)."""
    group = np.frombuffer(groups.group_of_key, np.uint8)[keys]
    if np.bincount(group, minlength=len(groups.sizes)).tolist() != list(groups.sizes):
        raise ValueError("more elements of a group than its size")
    return group
