"""Engine throughput beside the raw speed of its stages, on the same data.

    python -m bench.engine [--size-mb 1024] [--rss-gib 4]

Measures, on unique float32 data: pyfastcdc, blake3, zstd (1 thread and the
store's pool), a plain file copy; then ckptstore ingest of unique data, of a
duplicate, restore, and the peak RSS of a long streamed ingest in a child.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import zstandard
from pyfastcdc import FastCDC

from bench.common import MB, WORK, float32_weights, mb_per_s, save_report, write_file
from ckptstore import CheckpointStore, StoreConfig
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER, Chunker

TARGETS = {"unique": 400, "duplicate": 1500, "restore": 600}
# The plain compressor ingest is held against: zstd's fastest usual level.
LIMIT_LEVEL = 1


def limits(data: bytes, workers: int, level: int) -> dict[str, float]:
    view = memoryview(data)
    ends = Chunker(DEFAULT_CHUNKER).cut(view, final=True)
    blocks = [view[s:e] for s, e in zip([0, *ends[:-1]], ends, strict=True)]
    cdc = FastCDC(
        DEFAULT_CHUNKER.avg_size,
        min_size=DEFAULT_CHUNKER.min_size,
        max_size=DEFAULT_CHUNKER.max_size,
    )
    out: dict[str, float] = {}
    n = len(data)
    out["fastcdc"] = mb_per_s(n, lambda: sum(1 for _ in cdc.cut_buf(view)), 2)
    out["blake3_1t"] = mb_per_s(n, lambda: [blake3.blake3(b).digest() for b in blocks], 2)
    for lvl in sorted({1, 3, level}):
        comp = zstandard.ZstdCompressor(level=lvl)
        out[f"zstd{lvl}_1t"] = mb_per_s(n, lambda c=comp: [c.compress(b) for b in blocks])
        compressed = [comp.compress(b) for b in blocks]
        out[f"zstd{lvl}_ratio"] = n / sum(map(len, compressed))
    local = __import__("threading").local()

    def compress(block: memoryview) -> bytes:
        if not hasattr(local, "c"):
            local.c = zstandard.ZstdCompressor(level=level)
        return local.c.compress(block)

    with ThreadPoolExecutor(workers) as pool:
        out[f"zstd{level}_pool"] = mb_per_s(n, lambda: list(pool.map(compress, blocks)))
    dec = zstandard.ZstdDecompressor()
    compressed = [zstandard.ZstdCompressor(level=level).compress(b) for b in blocks]
    out[f"zstd{level}_decompress_1t"] = mb_per_s(n, lambda: [dec.decompress(c) for c in compressed])
    return out


def file_copy(src: str, dst: str) -> float:
    def copy() -> None:
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    return mb_per_s(os.path.getsize(src), copy)


def engine(path: str, store_dir: str, config: StoreConfig, runs: int = 2) -> dict[str, float]:
    """Best of ``runs`` fresh-store runs for each figure (the first run pays for warm-up)."""
    results = [_engine_once(path, store_dir, config) for _ in range(runs)]
    return {key: max(r[key] for r in results) for key in results[0]}


def _engine_once(path: str, store_dir: str, config: StoreConfig) -> dict[str, float]:
    shutil.rmtree(store_dir, ignore_errors=True)
    os.sync()  # no writeback of earlier runs competing with this one
    n = os.path.getsize(path)
    out: dict[str, float] = {}
    with CheckpointStore.open(store_dir, config=config) as store:
        start = time.perf_counter()
        first = store.put("bench", path)
        out["unique"] = n / MB / (time.perf_counter() - start)
        out["stored_ratio"] = n / first.stored_bytes
        start = time.perf_counter()
        store.put("bench", path)
        out["duplicate"] = n / MB / (time.perf_counter() - start)
        start = time.perf_counter()
        store.restore(first.checkpoint_id, os.devnull)
        out["restore"] = n / MB / (time.perf_counter() - start)
    shutil.rmtree(store_dir, ignore_errors=True)
    return out


def rss(store_dir: str, gib: float) -> dict[str, float]:
    shutil.rmtree(store_dir, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss_child", store_dir, str(gib)],
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(store_dir, ignore_errors=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["mb_per_s"] = result["bytes"] / MB / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rss-gib", type=float, default=4.0)
    args = parser.parse_args()

    config = StoreConfig()
    path = str(write_file(WORK / "weights.bin", float32_weights(args.size_mb * MB, seed=1)))
    os.sync()
    data = Path(path).read_bytes()
    lim = limits(data, config.workers, LIMIT_LEVEL)
    del data
    lim["file_copy"] = file_copy(path, str(WORK / "copy.bin"))
    os.unlink(WORK / "copy.bin")
    configs = {
        "default": StoreConfig(),
        "no byte planes": StoreConfig(byte_planes=False),
        "zstd-1 where not byte planes": StoreConfig(zstd_level=1),
    }
    runs = {label: engine(path, str(WORK / "store"), cfg) for label, cfg in configs.items()}
    peak = rss(str(WORK / "rss-store"), args.rss_gib) if args.rss_gib else None
    os.unlink(path)

    default = runs["default"]
    lvl = LIMIT_LEVEL
    lines = [
        f"Data: {args.size_mb} MB of unique float32 weights (N(0, 0.02)),"
        " read from a file in the page cache.",
        f"Store defaults: zstd level {config.zstd_level} where not byte planes,"
        f" {config.workers} worker threads, "
        f"chunks {DEFAULT_CHUNKER.min_size // 1024}/{DEFAULT_CHUNKER.avg_size // 1024}/"
        f"{DEFAULT_CHUNKER.max_size // 1024} KiB (min/avg/max).",
        "",
        "## Limits measured in this run (same data)",
        "",
        "| stage | MB/s |",
        "|---|---:|",
        *(
            f"| {k} | {v:,.2f} |" if k.endswith("ratio") else f"| {k} | {v:,.0f} |"
            for k, v in lim.items()
        ),
        "",
        "## ckptstore",
        "",
        "| encoding | unique ingest MB/s | duplicate ingest MB/s | restore MB/s | stored ratio |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {label} | {r['unique']:,.0f} | {r['duplicate']:,.0f} | {r['restore']:,.0f} |"
            f" {r['stored_ratio']:.3f} |"
            for label, r in runs.items()
        ),
        "",
        "## Against targets and limits (default settings)",
        "",
        f"- unique ingest {default['unique']:,.0f} MB/s (target >= {TARGETS['unique']}); "
        f"{default['unique'] / lim[f'zstd{lvl}_pool']:.0%} of plain zstd-{lvl} on the same pool, "
        f"{default['unique'] / lim['file_copy']:.0%} of a plain file copy",
        f"- duplicate ingest {default['duplicate']:,.0f} MB/s (target >= {TARGETS['duplicate']}); "
        f"bounded by fastcdc ({lim['fastcdc']:,.0f}) on one thread plus hashing",
        f"- restore {default['restore']:,.0f} MB/s (target >= {TARGETS['restore']}); "
        f"zstd decompress alone {lim[f'zstd{lvl}_decompress_1t']:,.0f} MB/s per thread",
    ]
    if peak:
        lines.append(
            f"- peak RSS of a {peak['bytes'] / (1 << 30):.0f} GiB streamed ingest: "
            f"{peak['peak_rss_bytes'] / MB:,.0f} MB (target < 300), "
            f"at {peak['mb_per_s']:,.0f} MB/s (including generating the stream)"
        )
    md = save_report(
        "engine", "Engine throughput", lines, {"limits": lim, "engine": runs, "rss": peak}
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
