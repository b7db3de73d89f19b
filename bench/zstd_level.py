"""The zstd level of bytes stored without byte planes (codec 1), measured on the corpora.

    python -m bench.zstd_level [--levels 1 3 5 7] [--corpora opaque ...] [--repeats 2]

Each corpus (small scale, six saves) is ingested as one job with every put and
rebase, once per level and repeat, levels in turns. Reported: stored bytes
against ``zstd -3 --patch-from`` (the first file whole, each later one as a
patch on the one before it) and the process CPU seconds of the whole ingest
(best of the repeats). The level decides how small the newest checkpoint's
opaque blocks are, stored whole; their deltas are written at zstd's level 3
whatever this level is.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore import CheckpointStore, StoreConfig

CORPORA = ("opaque", "opaque-scattered", "pretrain", "bf16")


def patch_from_bytes(files: list[Path]) -> int:
    """What ``zstd -3`` stores for the first file plus ``--patch-from`` for each later one."""
    total, previous = 0, None
    for path in files:
        patch = [f"--patch-from={previous}"] if previous else []
        done = subprocess.run(
            ["zstd", "-3", "-q", "-c", *patch, str(path)], capture_output=True, check=True
        )
        total += len(done.stdout)
        previous = path
    return total


def ingest(files: list[Path], level: int) -> tuple[int, float]:
    """Stored bytes and CPU seconds of ingesting ``files`` at this codec 1 level."""
    root = WORK / "zstd-level-store"
    shutil.rmtree(root, ignore_errors=True)
    cpu = time.process_time()
    with CheckpointStore.open(root, config=StoreConfig(zstd_level=level)) as store:
        for i, path in enumerate(files):
            store.settle()
            store.put("corpus", path, epoch=i)
        store.settle()
        stored = store.stats().stored_bytes
    cpu = time.process_time() - cpu
    shutil.rmtree(root, ignore_errors=True)
    return stored, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 3, 5, 7])
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows: dict[str, dict] = {}
    lines = [
        "Bytes stored without byte planes (codec 1) at each zstd level; small corpora, six"
        " saves ingested as one job with every rebase. *vs patch-from*: stored bytes over"
        " `zstd -3 --patch-from`'s; CPU: process seconds of the whole ingest, best of"
        f" {args.repeats}, levels in turns.",
        "",
        "| corpus | logical MB | level | stored bytes | vs patch-from | CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for corpus in args.corpora:
        files = write(corpus, WORK / "corpus-small", "small", 6)
        logical = sum(f.stat().st_size for f in files)
        reference = patch_from_bytes(files)
        cpu: dict[int, float] = {}
        stored: dict[int, int] = {}
        for _ in range(args.repeats):
            for level in args.levels:
                stored[level], seconds = ingest(files, level)
                cpu[level] = min(cpu.get(level, seconds), seconds)
        rows[corpus] = {
            "logical_bytes": logical,
            "patch_from_bytes": reference,
            "levels": {lv: {"stored_bytes": stored[lv], "cpu_s": cpu[lv]} for lv in args.levels},
        }
        for lv in args.levels:
            lines.append(
                f"| {corpus} | {logical / MB:,.1f} | {lv} | {stored[lv]:,} |"
                f" {stored[lv] / reference:.4f} | {cpu[lv]:.2f} |"
            )
    md = save_report("zstd-level", "zstd level of bytes without byte planes", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
