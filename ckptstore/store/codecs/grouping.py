"""How the elements of a block are grouped before their planes are framed.

Codecs 5 and 6 group a delta's elements by their base element's top byte (a
float's exponent, less its lowest bit): the size of a change in a float's bits
follows the float's exponent, so each frame holds changes of one magnitude, and
codec 6 takes each group's typical change off its differences. Codec 7 groups a
whole block's elements by their own exponent: how many low mantissa bits are
zero, and how the others are spread, follow it (FORMAT.md, "Codecs"; bench:
entropy). Keys are counted on a sample; group bounds close a group once it holds
a minimum of elements.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ckptstore.store.codecs import native
from ckptstore.store.codecs.ids import INTS, UINTS

CONTEXTS = 128  # values of a group key: the top byte of the base element, sign bit dropped
EXPONENT_KEYS = 256  # codec 7's keys: an element's top byte once rotated left a bit
SAMPLE_STRIDE = 16  # group bounds come from the keys of every 16th element
BIAS_STRIDE = 64  # group biases from the differences of every 64th (256+ per group)


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
        return cls(tuple(bounds), tuple(sizes), key_table(tuple(bounds)))


@functools.lru_cache(maxsize=4096)
def key_table(bounds: tuple[int, ...]) -> bytes:
    """The group of each key, for groups closing at ``bounds``: blocks of a tensor
    share a few bounds, so a decode or a rebase rarely builds one."""
    keys_in = np.diff(bounds, prepend=0)  # how many keys each group spans
    return np.repeat(np.arange(len(bounds), dtype=np.uint8), keys_in).tobytes()


def group_keys(base: memoryview | bytes, width: int) -> np.ndarray:
    """Each base element's group key: its top byte without the sign bit (a float's
    exponent, less its lowest bit)."""
    n = len(base) // width
    top = np.frombuffer(base, np.uint8, n * width).reshape(n, width)[:, width - 1]
    return top & (CONTEXTS - 1)


def key_counts(base: memoryview | bytes, width: int, stride: int = 1) -> list[int]:
    """How many of the base's elements 0, stride, 2 * stride... have each group key."""
    if native.kernels is not None:
        counts: list[int] = native.kernels.key_counts(base, width, stride)
        return counts
    counts = np.bincount(group_keys(base, width)[::stride], minlength=CONTEXTS).tolist()
    return counts


def exponent_keys(raw: memoryview | bytes, width: int) -> np.ndarray:
    """Codec 7's key of each whole element: its top byte once the element is rotated
    left by one bit (for bf16, fp32 and fp64, its exponent, or the exponent's top
    byte)."""
    n = len(raw) // width
    lanes = np.frombuffer(raw, np.uint8, n * width).reshape(n, width)
    return (lanes[:, width - 1] << 1) | (lanes[:, width - 2] >> 7)


def exponent_counts(raw: memoryview | bytes, width: int, stride: int = 1) -> list[int]:
    """How many of the elements 0, stride, 2 * stride... have each of codec 7's keys."""
    if native.kernels is not None:
        counts: list[int] = native.kernels.exponent_counts(raw, width, stride)
        return counts
    keys = exponent_keys(raw, width)[::stride]
    counts = np.bincount(keys, minlength=EXPONENT_KEYS).tolist()
    return counts


def group_bounds(sampled: list[int], minimum: int) -> list[int]:
    """Where the groups end, as the key each one stops before: keys taken in ascending
    order, counted on every SAMPLE_STRIDE-th element (``sampled``: the count of each
    key there; counting every element costs more than the grouping), a group closed
    once it holds ``minimum`` elements by that count, and the remainder joining the
    last group (fewer, larger groups: each frame costs a header and a Huffman
    table). Empty when there is one group."""
    keys = len(sampled)
    # A group closing at key k holds the count of the keys since the last close: the
    # running total's rise since then. Found by search, not by a loop over every key
    # (which cost about as much as compressing a small block).
    held = list(itertools.accumulate(sampled))
    bounds: list[int] = []
    start, before = 0, 0
    while start < keys:
        key = bisect.bisect_left(held, before + -(-minimum // SAMPLE_STRIDE), lo=start)
        if key >= keys:
            break
        bounds.append(key + 1)
        start, before = key + 1, held[key]
    if len(bounds) < 2:
        return []
    bounds[-1] = keys
    return bounds


def grouping(base: memoryview | bytes, width: int, group_log: int) -> Grouping | None:
    """The grouping of a delta on ``base`` into groups of at least ``2**group_log``
    elements; None when there is one group in element order: with ``group_log`` 0,
    or too few elements for two groups."""
    if group_log == 0 or len(base) // width < 2 << group_log:
        return None
    bounds = group_bounds(key_counts(base, width, SAMPLE_STRIDE), 1 << group_log)
    if not bounds:
        return None
    return Grouping.sized(bounds, group_sizes(base, width, bounds))


def group_sizes(base: memoryview | bytes, width: int, bounds: list[int]) -> list[int]:
    """How many of the base's elements fall in each group closing at ``bounds``. The
    C loop compares keys with the bounds in vectors where it can: a decode of a
    delta groups by its base each time, and counting every key cost as much as
    un-grouping the elements (bench: old_restore)."""
    if native.kernels is not None:
        sizes: list[int] = native.kernels.group_sizes(
            base, width, key_table(tuple(bounds)), len(bounds)
        )
        return sizes
    return list(Grouping.of(bounds, key_counts(base, width)).sizes)


def exponent_bounds(raw: memoryview | bytes, width: int, group_log: int) -> list[int] | None:
    """Where codec 7's groups of a block's elements by their own key end (as
    ``group_bounds``), for groups of at least ``2**group_log`` elements; None when
    they would make one group."""
    if len(raw) // width < 2 << group_log:
        return None
    return group_bounds(exponent_counts(raw, width, SAMPLE_STRIDE), 1 << group_log) or None


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
    diff = np.subtract(ours, theirs).view(INTS[width])
    group = np.frombuffer(groups.group_of_key, np.uint8)[top_keys(theirs, width)]
    if width <= 4:  # one sort of (group, difference) packed in an int64: faster than a lexsort
        packed = np.sort((group.astype(np.int64) << 32) | (diff.astype(np.int64) + (1 << 31)))
        by_group, ranked = packed >> 32, (packed & 0xFFFFFFFF) - (1 << 31)
    else:
        order = np.lexsort((diff, group))  # by group, then by difference
        by_group, ranked = group[order], diff[order]
    starts = np.searchsorted(by_group, np.arange(len(groups.sizes)))
    ends = np.append(starts[1:], len(ranked))
    middle = np.minimum((starts + ends) // 2, len(ranked) - 1)  # a grouping has samples
    biases = np.where(ends > starts, ranked[middle], 0)  # a group without any: no bias
    return biases.astype(INTS[width]).view(UINTS[width])


def top_keys(values: np.ndarray, width: int) -> np.ndarray:
    """The group keys of base elements given as unsigned integers."""
    return (values >> (8 * width - 8)).astype(np.intp) & (CONTEXTS - 1)
