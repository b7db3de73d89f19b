"""Old checkpoints against the newest, and the memory an ingest holds, on the corpora.

    python -m bench.old_restore [--corpora pretrain bf16] [--scale small]
                                [--depths 8 3 2 1] [--repeats 3]
                                [--rss-scale medium] [--rss-corpora pretrain ...]
                                [--cache-mib 128 64 32 0] [--report NAME]

Restore: for each corpus and each ``delta_max_depth``, the corpus is ingested
as one job (bench/corpus.py, six saves), then the newest checkpoint and the one
with the longest delta chains are restored to /dev/null in turns, ``--repeats``
times each, in one process; the best run of each, and their ratio (the
machine is shared: a ratio measured in turns is steadier than either speed).

Memory: for each corpus of ``--rss-scale`` and each base cache size, the
corpus is ingested (every put and rebase) in a fresh process, which reports
its peak RSS, the stored ratio and its speed.

Writes bench/results/<date>-<host>-old-restore.{md,json} (or -NAME).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import MB, WORK, save_report
from bench.rss_child import peak_rss_bytes
from ckptstore import CheckpointStore, StoreConfig
from ckptstore.store.catalog.records import CheckpointRecord
from ckptstore.store.rebase import chain_depths

JOB = "corpus"
MIB = 1 << 20


def ingest(root: Path, files: list[Path], config: StoreConfig) -> dict[str, float]:
    """Put the files in order as one job, each rebase done before the next put."""
    shutil.rmtree(root, ignore_errors=True)
    with CheckpointStore.open(root, config=config) as store:
        start = time.perf_counter()
        logical = 0
        for i, path in enumerate(files):
            store.settle()
            logical += store.put(JOB, path, epoch=i).size_bytes
        store.settle()
        seconds = time.perf_counter() - start
        stored = store.stats().stored_bytes
    return {"ratio": logical / stored, "ingest_mb_s": logical / MB / seconds}


def newest_and_deepest(store: CheckpointStore) -> tuple[CheckpointRecord, CheckpointRecord, int]:
    """The job's newest checkpoint, the one with the longest delta chains, that length."""
    records = sorted(store.list(JOB, limit=None).checkpoints, key=lambda r: r.created_at)
    catalog = store.context.catalog
    depth_of = {}
    for record in records:
        blocks = [block for _, block in catalog.manifest(record.checkpoint_id)]
        depth_of[record.checkpoint_id] = max(chain_depths(catalog, blocks, 64).values(), default=0)
    deepest = max(records, key=lambda r: (depth_of[r.checkpoint_id], r.created_at))
    return records[-1], deepest, depth_of[deepest.checkpoint_id]


def restores(root: Path, repeats: int) -> dict[str, float]:
    """The best MB/s of the newest and of the deepest checkpoint, restored in turns."""
    best = {"newest": float("inf"), "deepest": float("inf")}
    with CheckpointStore.open(root) as store:
        newest, deepest, depth = newest_and_deepest(store)
        for _ in range(repeats):
            for label, record in (("newest", newest), ("deepest", deepest)):
                start = time.perf_counter()
                store.restore(record.checkpoint_id, "/dev/null")
                best[label] = min(best[label], time.perf_counter() - start)
    newest_mb_s = newest.size_bytes / MB / best["newest"]
    deepest_mb_s = deepest.size_bytes / MB / best["deepest"]
    return {
        "newest_mb_s": newest_mb_s,
        "deepest_mb_s": deepest_mb_s,
        "depth": depth,
        "deepest_over_newest": deepest_mb_s / newest_mb_s,
    }


def restore_rows(corpora: list[str], scale: str, depths: list[int], repeats: int) -> dict:
    from bench.corpus import write  # imports torch: not in the children, whose RSS counts

    rows: dict = {}
    root = WORK / "old-restore-store"
    for corpus in corpora:
        files = write(corpus, WORK / f"corpus-{scale}", scale, 6)
        for depth in depths:
            print(f"restore: {corpus}, delta_max_depth {depth} ...", flush=True)
            row = ingest(root, files, StoreConfig(delta_max_depth=depth))
            row |= restores(root, repeats)
            rows[f"{corpus}, {depth}"] = {"corpus": corpus, "max_depth": depth, **row}
    shutil.rmtree(root, ignore_errors=True)
    return rows


