"""Block codecs, keyed by the id byte persisted with every block.

A block id is always the hash of the raw bytes; the codec only says how the
stored payload turns back into them. Ids never change meaning; new encodings
get new ids (see FORMAT.md).
"""

from __future__ import annotations

import logging
import struct
import threading
from enum import IntEnum

import numpy as np
import zstandard

from ckptstore.errors import FormatError
from ckptstore.store.codecs.planes import (
    EXPONENT_KEYS,
    UINTS,
    FrameLayoutError,
    Grouping,
    exponent_bounds,
    frame_planes,
    from_planes,
    group_biases,
    grouping,
    grouping_gain_bits,
    join_exponents,
    join_planes,
    split_exponents,
    split_planes,
    undo_delta,
    unframe_planes,
)

try:  # codec 7's key planes in Huffman-only zstd frames (_huffman.c)
    from ckptstore.store.codecs._huffman import huffman_frame
except ImportError:  # built without a C compiler: zstd's compressor writes them
    huffman_frame = None

log = logging.getLogger("ckptstore.codecs")


class Codec(IntEnum):
    RAW = 0  # payload is the raw bytes
    ZSTD = 1  # payload is one zstd frame of the raw bytes
    ZSTD_PLANES = 2  # u8 element width, then one zstd frame of the byte planes (read only)
    DELTA_PLANES = 3  # u8 element width, then zstd of the planes of delta_of(raw, base) (read only)
    FRAMED_PLANES = 4  # u8 element width, frame table, one zstd frame per byte plane
    GROUPED_DELTA = 5  # codec 4's frames of delta_of(raw, base), grouped (read only)
    BIASED_DELTA = 6  # codec 5 with a bias per group taken off the differences
    EXPONENT_PLANES = 7  # codec 4 with the elements grouped by their own exponent


WIDTH_PREFIXED = (
    Codec.ZSTD_PLANES,
    Codec.DELTA_PLANES,
    Codec.FRAMED_PLANES,
    Codec.GROUPED_DELTA,
    Codec.BIASED_DELTA,
    Codec.EXPONENT_PLANES,
)
DELTA_CODECS = (Codec.DELTA_PLANES, Codec.GROUPED_DELTA, Codec.BIASED_DELTA)


# Level 1: same ratio as 3 on float tensors, faster (bench/results/*-engine.md).
DEFAULT_ZSTD_LEVEL = 1  # for bytes that are not planes (codec 1)
# Byte planes hold few long repeats: zstd serves as an entropy coder there, and its
# usual match search finds short matches that cost more than the literals they
# replace. A tiny hash table and 7-byte minimum matches keep only the long runs
# (zeros of unchanged elements): 1-3% smaller than level 1 and twice as fast on
# exponent planes (bench: entropy).
PLANE_ZSTD_PARAMS = zstandard.ZstdCompressionParameters(
    window_log=17, hash_log=6, min_match=7, strategy=zstandard.STRATEGY_FAST
)
# Codec 6 groups at least this many elements per frame, as log2 (bench: entropy).
DELTA_GROUP_LOG = 14
# Codec 7 likewise: its groups are of a block's own elements (bench: entropy).
EXPONENT_GROUP_LOG = 11
# A grouped delta decodes about half as fast as an ungrouped one (its elements are
# scattered back one by one): it is kept only when this much smaller (bench: entropy).
GROUPING_MIN_GAIN = 0.02
MAX_GROUP_LOG = 31


PLANE_WIDTHS = (2, 4, 8)  # element widths codecs 2, 4 and 7 store
DELTA_WIDTHS = (1, 2, 4, 8)  # element widths codecs 3, 5 and 6 store
ESTIMATED_WIDTHS = (2, 4)  # widths the estimate tries on data of unknown type
SAMPLE_BYTES = 8 * 1024  # ~2,000 elements tell 7.3 from 6.6 bits per byte
MIN_SAMPLE_BYTES = 4 * 1024
# Byte planes pay on numeric data, whose bytes look like noise to LZ matching
# (order-0 entropy above NOISY_BITS); on text or code they would break LZ matches.
NOISY_BITS = 5.5
MIN_GAIN_BITS = 0.25


