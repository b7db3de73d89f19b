"""Which zstd parameters serve codec 7's key planes best.

    python -m bench.key_planes

Codec 7 stores a block's key plane (each element's top byte once rotated
left a bit: a float's exponent) as one zstd frame of its own; any valid frame
may stand there (FORMAT.md, "Codecs"). On the newest checkpoint's 1 MiB tensor
blocks of the small pretrain, finetune-frozen, lora and bf16 corpora, the key
planes of the blocks that codec 7 groups are written by each candidate: the
stored bytes of the key frames (and of the whole blocks, for scale), encode
and decode speed on one core (best of three, MB/s of key-plane bytes).

Until the project dropped its own Huffman frame writer (``_huffman.c``), the
key planes were written by it where it took them; its row appears only where
that extension is importable (the run recorded in
bench/results/2026-12-06-vm-key-planes.md was made before it was removed).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import zstandard

from bench.common import WORK, save_report
from bench.corpus import write
from bench.entropy import CHUNK, tensors
from ckptstore.store.codecs.block import EXPONENT_GROUP_LOG, BlockCodec
from ckptstore.store.codecs.frames import PLANE_ZSTD_PARAMS
from ckptstore.store.codecs.grouping import exponent_bounds, exponent_keys

try:  # only at revisions that still had it (see the module docstring)
    from ckptstore.store.codecs._huffman import huffman_frame  # type: ignore[import-not-found]
except ImportError:
    huffman_frame = None

CORPORA = ("pretrain", "finetune-frozen", "lora", "bf16")
REPEAT = 3
# A candidate may be chosen only if it encodes at least this fraction as fast as the
# plane parameters: codec 7 writes the key plane beside the other planes of a block,
# and a key writer many times slower would set the speed of every ingest.
MIN_SPEED = 0.5
P = zstandard.ZstdCompressionParameters

TINY = {"window_log": 17, "hash_log": 6, "chain_log": 6, "search_log": 1, "min_match": 7}
PLANE_LABEL = "plane parameters: fast, hash 2^6, min match 7, window 2^17"
CANDIDATES: dict[str, P] = {
    PLANE_LABEL: PLANE_ZSTD_PARAMS,
    "level 1": P.from_level(1),
    "level 3": P.from_level(3),
    "level 19": P.from_level(19),
    "fast, hash 2^6, min match 6, window 2^17": P(
        window_log=17, hash_log=6, min_match=6, strategy=zstandard.STRATEGY_FAST
    ),
    "fast, hash 2^12, min match 4, window 2^17": P(
        window_log=17, hash_log=12, min_match=4, strategy=zstandard.STRATEGY_FAST
    ),
    "fast, hash 2^6, min match 7, window 2^10 (1 KiB blocks)": P(
        window_log=10, hash_log=6, min_match=7, strategy=zstandard.STRATEGY_FAST
    ),
    "dfast, tables 2^6, min match 7, window 2^17": P(**TINY, strategy=zstandard.STRATEGY_DFAST),
    "greedy, tables 2^6, min match 7, window 2^17": P(**TINY, strategy=zstandard.STRATEGY_GREEDY),
    "lazy2, tables 2^6, min match 7, window 2^17": P(**TINY, strategy=zstandard.STRATEGY_LAZY2),
    "btopt, tables 2^6, min match 7, window 2^17": P(
        **TINY, target_length=1, strategy=zstandard.STRATEGY_BTOPT
    ),
    "btultra2 (optimal parse), tables 2^6, min match 7, window 2^17": P(
        **TINY, target_length=999, strategy=zstandard.STRATEGY_BTULTRA2
    ),
}


def key_planes(corpus: str) -> tuple[list[np.ndarray], int, int]:
    """The key planes of the newest checkpoint's codec 7 blocks, the raw bytes of those
    blocks and their stored bytes as the writer stores them now."""
    files = write(corpus, WORK / "corpus-small", "small", 6)
    codec = BlockCodec()
    planes, raw_bytes, stored_bytes = [], 0, 0
    for data, width in tensors(files[-1]).values():
        if width == 1 or len(data) < 4096:
            continue
        for start in range(0, len(data), CHUNK * 4):
            raw = memoryview(data[start : start + CHUNK * 4])
            if exponent_bounds(raw, width, EXPONENT_GROUP_LOG) is None:
                continue  # one group: codec 4, no key plane
            planes.append(np.ascontiguousarray(exponent_keys(raw, width)))
            raw_bytes += len(raw)
            stored_bytes += len(codec.encode(raw, width, aligned=True)[1])
    return planes, raw_bytes, stored_bytes


def timed(fn: Callable[[], list[bytes]]) -> tuple[list[bytes], float]:
    """fn's result and its best time of REPEAT runs, in seconds."""
    best, out = float("inf"), []
    for _ in range(REPEAT):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def huffman_writer() -> Callable[[np.ndarray], bytes]:
    """What the writer did while it had _huffman.c: its frame, checked by decoding it
    back, else the plane parameters' frame."""
    fallback = zstandard.ZstdCompressor(compression_params=PLANE_ZSTD_PARAMS).compress
    check = zstandard.ZstdDecompressor()

    def frame(keys: np.ndarray) -> bytes:
        out = huffman_frame(keys)
        if out is not None and check.decompress(out) == keys.tobytes():
            return out
        return fallback(keys)

    return frame