def rss_rows(corpora: list[str], scale: str, caches_mib: list[float]) -> dict:
    from bench.corpus import write

    rows: dict = {}
    for corpus in corpora:
        files = write(corpus, WORK / f"corpus-{scale}", scale, 6)
        for cache in caches_mib:
            print(f"memory: {corpus}, base cache {cache:g} MiB ...", flush=True)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.old_restore",
                    "--child",
                    str(cache),
                    *map(str, files),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows[f"{corpus}, {cache:g}"] = {"corpus": corpus, "cache_mib": cache}
            rows[f"{corpus}, {cache:g}"] |= json.loads(out.stdout)
    return rows


def child(cache_mib: float, files: list[Path]) -> None:
    """Ingest in this fresh process; print ratio, speed and peak RSS as one JSON line."""
    root = WORK / "old-restore-rss-store"
    row = ingest(root, files, StoreConfig(delta_cache_bytes=int(cache_mib * MIB)))
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(row | {"peak_rss_mb": peak_rss_bytes() / MB}))


def report_lines(restore: dict, rss: dict, args: argparse.Namespace) -> list[str]:
    lines = [
        f"Command: `python -m bench.old_restore {' '.join(sys.argv[1:])}`",
        "",
        f"## Restore of the oldest checkpoint against the newest (scale {args.scale})",
        "",
        "Six saves ingested as one job. *newest* is stored whole; *deepest* is the"
        " checkpoint with the longest delta chains, *depth* deltas on a whole block."
        f" Best of {args.repeats} restores to /dev/null each, newest and deepest in"
        " turns in one process; MB/s of 10^6 bytes. The machine is shared: the ratio"
        " is steadier than either speed.",
        "",
        "| corpus | delta_max_depth | ratio | ingest MB/s | newest MB/s | deepest MB/s"
        " | depth | deepest / newest |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in restore.values():
        lines.append(
            f"| {r['corpus']} | {r['max_depth']} | {r['ratio']:.2f}x | {r['ingest_mb_s']:,.0f}"
            f" | {r['newest_mb_s']:,.0f} | {r['deepest_mb_s']:,.0f} | {r['depth']}"
            f" | {r['deepest_over_newest']:.2f} |"
        )
    lines += [
        "",
        f"## Peak RSS of an ingest by base cache size (scale {args.rss_scale})",
        "",
        "Each corpus ingested in a fresh process, every put and rebase; peak RSS is"
        " the process's high-water mark (VmHWM).",
        "",
        "| corpus | base cache MiB | peak RSS MB | ratio | ingest MB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rss.values():
        lines.append(
            f"| {r['corpus']} | {r['cache_mib']:g} | {r['peak_rss_mb']:,.0f}"
            f" | {r['ratio']:.4f}x | {r['ingest_mb_s']:,.0f} |"
        )
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(float(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
        return
    from bench.corpus import CORPORA

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpora", nargs="*", choices=CORPORA, default=["pretrain", "bf16"])
    parser.add_argument("--scale", choices=("small", "medium", "large"), default="small")
    parser.add_argument("--depths", nargs="+", type=int, default=[8, 3, 2, 1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-scale", choices=("small", "medium", "large"), default="medium")
    parser.add_argument("--rss-corpora", nargs="*", choices=CORPORA, default=["pretrain"])
    parser.add_argument("--cache-mib", nargs="+", type=float, default=[128, 64, 32, 0])
    parser.add_argument("--report", default="old-restore")
    args = parser.parse_args()
    restore = restore_rows(args.corpora, args.scale, args.depths, args.repeats)
    rss = rss_rows(args.rss_corpora, args.rss_scale, args.cache_mib)
    lines = report_lines(restore, rss, args)
    md = save_report(
        args.report,
        "Old checkpoints' restores and ingest memory",
        lines,
        {
            "restore": restore,
            "rss": rss,
        },
    )
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
