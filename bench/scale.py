"""The catalog at training scale: a store grown to millions of small blocks, and what
its everyday operations cost as it grows, on SQLite and on PostgreSQL.

    python -m bench.scale [--catalog sqlite|postgres|both] [--max-blocks 5000000]
        [--checkpoint-blocks 50000] [--listing 100000] [--postgres URL] [--name vm-scale]

The store is grown through the catalog's own API (``add_pack``, ``commit_checkpoint``)
with synthetic blocks of small tensors (1 KiB each, in packs of 16,384): what is
measured is the catalog, not the codecs, so the pack files are sparse files of the
right size and no byte is encoded. GC and verify run through the engine
(``CheckpointStore.gc``, ``verify``) over that store.

At each size (blocks in the store; sizes go up by about 3x), one training save:
- put: recording the pack of its new blocks (30% of a checkpoint of
  ``--checkpoint-blocks`` blocks; the rest are the previous save's)
- commit: making that checkpoint visible (refcounts, manifest) in one transaction
- best copy: a best copy of it (``replace_best``)
- delete: deleting the best copy and the checkpoint
- GC with work: removing the dead blocks that left, then GC again with nothing to do
- verify (without data), in a child process: time, and the process's peak RSS
  (interpreter and imports included)
- the catalog's size per block

Every write transaction of the catalog is timed (the longest is "lock" below: for
SQLite it is how long the database's one write lock was held). At the end a job of
``--listing`` checkpoints (metrics ``loss``, bulk-inserted) is listed sorted by the
metric and by time. Growth exponents are the slopes of log(time) over log(blocks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import WORK, save_report
from ckptstore.store.blockstore.local import LocalBlockStore
from ckptstore.store.catalog import open_catalog
from ckptstore.store.catalog.base import Catalog
from ckptstore.store.catalog.records import BlockRecord, CheckpointRecord, ListQuery
from ckptstore.store.checkpoints import CheckpointStore
from ckptstore.store.context import StoreConfig
from ckptstore.store.ids import new_pack_id

DEFAULT_POSTGRES = "postgresql://127.0.0.1:5432/test"
BLOCK_BYTES = 1024  # a small tensor
ENTRY_HEADER = 76
PACK_HEADER = 16
PACK_BLOCKS = 16_384
GROW_CHECKPOINT = 100_000  # blocks of each checkpoint that only grows the store
CHANGED = 0.3  # of a save's blocks, new; the rest are the previous save's
GRACE_S = 60.0
JOB = "train"

HOLDS: list[float] = []  # seconds of each write transaction, in order


def _timed_writes() -> None:
    """Time every write transaction of both catalogs (their one ``_write`` each)."""
    from ckptstore.store.catalog.postgres.database import PostgresDatabase
    from ckptstore.store.catalog.sqlite.database import SQLiteDatabase

    for cls in (SQLiteDatabase, PostgresDatabase):
        original = cls._write

        def write(self: Any, _original: Any = original) -> Iterator[Any]:
            start = time.perf_counter()
            with _original(self) as conn:
                yield conn
            HOLDS.append(time.perf_counter() - start)

        cls._write = contextmanager(write)  # type: ignore[method-assign]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A store whose catalog is grown directly, over sparse pack files."""

    def __init__(self, root: Path, catalog_url: str | None) -> None:
        self.root = root
        self.catalog_location = catalog_url or str(root / "catalog.sqlite")
        self.clock = Clock()
        self.packs = LocalBlockStore(root / "packs")
        self.catalog: Catalog = open_catalog(self.catalog_location)
        # the packs are sparse files, with no entries to copy: GC must neither compact
        # nor merge them (every pack here is large next to a 1 MiB target)
        config = StoreConfig(
            gc_grace_s=GRACE_S, compact_dead_fraction=0.99, pack_target_bytes=1 << 20
        )
        self.store = CheckpointStore(
            self.catalog, self.packs, config=config, clock=self.clock, lock_dir=root
        )
        self.blocks = 0
        self.previous: list[bytes] = []  # the block ids of the last save

    def new_blocks(self, count: int, holder: str) -> list[bytes]:
        """Record ``count`` new blocks in packs of PACK_BLOCKS, leased to ``holder``."""
        ids: list[bytes] = []
        while len(ids) < count:
            n = min(PACK_BLOCKS, count - len(ids))
            pack_id = new_pack_id()
            entry = ENTRY_HEADER + BLOCK_BYTES
            records = [
                BlockRecord(
                    os.urandom(32),
                    pack_id,
                    PACK_HEADER + i * entry,
                    BLOCK_BYTES,
                    BLOCK_BYTES,
                    1,
                    header_len=ENTRY_HEADER,
                    width=4,
                )
                for i in range(n)
            ]
            size = PACK_HEADER + n * entry
            path = self.packs.root / pack_id[:2] / f"{pack_id}.pack"  # the store's layout
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as sparse:
                sparse.truncate(size)
            now = self.clock()
            self.catalog.add_pack(pack_id, size, records, now, holder, now + 3600)
            ids += [r.block_id for r in records]
        self.blocks += count
        return ids

    def commit(self, block_ids: list[bytes], holder: str, kind: str = "automatic") -> str:
        checkpoint_id = uuid.uuid4().hex
        self.clock.now += 1
        record = _checkpoint(checkpoint_id, JOB, kind, len(block_ids), self.clock())
        manifest = [(i * BLOCK_BYTES, block) for i, block in enumerate(block_ids)]
        self.catalog.commit_checkpoint(record, manifest, holder)
        return checkpoint_id

    def grow(self, target: int) -> None:
        while self.blocks < target:
            ids = self.new_blocks(GROW_CHECKPOINT, "grow")
            self.commit(ids, "grow")
            self.previous = ids

    def close(self) -> None:
        self.store.close()