def measure(corpus: str) -> dict:
    planes, raw_bytes, stored_bytes = key_planes(corpus)
    key_mb = sum(len(p) for p in planes) / 1e6
    writers = {
        label: zstandard.ZstdCompressor(compression_params=params).compress
        for label, params in CANDIDATES.items()
    }
    if huffman_frame is not None:
        writers = {
            "Huffman literals (_huffman.c), checked; else plane parameters": huffman_writer(),
            **writers,
        }
    reader = zstandard.ZstdDecompressor()
    rows = {}
    for label, compress in writers.items():
        frames, encode_s = timed(lambda compress=compress: [compress(p) for p in planes])
        _, decode_s = timed(lambda frames=frames: [reader.decompress(f) for f in frames])
        rows[label] = {
            "key_bytes": sum(len(f) for f in frames),
            "encode_mb_s": key_mb / encode_s,
            "decode_mb_s": key_mb / decode_s,
        }
    return {
        "blocks": len(planes),
        "raw_bytes": raw_bytes,
        "stored_bytes": stored_bytes,
        "key_plane_bytes": int(key_mb * 1e6),
        "writers": rows,
    }


def choice(results: dict) -> str:
    """The zstd candidate with the fewest key-frame bytes over all corpora among those
    encoding at least MIN_SPEED as fast as the plane parameters (summed over corpora)."""
    totals: dict[str, list[float]] = {}
    for found in results.values():
        for label, row in found["writers"].items():
            seconds = found["key_plane_bytes"] / 1e6 / row["encode_mb_s"]
            total = totals.setdefault(label, [0, 0.0])
            total[0] += row["key_bytes"]
            total[1] += seconds
    plane_s = totals[PLANE_LABEL][1]
    fast_enough = {
        label: key_bytes
        for label, (key_bytes, seconds) in totals.items()
        if label in CANDIDATES and plane_s / seconds >= MIN_SPEED
    }
    return min(fast_enough, key=fast_enough.__getitem__)


def main() -> None:
    results = {corpus: measure(corpus) for corpus in CORPORA}
    chosen = choice(results)
    first = next(iter(next(iter(results.values()))["writers"]))
    lines = [
        "Codec 7's key planes (one byte per element: the exponent) of the newest checkpoint's"
        " 1 MiB tensor blocks, written by each candidate; `vs first` is key-frame bytes"
        f" relative to the first row ({first}); `of blocks` is the change in the stored bytes"
        " of those blocks, whose other frames stay as they are; speeds on one core, MB/s of"
        " key-plane bytes, best of three.",
        "",
        "Command: `.venv/bin/python -m bench.key_planes`.",
        "",
        "| corpus | writer | key frames, bytes | vs first | of blocks | encode MB/s"
        " | decode MB/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for corpus, found in results.items():
        base = found["writers"][first]["key_bytes"]
        for label, row in found["writers"].items():
            change = (row["key_bytes"] - base) / found["stored_bytes"]
            lines.append(
                f"| {corpus} | {label} | {row['key_bytes']:,} | {row['key_bytes'] / base:.3f}"
                f" | {change:+.2%} | {row['encode_mb_s']:,.0f} | {row['decode_mb_s']:,.0f} |"
            )
    lines += [
        "",
        "Blocks measured:",
        "",
        "| corpus | codec 7 blocks | raw bytes | stored bytes |",
        "|---|---:|---:|---:|",
    ]
    for corpus, found in results.items():
        lines.append(
            f"| {corpus} | {found['blocks']} | {found['raw_bytes']:,} | {found['stored_bytes']:,} |"
        )
    lines += [
        "",
        f"Chosen: {chosen}, the fewest key-frame bytes summed over the corpora among the zstd"
        f" candidates that encode at least {MIN_SPEED:.0%} as fast as the plane parameters"
        " (only an optimal parse, level 19 or btultra2, comes near the Huffman writer's"
        " frames, at a small fraction of the speed: zstd's faster match searches find short"
        " matches in exponents that cost more than the literals they replace, and there is no"
        " parameter that turns matching off).",
    ]
    results["chosen"] = chosen
    md = save_report("key-planes", "zstd parameters for codec 7's key planes", lines, results)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
