"""Where the work of ingesting a run of saves goes: CPU seconds per stage, all threads.

    python -m bench.ingest_stages [--scale small|medium] [--corpora pretrain bf16 ...]
                                  [--runs N]

Ingests each corpus of bench/corpus.py in save order as one job (every put and
every rebase, as bench.corpora's "ingest, with rebases"), with the store's
functions that do the work wrapped to add up the CPU time of the thread that
runs them (``time.thread_time``). A stage's time excludes the stages it calls,
so the rows add up to the CPU the measured functions took; "elsewhere" is the
rest of the process's CPU (Python glue, the catalog, the operating system's
share of file writes). Wall time and total CPU time are given beside them, so
the table also shows how busy the two cores were. With ``--runs N`` each corpus is
ingested N times and each figure is the median of the runs (one run moves by a
tenth or more on a shared machine).

Writes bench/results/<date>-<host>-ingest-stages.{md,json} (or -NAME).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import shutil
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import MB, WORK, save_report
from bench.corpus import write
from ckptstore import CheckpointStore
from ckptstore.store import ingest, rebase, uploads
from ckptstore.store.chunking import cutter
from ckptstore.store.codecs.block import BlockCodec
from ckptstore.store.packs import entries, writer

JOB = "stages"


class StageClock:
    """CPU seconds per stage, exclusive of nested stages, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._local = threading.local()

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed as ``stage``."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[float] = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)  # CPU time of nested stages
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                nested = stack.pop()
                if stack:
                    stack[-1] += spent
                with self._lock:
                    self.seconds[stage] += spent - nested
                    self.calls[stage] += 1

        return timed


# (owner, attribute, stage): what is timed. Each module that imported a function by
# name holds its own reference, so each is wrapped where it is called from.
TIMED: list[tuple[Any, str, str]] = [
    (cutter.BlockCutter, "cut", "cut into blocks (chunker)"),
    (ingest, "block_id", "BLAKE3 of new bytes"),
    (uploads, "block_id", "BLAKE3 of new bytes"),
    (rebase, "block_id", "BLAKE3 of cached bases (rebase)"),
    (entries, "block_id", "BLAKE3 of decoded blocks (reads)"),
    (BlockCodec, "encode", "whole-block encode"),
    (BlockCodec, "encode_delta", "tensor delta encode (rebase)"),
    (BlockCodec, "encode_prefixed", "opaque delta encode (rebase)"),
    (BlockCodec, "decode", "decode (rebase check, base reads)"),
    (writer.PackWriter, "_write", "pack writes"),
]


@contextmanager
def timed_stages(clock: StageClock) -> Iterator[None]:
    """The functions of TIMED wrapped while inside."""
    saved = [(owner, name, inspect.getattr_static(owner, name)) for owner, name, _ in TIMED]
    try:
        for owner, name, stage in TIMED:
            timed = clock.wrap(stage, getattr(owner, name))
            static = isinstance(inspect.getattr_static(owner, name), staticmethod)
            setattr(owner, name, staticmethod(timed) if static else timed)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def measure(paths: list[Path], root: Path) -> dict[str, Any]:
    """Ingest ``paths`` in order into a fresh store at ``root``, stages timed."""
    shutil.rmtree(root, ignore_errors=True)
    clock = StageClock()
    with timed_stages(clock), CheckpointStore.open(root) as store:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for i, path in enumerate(paths):
            store.settle()
            store.put(JOB, path, epoch=i)
        store.settle()
        store.encode_deferred()  # the last save's raw blocks
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
        stored = store.stats().stored_bytes
    logical = sum(path.stat().st_size for path in paths)
    return {
        "logical_bytes": logical,
        "stored_bytes": stored,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "stages": dict(clock.seconds),
        "calls": dict(clock.calls),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result whose every figure is the median of ``runs`` (the runs kept beside)."""
    stages = {stage for run in runs for stage in run["stages"]}

    def median(key: str, stage: str | None = None) -> Any:
        if stage is None:
            return statistics.median(run[key] for run in runs)
        return statistics.median(run[key].get(stage, 0) for run in runs)

    return {
        **{key: median(key) for key in ("logical_bytes", "stored_bytes")},
        **{key: median(key) for key in ("wall_seconds", "cpu_seconds")},
        "stages": {stage: median("stages", stage) for stage in stages},
        "calls": {stage: round(median("calls", stage)) for stage in stages},
        "runs": runs,
    }


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "`python -m bench.ingest_stages` (module docstring). CPU seconds of each stage,"
        " summed over the store's threads, for ingesting each corpus in save order"
        " (every put and every rebase). Share: of the process's CPU time.",
        "",
    ]
    for corpus, result in results.items():
        cpu, wall = result["cpu_seconds"], result["wall_seconds"]
        lines += [
            f"## {corpus}",
            "",
            f"{result['logical_bytes'] / MB:,.0f} MB in, {result['stored_bytes'] / MB:,.1f} MB"
            f" stored; wall {wall:.2f} s ({result['logical_bytes'] / MB / wall:,.0f} MB/s),"
            f" CPU {cpu:.2f} s ({cpu / wall:.2f} cores busy on average).",
            "",
            "| stage | CPU s | share | calls |",
            "|---|---:|---:|---:|",
        ]
        stages = sorted(result["stages"].items(), key=lambda item: -item[1])
        for stage, seconds in stages:
            calls = result["calls"][stage]
            lines.append(f"| {stage} | {seconds:.2f} | {seconds / cpu:.0%} | {calls:,} |")
        elsewhere = cpu - sum(result["stages"].values())
        lines += [f"| elsewhere | {elsewhere:.2f} | {elsewhere / cpu:.0%} | |", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="small", choices=("small", "medium"))
    parser.add_argument("--checkpoints", type=int, default=6)
    parser.add_argument("--corpora", nargs="+", default=["pretrain", "bf16", "opaque-scattered"])
    parser.add_argument("--report", default="ingest-stages")
    parser.add_argument("--runs", type=int, default=1, help="ingests per corpus (medians)")
    args = parser.parse_args()
    work = WORK / "ingest-stages"
    results: dict[str, dict[str, Any]] = {}
    for corpus in args.corpora:
        paths = write(corpus, work / "corpora" / args.scale, args.scale, args.checkpoints)
        runs = [measure(paths, work / "store") for _ in range(args.runs)]
        results[corpus] = runs[0] if args.runs == 1 else median_run(runs)
        print(corpus, f"{results[corpus]['wall_seconds']:.2f} s", flush=True)
    medians = f", medians of {args.runs} runs" if args.runs > 1 else ""
    title = f"Ingest by stage ({args.scale} corpora{medians})"
    save_report(args.report, title, report(results), {"scale": args.scale, **results})
    shutil.rmtree(work / "store", ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
