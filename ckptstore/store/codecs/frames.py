"""zstd frames: the parameters each kind of bytes is compressed with, the frame
table of a framed payload, and the compressors, decompressor and scratch buffers
each thread reuses (a zstd context costs far more to make than to reuse, and fresh
memory costs page faults on every use)."""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Callable

import numpy as np
import zstandard

from ckptstore.store.codecs.ids import DecodeError

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# Bytes that are not planes (codec 1): text, pickles, headers, compressed files. Level
# 3 stores text-like bytes smaller than level 1 at about the same CPU on the corpora,
# and like level 1 passes over bytes that do not compress at memory speed; from level
# 5 up zstd searches those too (bench/results/*-zstd-level.md).
DEFAULT_ZSTD_LEVEL = 3
# Byte planes hold few long repeats: zstd serves as an entropy coder there, and its
# usual match search finds short matches that cost more than the literals they
# replace. A tiny hash table and 7-byte minimum matches keep only the long runs
# (zeros of unchanged elements): smaller than level 1, and faster
# (bench/results/2026-11-25-vm-entropy.md). Codec 7's key plane (exponents) is
# written with them too: of the zstd parameters tried, only an optimal parse
# writes smaller key frames, many times slower
# (bench/results/2026-12-06-vm-key-planes.md).
PLANE_ZSTD_PARAMS = zstandard.ZstdCompressionParameters(
    window_log=17, hash_log=6, min_match=7, strategy=zstandard.STRATEGY_FAST
)

# Codec 8 (a delta of bytes that are not a tensor's) is written as `zstd -3
# --patch-from` writes: the base as a prefix (ZSTD_CCtx_refPrefix, which zstandard
# does not offer) and long-distance matching, whose 64-byte matches find the base's
# copy of each run where the usual match search, on repetitive bytes such as text or
# a pickle, takes a nearer copy that soon diverges (bench/results/2026-12-06-vm-opaque.md).
# The window reaches back over the whole base.
PREFIX_ZSTD_LEVEL = 3
MAX_PREFIX_WINDOW_LOG = 27  # the largest window zstd decoders accept by default

Compress = Callable[[np.ndarray], bytes]
# Decodes one zstd frame of exactly n bytes into the given array (raises DecodeError).
DecompressInto = Callable[[memoryview, int, np.ndarray], np.ndarray]


class FrameLayoutError(Exception):
    """A framed payload whose frame table does not fit it."""


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


class ZstdWork:
    """Each thread's zstd contexts and scratch buffers; safe to share between threads."""

    def __init__(self, level: int = DEFAULT_ZSTD_LEVEL) -> None:
        self.level = level
        self._local = threading.local()

    def scratch(self, name: str, size: int) -> np.ndarray:
        """A buffer of this thread's, ``size`` long, reused from call to call."""
        buffers: dict[str, np.ndarray] | None = getattr(self._local, "scratch", None)
        if buffers is None:
            buffers = self._local.scratch = {}
        buffer = buffers.get(name)
        if buffer is None or len(buffer) < size:
            buffer = buffers[name] = np.empty(size, np.uint8)
        return buffer[:size]

    def compress(self, data: bytes | memoryview) -> bytes:
        """One zstd frame of ``data`` at this instance's level (bytes that are not planes)."""
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=False)
            self._local.compressor = compressor
        return compressor.compress(data)

    def compress_plane(self, plane: np.ndarray) -> bytes:
        """One zstd frame of a byte plane, with PLANE_ZSTD_PARAMS."""
        compressor = getattr(self._local, "plane_compressor", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(compression_params=PLANE_ZSTD_PARAMS)
            self._local.plane_compressor = compressor
        return compressor.compress(plane.data)

    def compress_prefixed(self, data: bytes | memoryview, base: bytes | memoryview) -> bytes:
        """One zstd frame of ``data`` that refers back to ``base`` (as a prefix: any zstd
        decoder given ``base`` as a raw-content dictionary decodes it)."""
        window_log = min(MAX_PREFIX_WINDOW_LOG, max(10, (len(base) + len(data)).bit_length()))
        compressor = zstd.ZstdCompressor(
            options={
                zstd.CompressionParameter.compression_level: PREFIX_ZSTD_LEVEL,
                zstd.CompressionParameter.window_log: window_log,
                zstd.CompressionParameter.enable_long_distance_matching: 1,
                zstd.CompressionParameter.checksum_flag: 0,
            },
            zstd_dict=zstd.ZstdDict(bytes(base), is_raw=True).as_prefix,
        )
        return compressor.compress(data, mode=zstd.ZstdCompressor.FLUSH_FRAME)

    def unzstd_prefixed_into(
        self, payload: bytes | memoryview, base: bytes | memoryview, raw_len: int, out: np.ndarray
    ) -> np.ndarray:
        """``compress_prefixed``'s frame of exactly ``raw_len`` bytes, decoded into ``out``."""
        decompressor = zstandard.ZstdDecompressor(dict_data=_prefix(base))
        return _read_frame(decompressor, payload, raw_len, out)

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.decompressor = decompressor
        return decompressor

    def unzstd_into(
        self, payload: bytes | memoryview, raw_len: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """One zstd frame of exactly ``raw_len`` bytes, decoded into ``out``, or else into
        this thread's scratch buffer (valid until this thread's next call)."""
        if out is None:
            out = self.scratch("zstd", raw_len)
        return _read_frame(self._decompressor(), payload, raw_len, out)


def _prefix(base: bytes | memoryview) -> zstandard.ZstdCompressionDict:
    """``base`` as a zstd dictionary of raw content (no header, no entropy tables)."""
    return zstandard.ZstdCompressionDict(bytes(base), dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _read_frame(
    decompressor: zstandard.ZstdDecompressor,
    payload: bytes | memoryview,
    raw_len: int,
    out: np.ndarray,
) -> np.ndarray:
    """One zstd frame of exactly ``raw_len`` bytes, decoded into ``out``."""
    target = out.data
    got = 0
    try:
        with decompressor.stream_reader(payload) as reader:
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
