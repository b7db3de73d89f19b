"""One ckptstore ingest or restore of a corpus in a fresh process, with its peak RSS.

    python -m bench.corpus_child ingest STORE_DIR FILE...
    python -m bench.corpus_child ingest-raw STORE_DIR FILE...
    python -m bench.corpus_child restore STORE_DIR

``ingest`` puts the files in order as one job: ``seconds`` is the whole
work, each put and the rebase of its parent; ``put_seconds`` sums the time
the puts took with the previous rebase done, what a training loop that saves
now and then waits for; ``cpu_seconds`` is the process's CPU time for the
whole work (all threads), steadier than wall time on a shared machine.
``restore`` reads back the last checkpoint and the one with the longest delta
chains. ``ingest-raw`` ingests with puts that store tensor blocks raw for the
rebase to encode (``StoreConfig(defer_whole_encode=True)``), for pairs with and
without it. Each prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

from bench.rss_child import peak_rss_bytes
from ckptstore import CheckpointStore
from ckptstore.store.context import StoreConfig
from ckptstore.store.rebase import chain_depths

JOB = "corpus"


def ingest(root: str, paths: list[str], config: StoreConfig | None = None) -> dict[str, float]:
    with CheckpointStore.open(root, config=config) as store:
        start, cpu_start = time.perf_counter(), time.process_time()
        put_seconds = 0.0
        records = []
        for i, path in enumerate(paths):
            store.settle()  # as between a training loop's saves: the last rebase is done
            begin = time.perf_counter()
            records.append(store.put(JOB, path, epoch=i))
            put_seconds += time.perf_counter() - begin
        store.settle()  # the last rebase
        store.encode_deferred()  # the last save's raw blocks: the stored bytes are final
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        stats = store.stats()
    return {
        "logical_bytes": sum(r.size_bytes for r in records),
        "stored_bytes": stats.stored_bytes,
        "seconds": seconds,
        "put_seconds": put_seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def restore(root: str) -> dict[str, float]:
    with CheckpointStore.open(root) as store:
        records = sorted(store.list(JOB, limit=None).checkpoints, key=lambda r: r.created_at)
        catalog = store.context.catalog
        depth_of = {}
        for record in records:
            blocks = [block for _, block in catalog.manifest(record.checkpoint_id)]
            depths = chain_depths(catalog, blocks, limit=64)
            depth_of[record.checkpoint_id] = max(depths.values(), default=0)
        deepest = max(records, key=lambda r: (depth_of[r.checkpoint_id], r.created_at))
        out: dict[str, float] = {}
        for label, record in (("last", records[-1]), ("deepest", deepest)):
            start = time.perf_counter()
            store.restore(record.checkpoint_id, "/dev/null")
            out[f"{label}_bytes"] = record.size_bytes
            out[f"{label}_seconds"] = time.perf_counter() - start
            out[f"{label}_depth"] = depth_of[record.checkpoint_id]
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out


def main() -> None:
    command, root, *paths = sys.argv[1:]
    if command == "ingest":
        result = ingest(root, paths)
    elif command == "ingest-raw":
        result = ingest(root, paths, StoreConfig(defer_whole_encode=True))
    else:
        result = restore(root)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