class DecodeError(Exception):
    """A payload that its codec cannot decode (the caller names the block)."""


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


def _entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Order-0 entropy (bits per byte) of each row of byte counts."""
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p), 0.0)
    return -terms.sum(axis=1)


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
        self._local = threading.local()

    def _scratch(self, name: str, size: int) -> np.ndarray:
        """A buffer of this thread's, ``size`` long, reused from call to call (fresh
        memory costs page faults on every use)."""
        buffers: dict[str, np.ndarray] | None = getattr(self._local, "scratch", None)
        if buffers is None:
            buffers = self._local.scratch = {}
        buffer = buffers.get(name)
        if buffer is None or len(buffer) < size:
            buffer = buffers[name] = np.empty(size, np.uint8)
        return buffer[:size]

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self.zstd_level, write_checksum=False)
            self._local.compressor = compressor
        return compressor

    def _plane_compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._local, "plane_compressor", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(compression_params=PLANE_ZSTD_PARAMS)
            self._local.plane_compressor = compressor
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        return decompressor

    def encode(
        self, raw: memoryview, width: int | None = None, *, aligned: bool = False
    ) -> tuple[Codec, bytes | memoryview]:
        """zstd of the bytes, or of their byte planes for numeric data; the raw bytes when
        neither shrinks them. ``width`` is the element width of a tensor block's dtype, or
        the caller's ``plane_width`` verdict for data like this (a whole window is judged
        once); None to judge this block. ``aligned``: the block starts at an element of
        a known dtype (a tensor block), so its elements are grouped by exponent where
        that makes two groups or more; on bytes of a guessed width the groups would
        follow a byte that may not hold the exponent (0.4% larger on a stream of
        floats cut by FastCDC, bench: engine)."""
        if not self.byte_planes or (width is not None and width not in PLANE_WIDTHS):
            width = 0  # planes off, or one-byte elements: nothing to group
        elif width is None:
            width = plane_width(raw)
        if width:
            codec, payload = self._planes_payload(raw, width, aligned)
        else:
            codec, payload = Codec.ZSTD, self._compressor().compress(raw)
        if len(payload) < len(raw):
            return codec, payload
        return Codec.RAW, raw

    def _planes_payload(self, raw: memoryview, width: int, aligned: bool) -> tuple[Codec, bytes]:
        """Codec 7's payload, or codec 4's where the elements make one group: width,
        (codec 7) group count less one, each group's last key, the group sizes, the
        frame table and frames of the key plane, those of the other planes, and the
        partial element unchanged.

        Grouping by exponent cost at most 0.2% on a block of the bench corpora and
        saved 1-3% in all (bench: entropy): a float's exponent tells how its mantissa
        bytes spread (rounding leaves low bits zero on small values), so the writer
        does not encode both to compare. It encodes and decodes at about half codec
        4's speed (a scatter per element)."""
        n = len(raw) // width
        planes = self._scratch("planes", n * width)
        compress = self._plane_compressor().compress
        tail = raw[n * width :]
        bounds = None
        if aligned and self.exponent_group_log:
            bounds = exponent_bounds(raw, width, self.exponent_group_log)
        if bounds is None:
            split_planes(raw, width, planes)
            return Codec.FRAMED_PLANES, b"".join(
                (bytes([width]), *frame_planes(planes, width, [n], compress), tail)
            )
        groups = split_exponents(raw, width, bounds, planes, self._scratch("grouped", n * width))
        count, keys_at = len(groups.sizes), (width - 1) * n
        return Codec.EXPONENT_PLANES, b"".join(
            (
                bytes([width, count - 1, *(bound - 1 for bound in groups.bounds)]),
                struct.pack(f"<{count}I", *groups.sizes),
                *frame_planes(planes[keys_at:], 1, [n], self._key_frame),
                *frame_planes(planes[:keys_at], width - 1, list(groups.sizes), compress),
                tail,
            )
        )

    def _key_frame(self, keys: np.ndarray) -> bytes:
        """Codec 7's key plane as one zstd frame: of Huffman-coded literals alone where
        that suits the plane (_huffman.c; 0.4-1% smaller blocks, bench: entropy),
        checked by decoding it, since a wrong frame would lose the block; else zstd's."""
        if huffman_frame is not None:
            frame = huffman_frame(keys)
            if frame is not None:
                try:
                    if np.array_equal(self._unzstd_into(frame, len(keys)), keys):
                        return frame
                except DecodeError:
                    pass
                log.error("a Huffman frame did not decode back; zstd writes the plane")
        return self._plane_compressor().compress(keys)

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
        payload = self._delta_payload(raw, base, width)
        groups = grouping(base, width, self.delta_group_log)
        if groups is not None:
            biases = group_biases(raw, base, width, groups)
            if self._grouping_may_pay(raw, base, width, groups, biases, len(payload)):
                grouped = self._delta_payload(
                    raw, base, width, self.delta_group_log, groups, biases
                )
                if len(grouped) <= (1 - GROUPING_MIN_GAIN) * len(payload):
                    payload = grouped
        if len(payload) >= (len(raw) if limit is None else limit):
            return None
        return Codec.BIASED_DELTA, payload

    @staticmethod
    def _grouping_may_pay(
        raw: memoryview,
        base: bytes | memoryview,
        width: int,
        groups: Grouping,
        biases: np.ndarray,
        payload_len: int,
    ) -> bool:
        """Whether to encode the grouped payload to compare: not where the estimate
        says it saves less than half GROUPING_MIN_GAIN (on the bench corpora no block
        estimated below that gained GROUPING_MIN_GAIN; bench: entropy)."""
        saved_bits = grouping_gain_bits(raw, base, width, groups, biases) * (len(raw) // width)
        return saved_bits >= GROUPING_MIN_GAIN / 2 * 8 * payload_len

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
        planes = self._scratch("planes", n * width)
        scratch = None if groups is None else self._scratch("grouped", n * width)
        split_planes(raw, width, planes, base, groups, biases, scratch)
        tail = np.bitwise_xor(
            np.frombuffer(raw, np.uint8)[n * width :], np.frombuffer(base, np.uint8)[n * width :]
        )
        sizes = [n] if groups is None else list(groups.sizes)
        return b"".join(
            (
                bytes([width, group_log if groups is not None else 0]),
                b"" if biases is None else biases.astype(f"<u{width}").tobytes(),
                *frame_planes(planes, width, sizes, self._plane_compressor().compress),
                tail.tobytes(),
            )
        )

    def decode(
        self,
        codec: int,
        payload: bytes | memoryview,
        raw_len: int,
        base: bytes | memoryview | None = None,
        out: np.ndarray | None = None,
    ) -> bytes | memoryview:
        """The raw bytes of a payload (``base``: the raw bytes of its base block, for
        codecs 3, 5 and 6), written into ``out`` (a uint8 array of ``raw_len``) when given,
        else into memory of their own. Raises DecodeError if the payload cannot be decoded.

        Fresh memory costs page faults that, for a chain of deltas, cost more than
        decoding (bench: corpora): zstd output goes to a buffer each thread reuses,
        and a caller decoding a chain passes ``out`` for the levels it discards."""
        if codec == Codec.RAW:
            if len(payload) != raw_len:
                raise DecodeError(f"raw payload is {len(payload)} bytes, expected {raw_len}")
            if out is None:
                return bytes(payload)
            out[:] = np.frombuffer(payload, np.uint8)
            return memoryview(out)
        if codec == Codec.ZSTD:
            out = np.empty(raw_len, np.uint8) if out is None else out
            return memoryview(self._unzstd_into(payload, raw_len, out))
        if codec not in WIDTH_PREFIXED:
            raise FormatError(
                f"unknown codec id {codec}; this ckptstore knows {[c.value for c in Codec]}"
            )
        delta = codec in DELTA_CODECS
        widths = DELTA_WIDTHS if delta else PLANE_WIDTHS
        width = payload[0] if len(payload) else 0
        if width not in widths:
            raise DecodeError(f"element width {width} is not one of {widths}")
        if delta and (base is None or len(base) != raw_len):
            raise DecodeError("delta block decoded without its base block")
        if codec == Codec.ZSTD_PLANES or codec == Codec.DELTA_PLANES:
            planes = self._unzstd_into(memoryview(payload)[1:], raw_len)
            raw = from_planes(planes, width, out)
            return memoryview(undo_delta(raw, base, width) if delta else raw)
        out = np.empty(raw_len, np.uint8) if out is None else out
        try:
            self._unframe(Codec(codec), memoryview(payload), width, base, out)
        except FrameLayoutError as exc:
            raise DecodeError(str(exc)) from exc
        return memoryview(out)

    def _unframe(
        self,
        codec: Codec,
        payload: memoryview,
        width: int,
        base: bytes | memoryview | None,
        out: np.ndarray,
    ) -> None:
        """Codec 4's, 5's or 6's payload, decoded into ``out`` (``base``: 5's or 6's
        base block)."""
        n = len(out) // width
        groups = biases = None
        if codec == Codec.EXPONENT_PLANES:
            self._unframe_exponents(payload, width, out)
            return
        if codec == Codec.FRAMED_PLANES:
            offset, base = 1, None
        else:
            if len(payload) < 2:
                raise DecodeError("delta payload without its group size")
            offset, group_log = 2, payload[1]
            if group_log > MAX_GROUP_LOG:
                raise DecodeError(f"group size 2**{group_log} is out of range")
            groups = grouping(base, width, group_log)  # type: ignore[arg-type]
            if codec == Codec.BIASED_DELTA and groups is not None:
                count = len(groups.sizes)
                if len(payload) < offset + count * width:
                    raise DecodeError(f"payload too short for its {count} group biases")
                biases = np.frombuffer(payload, f"<u{width}", count, offset).astype(UINTS[width])
                offset += count * width
        sizes = [n] if groups is None else list(groups.sizes)
        planes = self._scratch("planes", n * width)
        end = unframe_planes(payload, offset, width, sizes, self._unzstd_into, planes)
        if len(payload) - end != len(out) - n * width:
            raise DecodeError(
                f"{len(payload) - end} bytes after the frames, expected {len(out) - n * width}"
            )
        tail = np.frombuffer(payload[end:], np.uint8)
        if base is not None:  # a delta's partial element is XORed with the base's
            tail = tail ^ np.frombuffer(base, np.uint8)[n * width :]
        out[n * width :] = tail
        scratch = None if groups is None else self._scratch("grouped", n * width)
        join_planes(planes, width, out[: n * width], base, groups, biases, scratch)

    def _unframe_exponents(self, payload: memoryview, width: int, out: np.ndarray) -> None:
        """Codec 7's payload, decoded into ``out``."""
        n = len(out) // width
        groups, offset = _exponent_groups(payload, n)
        planes = self._scratch("planes", n * width)
        keys_at = (width - 1) * n
        offset = unframe_planes(payload, offset, 1, [n], self._unzstd_into, planes[keys_at:])
        end = unframe_planes(
            payload, offset, width - 1, list(groups.sizes), self._unzstd_into, planes[:keys_at]
        )
        if len(payload) - end != len(out) - n * width:
            raise DecodeError(
                f"{len(payload) - end} bytes after the frames, expected {len(out) - n * width}"
            )
        out[n * width :] = np.frombuffer(payload[end:], np.uint8)
        try:
            join_exponents(
                planes, width, groups, out[: n * width], self._scratch("grouped", n * width)
            )
        except ValueError as exc:
            raise DecodeError(f"exponent planes: {exc}") from exc

    def _unzstd_into(
        self, payload: bytes | memoryview, raw_len: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """One zstd frame of exactly ``raw_len`` bytes, decoded into ``out``, or else into
        this thread's scratch buffer (valid until this thread's next call)."""
        if out is None:
            out = self._scratch("zstd", raw_len)
        target = memoryview(out)
        got = 0
        try:
            with self._decompressor().stream_reader(payload) as reader:
                while got < raw_len:
                    n = reader.readinto(target[got:])
                    if not n:
                        break
                    got += n
                longer = got == raw_len and reader.readinto(bytearray(1)) > 0
        except zstandard.ZstdError as exc:
            raise DecodeError(f"zstd: {exc}") from exc
        if got != raw_len or longer:
            raise DecodeError(
                f"decoded {'more than ' if longer else ''}{got} bytes, expected {raw_len}"
            )
        return out
