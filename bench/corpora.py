"""Stored bytes and speed on the checkpoint corpora of bench/corpus.py.

    python -m bench.corpora [--scale small|large]

Each corpus is ingested as one job, checkpoint after checkpoint, into a fresh
store. Beside it: per-file zstd -3 (the common baseline) and ckptstore with
byte planes off, so the gain of each technique shows. Peers (restic, borg,
zstd --patch-from, ZipNN, z4ai) are not run yet (issue 5).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import zstandard

from bench.common import MB, WORK, save_report
from bench.corpus import CORPORA, write
from ckptstore import CheckpointStore, StoreConfig


def ingest(files: list[Path], config: StoreConfig) -> dict[str, float]:
    root = WORK / "corpora-store"
    shutil.rmtree(root, ignore_errors=True)
    logical = sum(f.stat().st_size for f in files)
    with CheckpointStore.open(root, config=config) as store:
        start = time.perf_counter()
        for epoch, path in enumerate(files):
            last = store.put("corpus", path, epoch=epoch)
        seconds = time.perf_counter() - start
        stored = store.stats().stored_bytes
        start = time.perf_counter()
        store.restore(last.checkpoint_id, "/dev/null")
        restore_s = time.perf_counter() - start
    shutil.rmtree(root, ignore_errors=True)
    return {
        "ratio": logical / stored,
        "ingest_mb_s": logical / MB / seconds,
        "restore_mb_s": last.size_bytes / MB / restore_s,
    }


def zstd3_ratio(files: list[Path]) -> float:
    compressor = zstandard.ZstdCompressor(level=3, threads=-1)
    stored = sum(len(compressor.compress(f.read_bytes())) for f in files)
    return sum(f.stat().st_size for f in files) / stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=("small", "large"), default="small")
    parser.add_argument("--checkpoints", type=int, default=6)
    args = parser.parse_args()
    out = WORK / f"corpus-{args.scale}"
    rows = {}
    for corpus in CORPORA:
        files = write(corpus, out, args.scale, args.checkpoints)
        rows[corpus] = {
            "logical_mb": sum(f.stat().st_size for f in files) / MB,
            "zstd3_ratio": zstd3_ratio(files),
            "plain": ingest(files, StoreConfig(byte_planes=False)),
            "default": ingest(files, StoreConfig()),
        }
    lines = [
        f"Scale {args.scale}, {args.checkpoints} checkpoints per corpus, ingested in order as"
        " one job. Ratio = logical bytes / stored bytes (packs).",
        "",
        "| corpus | logical MB | per-file zstd -3 | ckptstore, zstd only | ckptstore (default)"
        " | ingest MB/s | restore MB/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['logical_mb']:,.0f} | {r['zstd3_ratio']:.2f}x |"
            f" {r['plain']['ratio']:.2f}x | {r['default']['ratio']:.2f}x |"
            f" {r['default']['ingest_mb_s']:,.0f} | {r['default']['restore_mb_s']:,.0f} |"
            for name, r in rows.items()
        ),
        "",
        "Not yet measured here (issue 5): restic, borg, zstd --patch-from, ZipNN and z4ai on",
        "the same files, peak RSS per corpus, and plots. XOR deltas against the parent",
        "checkpoint and tensor-aligned blocks (issue 6) are not implemented yet.",
    ]
    md = save_report(f"corpora-{args.scale}", "Checkpoint corpora", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
