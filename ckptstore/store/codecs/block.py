"""BlockCodec: how a block's bytes become the payload stored under a codec id, and
back. A block id is always the hash of the raw bytes; the codec only says how the
stored payload turns back into them (FORMAT.md, "Codecs").

Whole blocks: zstd of the bytes (codec 1), or of their byte planes for numeric
data (codec 4), grouped by exponent where a tensor block makes two groups or
more (codec 7). Deltas on a base block: codec 6 for a tensor block, whose base
holds the same tensor; codec 8 for other bytes, whose base is the block at the
same place of the same file, any length. Every codec id ever written is
decoded through one table, DECODERS.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from ckptstore.errors import FormatError
from ckptstore.store.codecs.decode import (
    Base,
    decode_biased_delta,
    decode_exponents,
    decode_framed,
)
from ckptstore.store.codecs.estimate import grouping_gain, grouping_gain_bits, plane_width
from ckptstore.store.codecs.frames import (
    DEFAULT_ZSTD_LEVEL,
    FrameLayoutError,
    ZstdWork,
    frame_planes,
)
from ckptstore.store.codecs.grouping import Grouping, exponent_bounds, group_biases, grouping
from ckptstore.store.codecs.ids import (
    DELTA_CODECS,
    DELTA_WIDTHS,
    MAX_GROUP_LOG,
    PLANE_WIDTHS,
    Codec,
    DecodeError,
)
from ckptstore.store.codecs.legacy import (
    decode_grouped_delta,
    decode_one_frame,
    decode_one_frame_delta,
)
from ckptstore.store.codecs.planes import split_exponents, split_planes

# Codec 6 groups at least this many elements per frame, as log2 (bench: entropy).
DELTA_GROUP_LOG = 14
# Codec 7 likewise: its groups are of a block's own elements (bench: entropy).
EXPONENT_GROUP_LOG = 11
# A grouped delta decodes slower than an ungrouped one (its elements are scattered
# back one by one): it is kept only when this much smaller (bench: entropy).
GROUPING_MIN_GAIN = 0.02
# Where the estimate says grouping saves this share of the ungrouped payload or more,
# the grouped payload is encoded without the other to compare.
GROUPING_SURE_GAIN = 0.04

PREFIX_MIN_BYTES = 8  # zstd refuses a shorter dictionary
# The shortest zstd frame: magic number (4 bytes), frame header (2 at the least) and
# one block header (3), for no content at all.
MIN_ZSTD_FRAME = 9


def min_delta_len(width: int) -> int:
    """The length no codec 6 payload of ``width``-byte elements is shorter than: two
    header bytes, then for each byte plane a frame-table entry and a frame (grouped
    payloads hold more of both, and the group biases)."""
    return 2 + width * (4 + MIN_ZSTD_FRAME)


# A width-prefixed payload's decoder: (work, payload, width, base, out), raw bytes to out.
PlanesDecoder = Callable[[ZstdWork, memoryview, int, Base | None, np.ndarray], None]
# Every codec id, its element widths and its decoder.
DECODERS: dict[Codec, tuple[tuple[int, ...], PlanesDecoder]] = {
    Codec.ZSTD_PLANES: (PLANE_WIDTHS, decode_one_frame),
    Codec.DELTA_PLANES: (DELTA_WIDTHS, decode_one_frame_delta),
    Codec.FRAMED_PLANES: (PLANE_WIDTHS, decode_framed),
    Codec.GROUPED_DELTA: (DELTA_WIDTHS, decode_grouped_delta),
    Codec.BIASED_DELTA: (DELTA_WIDTHS, decode_biased_delta),
    Codec.EXPONENT_PLANES: (PLANE_WIDTHS, decode_exponents),
}


class BlockCodec:
    """Encodes and decodes block payloads; safe to share between threads."""

    def __init__(
        self,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
        byte_planes: bool = True,
        delta_group_log: int = DELTA_GROUP_LOG,
        exponent_group_log: int = EXPONENT_GROUP_LOG,
    ) -> None:
        self.zstd_level = zstd_level
        self.byte_planes = byte_planes
        for name, value in (
            ("delta_group_log", delta_group_log),
            ("exponent_group_log", exponent_group_log),
        ):
            if not 0 <= value <= MAX_GROUP_LOG:
                raise ValueError(f"{name} must be 0 to {MAX_GROUP_LOG}, not {value}")
        self.delta_group_log = delta_group_log  # 0: deltas not grouped
        self.exponent_group_log = exponent_group_log  # 0: whole blocks not grouped
        self._work = ZstdWork(zstd_level)

    def encode(
        self, raw: memoryview, width: int | None = None, *, aligned: bool = False
    ) -> tuple[Codec, bytes | memoryview]:
        """zstd of the bytes, or of their byte planes for numeric data; the raw bytes when
        neither shrinks them. ``width`` is the element width of a tensor block's dtype, or
        the caller's ``plane_width`` verdict for data like this (a whole window is judged
        once); None to judge this block. ``aligned``: the block starts at an element of
        a known dtype (a tensor block), so its elements are grouped by exponent where
        that makes two groups or more; on bytes of a guessed width the groups would
        follow a byte that may not hold the exponent (larger on a stream of floats cut
        by FastCDC, bench: engine)."""
        if not self.byte_planes or (width is not None and width not in PLANE_WIDTHS):
            width = 0  # planes off, or one-byte elements: nothing to group
        elif width is None:
            width = plane_width(raw)
        if width:
            codec, payload = self._planes_payload(raw, width, aligned)
        else:
            codec, payload = Codec.ZSTD, self._work.compress(raw)
        if len(payload) < len(raw):
            return codec, payload
        return Codec.RAW, raw

    def _planes_payload(self, raw: memoryview, width: int, aligned: bool) -> tuple[Codec, bytes]:
        """Codec 7's payload, or codec 4's where the elements make one group: width,
        (codec 7) group count less one, each group's last key, the group sizes, the
        frame table and frames of the key plane, those of the other planes, and the
        partial element unchanged.

        Grouping by exponent saves bytes on the bench corpora as a whole and costs
        little on the blocks where it does not (bench/results/2026-11-25-vm-entropy.md):
        a float's exponent tells how its mantissa bytes spread (rounding leaves low
        bits zero on small values), so the writer does not encode both to compare. It
        encodes and decodes slower than codec 4 (a scatter per element)."""
        n = len(raw) // width
        planes = self._work.scratch("planes", n * width)
        compress = self._work.compress_plane
        tail = raw[n * width :]
        bounds = None
        if aligned and self.exponent_group_log:
            bounds = exponent_bounds(raw, width, self.exponent_group_log)
        if bounds is None:
            split_planes(raw, width, planes)
            return Codec.FRAMED_PLANES, b"".join(
                (bytes([width]), *frame_planes(planes, width, [n], compress), tail)
            )
        grouped = self._work.scratch("grouped", n * width)
        groups = split_exponents(raw, width, bounds, planes, grouped)
        count, keys_at = len(groups.sizes), (width - 1) * n
        return Codec.EXPONENT_PLANES, b"".join(
            (
                bytes([width, count - 1, *(bound - 1 for bound in groups.bounds)]),
                struct.pack(f"<{count}I", *groups.sizes),
                *frame_planes(planes[keys_at:], 1, [n], compress),
                *frame_planes(planes[:keys_at], width - 1, list(groups.sizes), compress),
                tail,
            )
        )

    def encode_delta(
        self, raw: memoryview, base: bytes | memoryview, width: int, limit: int | None = None
    ) -> tuple[Codec, bytes | memoryview] | None:
        """The delta-against-base encoding of a tensor block, or None unless its payload is
        smaller than ``limit`` bytes (the block's own stored payload; by default its raw
        length). Its elements are grouped by their base's exponent, each group's
        differences less their median, only when that makes the payload
        GROUPING_MIN_GAIN smaller: grouped deltas decode slower."""
        if width not in DELTA_WIDTHS or len(base) != len(raw) or not self.byte_planes:
            return None
        groups = grouping(base, width, self.delta_group_log)
        if groups is None:
            payload = self._delta_payload(raw, base, width)
        else:
            payload = self._grouped_or_not(raw, base, width, groups)
        if len(payload) >= (len(raw) if limit is None else limit):
            return None
        return Codec.BIASED_DELTA, payload

    def _grouped_or_not(
        self, raw: memoryview, base: bytes | memoryview, width: int, groups: Grouping
    ) -> bytes:
        """Codec 6's payload with the elements grouped or not: both are encoded to
        compare, but not where the estimate settles it.

        Below half GROUPING_MIN_GAIN grouping is not tried (on the bench corpora no
        block estimated below that gained GROUPING_MIN_GAIN; bench: entropy). From
        GROUPING_SURE_GAIN up, by the estimate with the group biases and by the one
        without them (the biases alone can mislead it, as on a change in proportion
        to each value), the grouped payload is encoded alone: every such block of
        the bench corpora gained more than GROUPING_MIN_GAIN
        (bench/results/2026-12-06-vm-ingest-speed.md)."""
        biases = group_biases(raw, base, width, groups)
        gain_bits, plain_bits = grouping_gain(raw, base, width, groups, biases)
        sure = GROUPING_SURE_GAIN * plain_bits
        if 0 < sure <= gain_bits and sure <= grouping_gain_bits(raw, base, width, groups):
            return self._delta_payload(raw, base, width, self.delta_group_log, groups, biases)
        payload = self._delta_payload(raw, base, width)
        if gain_bits * (len(raw) // width) >= GROUPING_MIN_GAIN / 2 * 8 * len(payload):
            grouped = self._delta_payload(raw, base, width, self.delta_group_log, groups, biases)
            if len(grouped) <= (1 - GROUPING_MIN_GAIN) * len(payload):
                return grouped
        return payload

    def encode_prefixed(
        self, raw: memoryview, base: bytes | memoryview, limit: int
    ) -> tuple[Codec, bytes] | None:
        """Codec 8: one zstd frame of a block's bytes with ``base`` (any block's raw
        bytes, of any length) as its prefix, or None unless smaller than ``limit`` (or
        the base is shorter than zstd takes a dictionary: PREFIX_MIN_BYTES)."""
        if len(base) < PREFIX_MIN_BYTES:
            return None
        payload = self._work.compress_prefixed(raw, base)
        return (Codec.ZSTD_PREFIX, payload) if len(payload) < limit else None

    def _delta_payload(
        self,
        raw: memoryview,
        base: bytes | memoryview,
        width: int,
        group_log: int = 0,
        groups: Grouping | None = None,
        biases: np.ndarray | None = None,
    ) -> bytes:
        """Codec 6's payload: width, group size, each group's bias (when grouped), the
        frame table and frames, and the partial element XORed with the base's."""
        n = len(raw) // width
        planes = self._work.scratch("planes", n * width)
        scratch = None if groups is None else self._work.scratch("grouped", n * width)
        split_planes(raw, width, planes, base, groups, biases, scratch)
        tail = np.bitwise_xor(
            np.frombuffer(raw, np.uint8)[n * width :], np.frombuffer(base, np.uint8)[n * width :]
        )
        sizes = [n] if groups is None else list(groups.sizes)
        return b"".join(
            (
                bytes([width, group_log if groups is not None else 0]),
                b"" if biases is None else biases.astype(f"<u{width}").tobytes(),
                *frame_planes(planes, width, sizes, self._work.compress_plane),
                tail.tobytes(),
            )
        )

    def decode(
        self,
        codec: int,
        payload: bytes | memoryview,
        raw_len: int,
        base: Base | None = None,
        out: np.ndarray | None = None,
    ) -> bytes | memoryview:
        """The raw bytes of a payload (``base``: the raw bytes of its base block, for
        codecs 3, 5, 6 and 8), written into ``out`` (a uint8 array of ``raw_len``) when given,
        else into memory of their own. Raises DecodeError if the payload cannot be decoded,
        FormatError if the codec id is unknown.

        Fresh memory costs page faults that, for a chain of deltas, cost more than
        decoding (bench: corpora): zstd output goes to a buffer each thread reuses,
        and a caller decoding a chain passes ``out`` for the levels it discards."""
        if codec == Codec.RAW:
            if len(payload) != raw_len:
                raise DecodeError(f"raw payload is {len(payload)} bytes, expected {raw_len}")
            if out is None:
                return bytes(payload)
            out[:] = np.frombuffer(payload, np.uint8)
            return out.data
        if codec == Codec.ZSTD:
            out = np.empty(raw_len, np.uint8) if out is None else out
            return self._work.unzstd_into(payload, raw_len, out).data
        if codec == Codec.ZSTD_PREFIX:
            if base is None:
                raise DecodeError("delta block decoded without its base block")
            out = np.empty(raw_len, np.uint8) if out is None else out
            return self._work.unzstd_prefixed_into(payload, base, raw_len, out).data
        if codec not in DECODERS:
            raise FormatError(
                f"unknown codec id {codec}; this ckptstore knows {[c.value for c in Codec]}"
            )
        widths, decoder = DECODERS[Codec(codec)]
        width = payload[0] if len(payload) else 0
        if width not in widths:
            raise DecodeError(f"element width {width} is not one of {widths}")
        if codec in DELTA_CODECS and (base is None or len(base) != raw_len):
            raise DecodeError("delta block decoded without its base block")
        out = np.empty(raw_len, np.uint8) if out is None else out
        try:
            decoder(self._work, memoryview(payload), width, base, out)
        except FrameLayoutError as exc:
            raise DecodeError(str(exc)) from exc
        return out.data
