"""The catalog backends side by side, in one run: SQLite (the default) and PostgreSQL.

    python -m bench.catalogs [--postgres postgresql://127.0.0.1:5432/test] [--seconds 5]

- recording 1,000 small checkpoints through the library (catalog writes dominate)
- a server (2 workers) listing a job of 1,000 checkpoints to 32 clients: req/s, p50/p99
- ingesting the small pretrain corpus (six saves, rebases included, settle()): MB/s

PostgreSQL runs in a fresh schema, dropped after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
import uuid

from bench.common import MB, WORK, save_report
from bench.corpus import write
from bench.server import JOB, measure_list_load, populate
from ckptstore import CheckpointStore
from ckptstore.testing.live_server import live_server

DEFAULT_POSTGRES = "postgresql://127.0.0.1:5432/test"


def _with_schema(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def _admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def run(catalog_kind: str, postgres: str, seconds: float) -> dict[str, float]:
    root = WORK / f"catalogs-{catalog_kind}"
    shutil.rmtree(root, ignore_errors=True)
    schema = f"ckpt_bench_{uuid.uuid4().hex[:10]}"
    catalog = None
    if catalog_kind == "postgres":
        _admin(postgres, f"CREATE SCHEMA {schema}")
        catalog = _with_schema(postgres, schema)
    try:
        started = time.perf_counter()
        key = populate(root / "data", catalog)
        record_s = time.perf_counter() - started
        env = {"CKPTSTORE_CATALOG": catalog} if catalog else {}
        headers = {"Authorization": f"Bearer {key}"}
        with live_server(root / "data", workers=2, env=env) as base:
            listing = measure_list_load(base, headers, 32, seconds)
        files = write("pretrain", WORK / "corpus-small", "small", 6)
        logical = sum(f.stat().st_size for f in files)
        ingest_root = root / "ingest"
        if catalog_kind == "postgres":
            _admin(postgres, f"DROP SCHEMA {schema} CASCADE")
            _admin(postgres, f"CREATE SCHEMA {schema}")
        os.sync()
        with CheckpointStore.open(ingest_root, catalog=catalog) as store:
            started = time.perf_counter()
            for path in files:
                store.put("pretrain", path)
            put_s = time.perf_counter() - started
            store.settle()
            ingest_s = time.perf_counter() - started
        return {
            "record_1000_s": record_s,
            "list_rps": listing["rps"],
            "list_p50_ms": listing["p50_ms"],
            "list_p99_ms": listing["p99_ms"],
            "put_mb_s": logical / MB / put_s,
            "ingest_mb_s": logical / MB / ingest_s,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if catalog_kind == "postgres":
            _admin(postgres, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = {kind: run(kind, args.postgres, args.seconds) for kind in ("sqlite", "postgres")}
    lines = [
        "Both catalogs in one run, packs on the local disk; the server has 2 workers and"
        " shares the machine's 2 cores with the 32 clients.",
        "",
        "| measure | SQLite | PostgreSQL |",
        "|---|---:|---:|",
    ]
    for label, field, unit in (
        ("record 1,000 small checkpoints (library)", "record_1000_s", "s"),
        (f"list {JOB} (1,000 checkpoints, limit 50), 32 clients", "list_rps", "req/s"),
        ("list p50", "list_p50_ms", "ms"),
        ("list p99", "list_p99_ms", "ms"),
        ("pretrain corpus, put (six saves)", "put_mb_s", "MB/s"),
        ("pretrain corpus, ingest with rebases", "ingest_mb_s", "MB/s"),
    ):
        lines.append(
            f"| {label} | {rows['sqlite'][field]:,.1f} {unit}"
            f" | {rows['postgres'][field]:,.1f} {unit} |"
        )
    md = save_report("catalogs", "Catalogs: SQLite and PostgreSQL", lines, rows)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