def _checkpoint(
    checkpoint_id: str, job: str, kind: str, blocks: int, now: float, **fields: Any
) -> CheckpointRecord:
    values: dict[str, Any] = dict(
        checkpoint_id=checkpoint_id,
        job_id=job,
        type=kind,
        name=checkpoint_id[:8],
        description=None,
        epoch=None,
        step=None,
        metrics={},
        status="ready",
        size_bytes=blocks * BLOCK_BYTES,
        stored_bytes=0,
        created_at=now,
    )
    values.update(fields)
    return CheckpointRecord(**values)


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Seconds ``fn`` took, and the longest write transaction within it."""
    first = len(HOLDS)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, max(HOLDS[first:], default=0.0)


def measure_step(rig: Rig, checkpoint_blocks: int) -> dict[str, float]:
    """One training save at the rig's current size; seconds and bytes."""
    result: dict[str, float] = {"blocks": rig.blocks}
    kept = rig.previous[: int(checkpoint_blocks * (1 - CHANGED))]
    new_ids: list[bytes] = []

    def put() -> None:
        new_ids.extend(rig.new_blocks(checkpoint_blocks - len(kept), "save"))

    result["put_s"], result["put_lock_s"] = _timed(put)
    saved: list[str] = []
    result["commit_s"], result["commit_lock_s"] = _timed(
        lambda: saved.append(rig.commit(kept + new_ids, "save"))
    )
    best = _checkpoint(
        uuid.uuid4().hex, JOB, "best", checkpoint_blocks, rig.clock(), parent_id=saved[0]
    )
    result["best_copy_s"], _ = _timed(lambda: rig.catalog.replace_best(best, None))

    def delete() -> None:
        rig.catalog.delete_checkpoint(best.checkpoint_id, rig.clock())
        rig.catalog.delete_checkpoint(saved[0], rig.clock())

    result["delete_s"], result["delete_lock_s"] = _timed(delete)
    rig.clock.now += GRACE_S + 3600 + 1  # past the grace period and the leases
    removed: list[int] = []
    result["gc_work_s"], result["gc_work_lock_s"] = _timed(
        lambda: removed.append(rig.store.gc().blocks_removed)
    )
    result["gc_removed_blocks"] = removed[0]
    rig.blocks -= removed[0]
    idle = [_timed(rig.store.gc) for _ in range(3)]
    result["gc_idle_s"] = min(t for t, _ in idle)
    result["gc_idle_lock_s"] = max(hold for _, hold in idle)
    verify = _verify_in_child(rig)
    result["verify_s"], result["verify_peak_mb"] = verify["seconds"], verify["peak_mb"]
    result["verify_base_mb"] = verify.get("base_mb", 0.0)
    result["catalog_bytes_per_block"] = catalog_bytes(rig) / max(rig.blocks, 1)
    return result


