"""Block codecs, keyed by the id byte persisted with every block.

A block id is always the hash of the raw bytes; the codec only says how the
stored payload turns back into them. Ids never change meaning; new encodings
get new ids (see FORMAT.md).
"""

from __future__ import annotations

import threading
from enum import IntEnum

import numpy as np
import zstandard

from ckptstore.errors import FormatError


class Codec(IntEnum):
    RAW = 0  # payload is the raw bytes
    ZSTD = 1  # payload is one zstd frame of the raw bytes
    ZSTD_PLANES = 2  # u8 element width, then one zstd frame of the byte planes
    DELTA_PLANES = 3  # u8 element width, then zstd of the byte planes of delta_of(raw, base)


# Level 1: same ratio as 3 on float tensors, faster (bench/results/*-engine.md).
DEFAULT_ZSTD_LEVEL = 1


PLANE_WIDTHS = (2, 4, 8)  # element widths codec 2 stores
DELTA_WIDTHS = (1, 2, 4, 8)  # element widths codec 3 stores
ESTIMATED_WIDTHS = (2, 4)  # widths the estimate tries on data of unknown type
SAMPLE_BYTES = 8 * 1024  # ~2,000 elements tell 7.3 from 6.6 bits per byte
MIN_SAMPLE_BYTES = 4 * 1024
# Byte planes pay on numeric data, whose bytes look like noise to LZ matching
# (order-0 entropy above NOISY_BITS); on text or code they would break LZ matches.
NOISY_BITS = 5.5
MIN_GAIN_BITS = 0.25


class DecodeError(Exception):
    """A payload that its codec cannot decode (the caller names the block)."""


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


_UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_INTS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


def delta_of(raw: memoryview | bytes, base: memoryview | bytes, width: int) -> np.ndarray:
    """Each element minus the base's element (wrapping), zigzag-folded so that small
    changes either way give small codes with zero high bytes; the bytes of a partial
    last element are XORed. On float tensors this beats a plain XOR, which turns a
    step across a power of two into a run of one-bits (bench: corpora)."""
    out = np.bitwise_xor(np.frombuffer(raw, np.uint8), np.frombuffer(base, np.uint8))
    n = len(out) // width
    if n:
        ours = np.frombuffer(raw, _UINTS[width], n)
        diff = np.subtract(ours, np.frombuffer(base, _UINTS[width], n))
        sign = diff.view(_INTS[width]) >> (8 * width - 1)  # all ones where negative
        np.left_shift(diff, 1, out=diff)
        out[: n * width] = np.bitwise_xor(diff, sign.view(_UINTS[width])).view(np.uint8)
    return out


def undo_delta(delta: np.ndarray, base: memoryview | bytes, width: int) -> np.ndarray:
    """The raw bytes back from ``delta_of``'s output (``delta`` is overwritten)."""
    theirs = np.frombuffer(base, np.uint8)
    n = len(delta) // width
    np.bitwise_xor(delta[n * width :], theirs[n * width :], out=delta[n * width :])
    if n:
        codes = delta[: n * width].view(_UINTS[width])
        sign = np.subtract(0, codes & 1, dtype=_UINTS[width])  # all ones where negative
        np.right_shift(codes, 1, out=codes)
        np.bitwise_xor(codes, sign, out=codes)
        np.add(codes, np.frombuffer(base, _UINTS[width], n), out=codes)
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


class BlockCodec:
    """Encodes and decodes block payloads; safe to share between threads."""

    def __init__(self, zstd_level: int = DEFAULT_ZSTD_LEVEL, byte_planes: bool = True) -> None:
        self.zstd_level = zstd_level
        self.byte_planes = byte_planes
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

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        return decompressor

    def encode(self, raw: memoryview, width: int | None = None) -> tuple[Codec, bytes | memoryview]:
        """zstd of the bytes, or of their byte planes for numeric data; the raw bytes
        when neither shrinks them. ``width`` is the caller's ``plane_width`` verdict for
        data like this (a whole window is judged once); None to judge this block."""
        if not self.byte_planes or (width is not None and width not in PLANE_WIDTHS):
            width = 0  # planes off, or one-byte elements: nothing to group
        elif width is None:
            width = plane_width(raw)
        if width:
            codec = Codec.ZSTD_PLANES
            payload = bytes([width]) + self._compressor().compress(to_planes(raw, width))
        else:
            codec, payload = Codec.ZSTD, self._compressor().compress(raw)
        if len(payload) < len(raw):
            return codec, payload
        return Codec.RAW, raw

    def encode_delta(
        self, raw: memoryview, base: bytes | memoryview, width: int, limit: int | None = None
    ) -> tuple[Codec, bytes | memoryview] | None:
        """The delta-against-base encoding of a tensor block, or None unless its payload is
        smaller than ``limit`` bytes (the block's own stored payload; by default its raw
        length)."""
        if width not in DELTA_WIDTHS or len(base) != len(raw) or not self.byte_planes:
            return None
        delta = delta_of(raw, base, width)
        payload = bytes([width]) + self._compressor().compress(to_planes(delta, width))
        if len(payload) >= (len(raw) if limit is None else limit):
            return None
        return Codec.DELTA_PLANES, payload

    def decode(
        self,
        codec: int,
        payload: bytes | memoryview,
        raw_len: int,
        base: bytes | memoryview | None = None,
        out: np.ndarray | None = None,
    ) -> bytes | memoryview:
        """The raw bytes of a payload (``base``: the raw bytes of its base block, for
        codec 3), written into ``out`` (a uint8 array of ``raw_len``) when given, else
        into memory of their own. Raises DecodeError if the payload cannot be decoded.

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
        if codec == Codec.ZSTD_PLANES:
            width = payload[0] if len(payload) else 0
            if width not in PLANE_WIDTHS:
                raise DecodeError(f"byte-plane width {width} is not one of {PLANE_WIDTHS}")
            planes = self._unzstd_into(memoryview(payload)[1:], raw_len)
            return memoryview(from_planes(planes, width, out))
        if codec == Codec.DELTA_PLANES:
            width = payload[0] if len(payload) else 0
            if width not in DELTA_WIDTHS:
                raise DecodeError(f"delta width {width} is not one of {DELTA_WIDTHS}")
            if base is None or len(base) != raw_len:
                raise DecodeError("delta block decoded without its base block")
            planes = self._unzstd_into(memoryview(payload)[1:], raw_len)
            return memoryview(undo_delta(from_planes(planes, width, out), base, width))
        raise FormatError(
            f"unknown codec id {codec}; this ckptstore knows {[c.value for c in Codec]}"
        )

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
