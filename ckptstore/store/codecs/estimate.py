"""Estimates that choose an encoding without encoding it every way: whether byte
planes pay on bytes of unknown type, and at which element width; and what grouping
a delta's elements may save. Each is judged on a sample, at a small cost next to
compressing (bench: entropy)."""

from __future__ import annotations

import numpy as np

from ckptstore.store.codecs import native
from ckptstore.store.codecs.grouping import SAMPLE_STRIDE, Grouping, top_keys
from ckptstore.store.codecs.ids import UINTS
from ckptstore.store.codecs.planes import delta_of

ESTIMATED_WIDTHS = (2, 4)  # widths the estimate tries on data of unknown type


SAMPLE_BYTES = 8 * 1024  # ~2,000 elements tell 7.3 from 6.6 bits per byte


MIN_SAMPLE_BYTES = 4 * 1024


# Byte planes pay on numeric data, whose bytes look like noise to LZ matching
# (order-0 entropy above NOISY_BITS); on text or code they would break LZ matches.
NOISY_BITS = 5.5


MIN_GAIN_BITS = 0.25


def _entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Order-0 entropy (bits per byte) of each row of byte counts."""
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p), 0.0)
    bits: np.ndarray = -terms.sum(axis=1)
    return bits


def plane_width(raw: memoryview) -> int:
    """The element width whose byte planes should compress best, or 0 for none.

    Decided on a sample from the histograms of the bytes and of each byte
    plane: cheap next to compressing, and the phase does not matter (shifting
    the start only changes which plane comes first).
    """
    if len(raw) < MIN_SAMPLE_BYTES:
        return 0
    sample = np.frombuffer(raw[:SAMPLE_BYTES], np.uint8)
    raw_bits = _entropy_bits(np.bincount(sample, minlength=256)[None, :])[0]
    if raw_bits < NOISY_BITS:
        return 0
    best_width, best_bits = 0, raw_bits - MIN_GAIN_BITS
    for width in ESTIMATED_WIDTHS:
        bits = plane_bits(sample, width)
        if bits < best_bits:
            best_width, best_bits = width, bits
    return best_width


def plane_bits(data: np.ndarray, width: int) -> float:
    """Mean order-0 entropy (bits per byte) of the byte planes of a sample."""
    n = len(data) // width
    lanes = data[: n * width].reshape(n, width).astype(np.uint16)
    lanes += np.arange(width, dtype=np.uint16) << 8
    counts = np.bincount(lanes.ravel(), minlength=256 * width).reshape(width, 256)
    return float(_entropy_bits(counts).mean())


WHOLE_SAMPLE_BYTES = 16 * 1024  # sample a whole payload's size is estimated on


def whole_estimate(raw: memoryview | bytes, width: int) -> float:
    """About how many bytes the full whole encoding of a tensor block of ``width``-byte
    elements takes: the order-0 entropy of its byte planes on a sample. On float
    tensors it comes out above what codec 7 stores (its exponent groups compress
    further), so a delta found smaller than a share of it is smaller than the whole
    payload too (bench: ingest_designs)."""
    sample = np.frombuffer(raw, np.uint8)[:WHOLE_SAMPLE_BYTES]
    return plane_bits(sample, width) / 8 * len(raw)


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
    return grouping_gain(raw, base, width, groups, biases)[0]


def grouping_gain(
    raw: memoryview | bytes,
    base: memoryview | bytes,
    width: int,
    groups: Grouping,
    biases: np.ndarray | None = None,
) -> tuple[float, float]:
    """``grouping_gain_bits``, and by the same model what a delta's code costs without
    grouping (bits per element): their ratio is the share of an ungrouped payload
    that grouping may save, known before either payload is encoded."""
    joint, plain, below_plain, below_shifted = gain_counts(raw, base, width, groups, biases)
    samples = int(plain.sum())
    if not samples:
        return 0.0, 0.0

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / samples
        return float(-(p * np.log2(p)).sum())

    given_group = entropy(joint.ravel()) - entropy(joint.sum(axis=1))
    gain = entropy(plain) - given_group + (below_plain - below_shifted) / samples
    return gain, entropy(plain) + below_plain / samples


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
    if native.kernels is not None:
        packed = None if biases is None else biases.astype(f"<u{width}").tobytes()
        joint, plain, below_plain, below_shifted = native.kernels.gain_counts(
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
    group = np.frombuffer(groups.group_of_key, np.uint8)[top_keys(theirs, width)].astype(np.intp)
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