def _verify_in_child(rig: Rig) -> dict[str, float]:
    """verify (without data) in a fresh process: seconds and peak RSS growth in MB."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--verify-child", str(rig.root)]
        + ([rig.catalog_location] if rig.catalog_location.startswith("postgres") else []),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return found


def verify_child(root: str, catalog_url: str | None) -> None:
    packs = LocalBlockStore(Path(root) / "packs")
    catalog = open_catalog(catalog_url or str(Path(root) / "catalog.sqlite"))
    store = CheckpointStore(catalog, packs, clock=Clock())
    base_mb = _peak_rss_mb()  # imports and the open store
    start = time.perf_counter()
    report = store.verify(read_data=False)
    seconds = time.perf_counter() - start
    peak_mb = _peak_rss_mb()
    store.close()
    if not report.ok:
        raise SystemExit(f"verify found {len(report.findings)} problems: {report.findings[:3]}")
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "base_mb": base_mb}))


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: getrusage's would count the parent's before exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def catalog_bytes(rig: Rig) -> int:
    """Bytes the catalog's tables and indexes take."""
    if not rig.catalog_location.startswith("postgres"):
        import sqlite3

        with sqlite3.connect(rig.catalog_location) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        return int((pages - free) * page_size)
    import psycopg

    with psycopg.connect(rig.catalog_location) as pg:
        row = pg.execute(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row and row[0] else 0


def measure_listing(rig: Rig, count: int) -> dict[str, float]:
    """List a job of ``count`` checkpoints (bulk-inserted) by a metric and by time:
    median milliseconds of a first page of 20."""
    job = "listing"
    rng = random.Random(7)
    records = [
        _checkpoint(
            uuid.uuid4().hex, job, "automatic", 0, rig.clock() + i, metrics={"loss": rng.random()}
        )
        for i in range(count)
    ]
    rig.catalog.create_checkpoint(records[0])
    _bulk_insert(rig, records[1:])
    result: dict[str, float] = {"checkpoints": count}
    for sort_by in ("loss", "createdAt"):
        query = ListQuery("", job, sort_by, descending=sort_by != "loss", limit=20)
        times = []
        for _ in range(30):
            start = time.perf_counter()
            page, total, _ = rig.catalog.list_checkpoints(query)
            times.append(time.perf_counter() - start)
        assert total == count and len(page) == 20
        result[f"list_{sort_by}_ms"] = statistics.median(times) * 1000
    return result


def _bulk_insert(rig: Rig, records: list[CheckpointRecord]) -> None:
    """Insert checkpoint rows in one transaction (setting up, not measured)."""
    if rig.catalog_location.startswith("postgres"):
        from ckptstore.store.catalog.postgres import rows as pg_rows

        with rig.catalog._write() as pg_conn, pg_conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.executemany(
                f"INSERT INTO checkpoints ({pg_rows.CHECKPOINT_COLUMNS})"
                f" VALUES ({pg_rows.CHECKPOINT_MARKS})",
                [pg_rows.checkpoint_values(r) for r in records],
            )
        return
    from ckptstore.store.catalog.sqlite import rows as sqlite_rows

    with rig.catalog._write() as conn:  # type: ignore[attr-defined]
        conn.executemany(
            f"INSERT INTO checkpoints ({sqlite_rows.CHECKPOINT_COLUMNS})"
            f" VALUES ({sqlite_rows.CHECKPOINT_MARKS})",
            [sqlite_rows.checkpoint_values(r) for r in records],
        )


def sizes(max_blocks: int) -> list[int]:
    """1e5, 3e5, 1e6, 3e6, ... up to ``max_blocks`` (which ends the list)."""
    out: list[int] = []
    size = 100_000
    while size < max_blocks * 0.9:
        out.append(size)
        size = size * 3 if str(size).startswith("1") else size * 10 // 3
    return out + [max_blocks]


def exponent(points: list[dict[str, float]], key: str) -> float:
    """Least-squares slope of log(key) over log(blocks)."""
    xs = [math.log(p["blocks"]) for p in points if p[key] > 0]
    ys = [math.log(p[key]) for p in points if p[key] > 0]
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    root = WORK / f"scale-{kind}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    catalog_url = None
    schema = f"ckpt_scale_{uuid.uuid4().hex[:10]}"
    if kind == "postgres":
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in args.postgres else "?"
        catalog_url = f"{args.postgres}{separator}options=-csearch_path%3D{schema}"
    rig = Rig(root, catalog_url)
    points = []
    try:
        for target in sizes(args.max_blocks):
            started = time.perf_counter()
            rig.grow(target)
            grown_s = time.perf_counter() - started
            point = measure_step(rig, args.checkpoint_blocks)
            point["grow_s"] = grown_s
            points.append(point)
            print(kind, json.dumps({k: round(v, 4) for k, v in point.items()}), flush=True)
        listing = measure_listing(rig, args.listing)
        print(kind, json.dumps(listing), flush=True)
    finally:
        rig.close()
        if kind == "postgres":
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(root, ignore_errors=True)
    keys = [k for k in points[0] if k.endswith("_s") and k != "grow_s"] + ["verify_peak_mb"]
    return {
        "points": points,
        "exponents": {k: exponent(points, k) for k in keys},
        "listing": listing,
    }


COLUMNS = [
    ("blocks", "blocks", "{:,.0f}"),
    ("put_s", "put s", "{:.3f}"),
    ("commit_s", "commit s", "{:.3f}"),
    ("commit_lock_s", "commit lock s", "{:.3f}"),
    ("best_copy_s", "best copy s", "{:.3f}"),
    ("delete_s", "delete s", "{:.3f}"),
    ("gc_work_s", "GC (work) s", "{:.3f}"),
    ("gc_work_lock_s", "GC lock s", "{:.3f}"),
    ("gc_idle_s", "GC (idle) s", "{:.4f}"),
    ("verify_s", "verify s", "{:.2f}"),
    ("verify_peak_mb", "verify peak RSS MB", "{:.0f}"),
    ("verify_base_mb", "(RSS before)", "{:.0f}"),
    ("catalog_bytes_per_block", "catalog B/block", "{:.0f}"),
]


def report_lines(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [
        f"`python -m bench.scale --catalog {args.catalog} --max-blocks {args.max_blocks}"
        f" --checkpoint-blocks {args.checkpoint_blocks} --listing {args.listing}`",
        "",
        f"Each save: a checkpoint of {args.checkpoint_blocks:,} blocks of {BLOCK_BYTES} bytes,"
        f" {CHANGED:.0%} of them new; then a best copy, both deleted, GC. Lock: the longest"
        " write transaction of the step.",
    ]
    for kind, result in results.items():
        lines += ["", f"## {kind}", ""]
        lines.append("| " + " | ".join(title for _, title, _ in COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for point in result["points"]:
            cells = [fmt.format(point[key]) for key, _, fmt in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Growth exponents (slope of log time over log blocks):", ""]
        lines += [f"- {key}: {value:.2f}" for key, value in result["exponents"].items()]
        listing = result["listing"]
        lines += [
            "",
            f"Listing a job of {listing['checkpoints']:,.0f} checkpoints, first page of 20"
            f" (median): sorted by a metric {listing['list_loss_ms']:.2f} ms, by time"
            f" {listing['list_createdAt_ms']:.2f} ms.",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--max-blocks", type=int, default=5_000_000)
    parser.add_argument("--checkpoint-blocks", type=int, default=50_000)
    parser.add_argument("--listing", type=int, default=100_000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--name", default="scale")
    parser.add_argument("--verify-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_child:
        verify_child(args.verify_child[0], (args.verify_child[1:] or [None])[0])
        return
    _timed_writes()
    kinds = ["sqlite", "postgres"] if args.catalog == "both" else [args.catalog]
    results = {kind: run(kind, args) for kind in kinds}
    path = save_report(
        args.name, "The catalog at training scale", report_lines(results, args), results
    )
    print(path)


if __name__ == "__main__":
    main()
