"""The size of a large tensor's blocks, chosen by measurement: 1, 4 or 16 MiB.

    python -m bench.block_size [--scale small|medium] [--corpora bf16 pretrain]

A tensor larger than a block is cut into blocks of ``tensor_block_bytes``
aligned to its start (chunking/cutter.py). Larger blocks mean fewer catalog rows
per checkpoint and less work per block; smaller ones mean a small change
touches fewer bytes, a delta chain is decoded over less data, and reading one
tensor by range decodes less beside it. For each size, on each corpus ingested
in save order as one job (every put and every rebase):

- catalog rows (block rows, and manifest rows: one per block of each
  checkpoint) and the catalog file's size;
- stored bytes (ratio logical / stored);
- ingest seconds, all work (puts and rebases) and the puts alone;
- restore of the newest and of the deepest checkpoint (MB/s);
- one tensor read by range (safetensors corpora): the median tensor of at least
  64 KiB, read from the newest and from the oldest checkpoint, best of 5.

Writes bench/results/<date>-<host>-block-size.{md,json} (or -NAME).
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore import CheckpointStore, StoreConfig
from ckptstore.integrations import safetensors as st
from ckptstore.store.chunking.cutter import DEFAULT_CHUNKER
from ckptstore.store.rebase import chain_depths

MIB = 1024 * 1024
SIZES = (1 * MIB, 4 * MIB, 16 * MIB)
JOB = "block-size"


def _catalog_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.sqlite*") if p.is_file())


def _best_of(n: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _probe_tensor(store: CheckpointStore, checkpoint_id: str) -> str | None:
    """The median-sized tensor of at least 64 KiB, if the file is safetensors."""
    try:
        with store.open_reader(checkpoint_id) as reader:
            header = st.read_header(reader, checkpoint_id)
    except Exception:  # not a safetensors file (torch.save archives)
        return None
    sized = sorted(
        (info.end - info.start, name)
        for name, info in header.tensors.items()
        if info.end - info.start >= 64 * 1024
    )
    return sized[len(sized) // 2][1] if sized else None


def measure(paths: list[Path], root: Path, block_bytes: int) -> dict[str, Any]:
    """Ingest ``paths`` with tensor blocks of ``block_bytes``; the figures above."""
    shutil.rmtree(root, ignore_errors=True)
    config = StoreConfig(chunker=replace(DEFAULT_CHUNKER, tensor_block_bytes=block_bytes))
    out: dict[str, Any] = {"block_bytes": block_bytes}
    with CheckpointStore.open(root, config=config) as store:
        put_seconds, start = 0.0, time.perf_counter()
        records = []
        for i, path in enumerate(paths):
            store.settle()
            begin = time.perf_counter()
            records.append(store.put(JOB, path, epoch=i))
            put_seconds += time.perf_counter() - begin
        store.settle()
        store.encode_deferred()  # the last save's raw blocks
        out["ingest_seconds"] = time.perf_counter() - start
        out["put_seconds"] = put_seconds
        stats = store.stats()
        catalog = store.context.catalog
        manifests = {r.checkpoint_id: catalog.manifest(r.checkpoint_id) for r in records}
        out["logical_bytes"] = stats.logical_bytes
        out["stored_bytes"] = stats.stored_bytes
        out["block_rows"] = stats.blocks
        out["manifest_rows"] = sum(len(m) for m in manifests.values())
        depths = {
            cid: max(chain_depths(catalog, [b for _, b in m], limit=64).values(), default=0)
            for cid, m in manifests.items()
        }
        newest, oldest = records[-1], records[0]
        deepest = max(records, key=lambda r: (depths[r.checkpoint_id], r.created_at))
        for label, record in (("newest", newest), ("deepest", deepest)):
            seconds = _best_of(2, lambda r=record: store.restore(r.checkpoint_id, "/dev/null"))
            out[f"restore_{label}_mb_s"] = record.size_bytes / MB / seconds
            out[f"restore_{label}_depth"] = depths[record.checkpoint_id]
        name = _probe_tensor(store, newest.checkpoint_id)
        if name is not None:
            out["probe_tensor"] = name
            for label, record in (("newest", newest), ("oldest", oldest)):
                seconds = _best_of(
                    5, lambda r=record: st.load_tensor(store, r.checkpoint_id, name, framework="pt")
                )
                out[f"tensor_{label}_ms"] = seconds * 1000
    out["catalog_bytes"] = _catalog_bytes(root)
    shutil.rmtree(root, ignore_errors=True)
    return out


def report(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "`python -m bench.block_size` (module docstring). Rows per GB: catalog rows"
        " (block rows + manifest rows) per GB of checkpoints saved.",
        "",
    ]
    for corpus, rows in results.items():
        lines += [
            f"## {corpus}",
            "",
            "| tensor block | ratio | block rows | manifest rows | rows per GB | catalog MB"
            " | ingest all work MB/s | puts MB/s | restore newest MB/s"
            " | restore deepest MB/s (depth) | one tensor, newest ms | one tensor, oldest ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            logical = r["logical_bytes"]
            per_gb = (r["block_rows"] + r["manifest_rows"]) / (logical / 1e9)
            newest = f"{r['tensor_newest_ms']:.1f}" if "tensor_newest_ms" in r else "-"
            oldest = f"{r['tensor_oldest_ms']:.1f}" if "tensor_oldest_ms" in r else "-"
            lines.append(
                f"| {r['block_bytes'] // MIB} MiB | {logical / r['stored_bytes']:.2f}x"
                f" | {r['block_rows']:,} | {r['manifest_rows']:,} | {per_gb:,.0f}"
                f" | {r['catalog_bytes'] / MB:.1f}"
                f" | {logical / MB / r['ingest_seconds']:,.0f}"
                f" | {logical / MB / r['put_seconds']:,.0f}"
                f" | {r['restore_newest_mb_s']:,.0f}"
                f" | {r['restore_deepest_mb_s']:,.0f} ({r['restore_deepest_depth']})"
                f" | {newest} | {oldest} |"
            )
        probe = next((r["probe_tensor"] for r in rows if "probe_tensor" in r), None)
        if probe:
            lines += ["", f"One tensor: `{probe}`."]
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--scale", default="small", choices=("small", "medium"))
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--corpora", nargs="+", default=["bf16", "pretrain"])
    parser.add_argument("--report", default="block-size")
    args = parser.parse_args()
    work = WORK / "block-size"
    results: dict[str, list[dict[str, Any]]] = {}
    for corpus in args.corpora:
        paths = write(corpus, work / "corpora" / args.scale, args.scale, args.checkpoints)
        results[corpus] = []
        for size in SIZES:
            results[corpus].append(measure(paths, work / "store", size))
            print(corpus, size // MIB, "MiB done", flush=True)
    title = f"Tensor block size ({args.scale} corpora)"
    save_report(args.report, title, report(results), {"scale": args.scale, "corpora": results})


if __name__ == "__main__":
    main()
