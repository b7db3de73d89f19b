"""Ingest a long generated stream in a fresh process and report its peak RSS.

Usage: python -m bench.rss_child STORE_DIR GIB
Prints one JSON line: bytes, seconds, peak_rss_bytes.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator

import numpy as np

from ckptstore import CheckpointStore

STEP = 16 << 20


def unique_stream(n_bytes: int) -> Iterator[memoryview]:
    """Cheap unique data: a float32 base shifted by a counter per 16 MiB piece.

    One output array is reused: the store copies each piece before asking for the next.
    """
    base = (np.random.default_rng(7).standard_normal(STEP // 4, dtype=np.float32) * 0.02).view(
        np.uint32
    )
    out = np.empty_like(base)
    for i in range(n_bytes // STEP):
        np.add(base, np.uint32(i), out=out)
        yield memoryview(out).cast("B")


def main() -> None:
    root, gib = sys.argv[1], float(sys.argv[2])
    n_bytes = int(gib * (1 << 30)) // STEP * STEP
    store = CheckpointStore.open(root)
    start = time.perf_counter()
    record = store.put("bench_rss", unique_stream(n_bytes))
    seconds = time.perf_counter() - start
    store.close()
    assert record.size_bytes == n_bytes
    print(json.dumps({"bytes": n_bytes, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}))


def peak_rss_bytes() -> int:
    """This process's peak RSS since exec (VmHWM).

    Not getrusage's ru_maxrss: Linux carries the parent's high-water mark
    from before exec into it, so a child of a large parent reports that.
    """
    for line in open("/proc/self/status"):  # noqa: SIM115
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
