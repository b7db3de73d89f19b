"""Shared helpers for benchmarks: data generation, timing, reports."""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent / "work"
MB = 1_000_000


def float32_weights(n_bytes: int, seed: int) -> Iterator[bytes]:
    """Unique float32 'weights' (N(0, 0.02)), 16 MiB at a time, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    step = 16 << 20
    for start in range(0, n_bytes, step):
        n = min(step, n_bytes - start) // 4
        yield (rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)).tobytes()


def write_file(path: Path, chunks: Iterator[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return path


def mb_per_s(n_bytes: int, fn: Callable[[], object], repeat: int = 1) -> float:
    """Best of ``repeat`` runs, in MB/s (10^6 bytes)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_bytes / MB / best


def save_report(name: str, title: str, lines: list[str], data: dict) -> Path:
    """Write ``<date>-<host>-<name>.md`` and ``.json`` under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    stem = f"{stamp}-{platform.node() or 'host'}" + (f"-{name}" if name else "")
    header = [
        f"# {title}",
        "",
        f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
        "",
    ]
    md = RESULTS / f"{stem}.md"
    md.write_text("\n".join(header + lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    return md


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))
