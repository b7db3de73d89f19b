"""Byte planes: the transforms of tensor blocks that the codecs compress.

A block of ``n`` elements of ``w`` bytes becomes ``w`` planes (all first bytes,
then all second bytes, ...): zstd sees a float's exponent bytes together,
where they compress, apart from its mantissa bytes, which barely do. A delta
block stores the planes of its difference with a base block, its elements
grouped (codecs 5 and 6) as grouping.py says. Codec 7 rotates each element left
a bit and stores its top byte (the exponent) first, in element order, its other
bytes grouped by it. The loops run in C where the extension was built
(native.py), else in numpy.
"""

from __future__ import annotations

import numpy as np

from ckptstore.store.codecs import native
from ckptstore.store.codecs.grouping import (
    Grouping,
    exponent_keys,
    group_keys,
    group_members,
    key_table,
)
from ckptstore.store.codecs.ids import INTS, UINTS


def delta_of(
    raw: memoryview | bytes | np.ndarray,
    base: memoryview | bytes | np.ndarray,
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
        sign = diff.view(INTS[width]) >> (8 * width - 1)  # all ones where negative
        np.left_shift(diff, 1, out=diff)
        out[: n * width] = np.bitwise_xor(diff, sign.view(UINTS[width])).view(np.uint8)
    return out


def undo_delta(
    delta: np.ndarray,
    base: memoryview | bytes | np.ndarray,
    width: int,
    shift: np.ndarray | None = None,
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
    for lane in range(width):  # one contiguous read per plane: faster than a transpose
        lanes[:, lane] = rows[lane]
    out[n * width :] = data[n * width :]
    return out


def _shift(
    base: memoryview | bytes, width: int, groups: Grouping, biases: np.ndarray
) -> np.ndarray:
    """Each whole element's bias: its group's."""
    shift: np.ndarray = biases[
        np.frombuffer(groups.group_of_key, np.uint8)[group_keys(base, width)]
    ]
    return shift


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
    if native.kernels is not None:
        if groups is not None and scratch is None:
            scratch = np.empty(len(planes), np.uint8)
        native.kernels.split(raw, width, base, *_layout(width, groups, biases), planes, scratch)
        return
    data = np.frombuffer(raw, np.uint8, n * width)
    if base is not None:
        shift = _group_shift(base, width, groups, biases)
        data = delta_of(data, np.frombuffer(base, np.uint8, n * width), width, shift)
    if groups is not None:
        values = data.view(UINTS[width])
        members = group_members(_needed(base), width, groups)
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
    if native.kernels is not None:
        if groups is not None and scratch is None:
            scratch = np.empty(len(planes), np.uint8)
        native.kernels.assemble(planes, width, base, *_layout(width, groups, biases), out, scratch)
        return
    if groups is None:
        from_planes(planes, width, out[: n * width])
    else:
        grouped = from_planes(planes, width)
        values, start = out[: n * width].view(UINTS[width]), 0
        for members in group_members(_needed(base), width, groups):
            values[members] = grouped[start * width : (start + len(members)) * width].view(
                UINTS[width]
            )
            start += len(members)
    if base is not None:
        shift = _group_shift(base, width, groups, biases)
        undo_delta(out[: n * width], np.frombuffer(base, np.uint8, n * width), width, shift)


def _needed(base: memoryview | bytes | None) -> memoryview | bytes:
    """The base, which a grouping of differences cannot do without."""
    if base is None:
        raise ValueError("elements are grouped by their base's, and there is no base")
    return base


def _group_shift(
    base: memoryview | bytes, width: int, groups: Grouping | None, biases: np.ndarray | None
) -> np.ndarray | None:
    """Each element's bias where the groups have biases, else None."""
    if biases is None:
        return None
    if groups is None:
        raise ValueError("biases are per group, and there are no groups")
    return _shift(base, width, groups, biases)


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
    table = key_table(tuple(bounds))
    if native.kernels is not None:
        sizes = native.kernels.split_exponents(raw, width, table, len(bounds), planes, scratch)
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
    if native.kernels is not None:
        native.kernels.assemble_exponents(
            planes, width, groups.group_of_key, groups.sizes, out, scratch
        )
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
    group: np.ndarray = np.frombuffer(groups.group_of_key, np.uint8)[keys]
    if np.bincount(group, minlength=len(groups.sizes)).tolist() != list(groups.sizes):
        raise ValueError("more elements of a group than its size")
    return group
