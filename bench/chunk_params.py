"""Choose FastCDC min/avg/max sizes by measurement.

    python -m bench.chunk_params [--size-mb 256]

For each candidate: chunking MB/s, engine ingest MB/s of unique data (per
block overhead shows here), catalog rows per GB, and shift resistance: the
new bytes stored for a copy of the data with 20 small random insertions and
deletions (ideal: about 20 blocks' worth).
"""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np
from pyfastcdc import FastCDC

from bench.common import MB, WORK, float32_weights, mb_per_s, save_report, write_file
from ckptstore import CheckpointStore, StoreConfig
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, ChunkerParams

KIB = 1024
CANDIDATES = [
    ChunkerParams(16 * KIB, 64 * KIB, 256 * KIB),
    ChunkerParams(32 * KIB, 128 * KIB, 512 * KIB),
    ChunkerParams(64 * KIB, 256 * KIB, 1024 * KIB),
    ChunkerParams(128 * KIB, 512 * KIB, 2048 * KIB),
    ChunkerParams(256 * KIB, 1024 * KIB, 4096 * KIB),
]


def edited(data: bytes, edits: int, seed: int) -> bytes:
    """``data`` with ``edits`` random insertions or deletions of 1-100 bytes."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for pos in sorted(rng.integers(0, len(data), edits), reverse=True):
        size = int(rng.integers(1, 101))
        if rng.random() < 0.5:
            out[pos:pos] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        else:
            del out[pos : pos + size]
    return bytes(out)


def label(params: ChunkerParams) -> str:
    return f"{params.min_size // KIB}/{params.avg_size // KIB}/{params.max_size // KIB}"


def measure(params: ChunkerParams, data: bytes, path: str) -> dict[str, float]:
    cdc = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size)
    blocks = sum(1 for _ in cdc.cut_buf(data))
    store_dir = WORK / "chunk-store"
    shutil.rmtree(store_dir, ignore_errors=True)
    with CheckpointStore.open(store_dir, config=StoreConfig(chunker=params)) as store:
        start = time.perf_counter()
        first = store.put("bench", path)
        ingest = len(data) / MB / (time.perf_counter() - start)
        second = store.put("bench", edited(data, 20, seed=5))
    shutil.rmtree(store_dir, ignore_errors=True)
    return {
        "chunk_mb_s": mb_per_s(len(data), lambda: sum(1 for _ in cdc.cut_buf(data)), 2),
        "ingest_mb_s": ingest,
        "blocks_per_gb": blocks * 1e9 / len(data),
        "edit_new_bytes_pct": 100 * second.stored_bytes / first.stored_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=256)
    args = parser.parse_args()
    path = write_file(WORK / "chunk-weights.bin", float32_weights(args.size_mb * MB, seed=3))
    data = path.read_bytes()
    rows = {label(p): measure(p, data, str(path)) for p in CANDIDATES}
    path.unlink()
    chosen = label(DEFAULT_CHUNKER)
    lines = [
        f"Data: {args.size_mb} MB of unique float32 weights; the edited copy has 20 random",
        "insertions/deletions of 1-100 bytes. Default chosen: " + chosen + " KiB.",
        "",
        "| min/avg/max KiB | chunking MB/s | ingest MB/s | blocks per GB"
        " | new bytes after 20 edits |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['chunk_mb_s']:,.0f} | {r['ingest_mb_s']:,.0f} |"
            f" {r['blocks_per_gb']:,.0f} | {r['edit_new_bytes_pct']:.1f}% |"
            for name, r in rows.items()
        ),
        "",
        "Why the default: chunking speed is flat across sizes; below 32/128/512 the per-block",
        "work (hash task, dedup lookup, lease and manifest rows) dominates ingest. Between",
        "32/128/512 and 64/256/1024 unique ingest is within run-to-run noise; the larger size",
        "halves catalog rows per checkpoint, which the duplicate-ingest rate depends on, for",
        "about 2x the re-stored bytes after scattered edits (still a few percent). Tensor",
        "payloads of recognised formats get fixed-size blocks, so CDC mainly serves opaque data.",
    ]
    md = save_report("chunk-params", "FastCDC parameters", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
