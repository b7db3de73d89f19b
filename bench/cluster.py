"""What a deployment's storage costs through the HTTP API, in one run: the small pretrain
corpus (six saves) pushed and pulled by ``ckptstore.Client`` against a live server on
(SQLite, local dir), (PostgreSQL, local dir) and (PostgreSQL, S3), beside the raw speed
of the S3 endpoint itself (32 MiB objects through boto3, as the S3 block store uses it).

    python -m bench.cluster [--postgres URL] [--endpoint URL] [--corpus DIR]

The S3 endpoint is moto's server (a local emulator, in its own process) unless
``--endpoint``. Per configuration: push every save (acknowledged), wait until the
server's rebases are done (``pending_rebases`` in /metrics), then pull every save
(bytes read and dropped). The server runs one process; client and server share the
machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

import httpx

from bench.common import MB, WORK, save_report
from bench.corpus import write
from bench.s3_endpoint import boto3_figures
from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.server.auth import create_api_key
from ckptstore.testing.live_server import free_port, live_server

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MIB = 1 << 20
CONFIGS = (
    ("SQLite, local dir", False, False),
    ("PostgreSQL, local dir", True, False),
    ("PostgreSQL, S3", True, True),
)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in a process of its own (not a thread of the client's)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def schema(postgres: str) -> Iterator[str]:
    import psycopg

    name = f"ckpt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in postgres else "?"
    try:
        yield f"{postgres}{separator}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


class Discard:
    """A binary sink that keeps nothing: pulls measure the server and the wire."""

    def write(self, data: bytes) -> int:
        return len(data)


def pending_rebases(base: str, key: str) -> float:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    for line in text.splitlines():
        if not line.startswith("#") and "pending_rebases" in line.split(" ")[0]:
            return float(line.split()[-1])
    raise RuntimeError("/metrics has no pending_rebases")


def run(files: list[Path], catalog: str | None, blocks: str | None) -> dict[str, float]:
    root = WORK / f"cluster-{uuid.uuid4().hex[:8]}"
    data_dir = root / "data"
    try:
        with CheckpointStore.open(data_dir, catalog=catalog, blocks=blocks) as store:
            _, key = create_api_key(
                store.context.catalog, "bench", "bench", time.time(), admin=True
            )
        env = {
            name: value
            for name, value in (("CKPTSTORE_CATALOG", catalog), ("CKPTSTORE_BLOCKS", blocks))
            if value
        }
        logical = sum(f.stat().st_size for f in files)
        with live_server(data_dir, env=env) as base, Client(base, key) as client:
            started = time.perf_counter()
            ids = [client.put("pretrain", path).checkpoint_id for path in files]
            push_s = time.perf_counter() - started
            while pending_rebases(base, key) > 0:
                time.sleep(0.2)
            settled_s = time.perf_counter() - started
            started = time.perf_counter()
            sink = cast(BinaryIO, Discard())
            pulled = sum(client.restore(checkpoint_id, sink) for checkpoint_id in ids)
            pull_s = time.perf_counter() - started
            assert pulled == logical
            stored = client.stats().stored_bytes
        return {
            "push_mb_s": logical / MB / push_s,
            "settled_mb_s": logical / MB / settled_s,
            "pull_mb_s": logical / MB / pull_s,
            "stored_mb": stored / MB,
            "logical_mb": logical / MB,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres", default=os.environ.get("CKPTSTORE_TEST_POSTGRES", DEFAULT_POSTGRES)
    )
    parser.add_argument("--endpoint", default=None, help="an S3 endpoint (default: moto's)")
    parser.add_argument("--corpus", type=Path, default=WORK / "corpus-small")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = write("pretrain", args.corpus, "small", 6)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")  # moto takes any
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from ckptstore.store.blockstore.s3 import s3_client

    with moto_server() if args.endpoint is None else _given(args.endpoint) as endpoint:
        os.environ["CKPTSTORE_S3_ENDPOINT"] = endpoint  # the server inherits it
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        rows: dict[str, dict[str, float]] = {}
        for label, postgres, s3 in CONFIGS:
            blocks = f"s3://{bucket}/{uuid.uuid4().hex[:6]}" if s3 else None
            if postgres:
                with schema(args.postgres) as catalog:
                    rows[label] = run(files, catalog, blocks)
            else:
                rows[label] = run(files, None, blocks)
            print(label, rows[label], flush=True)
        raw = boto3_figures(endpoint, bucket, os.urandom(32 * MIB), args.repeat)
    report(rows, raw, args.endpoint, len(files))


@contextmanager
def _given(endpoint: str) -> Iterator[str]:
    yield endpoint


def report(
    rows: dict[str, dict[str, float]],
    raw: dict[str, float],
    endpoint: str | None,
    saves: int,
) -> None:
    where = "moto's S3 server, a local emulator on loopback" if endpoint is None else endpoint
    logical = next(iter(rows.values()))["logical_mb"]
    lines = [
        f"The small pretrain corpus ({saves} saves, {logical:,.0f} MB) through the HTTP API:"
        " one `ckptstore serve` process and one `ckptstore.Client` on this machine.",
        f"S3 endpoint: {where}. moto keeps objects in memory and costs far more per request"
        " than a real endpoint; its figures say what ckptstore adds above this endpoint,"
        " not what AWS S3, MinIO or Ceph would give.",
        "",
        "push: every save acknowledged; settled: until the server's rebases are done;"
        " pull: every save read back (bytes dropped). MB/s of logical bytes.",
        "",
        "| catalog, packs | push MB/s | settled MB/s | pull MB/s | stored MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        lines.append(
            f"| {label} | {row['push_mb_s']:,.1f} | {row['settled_mb_s']:,.1f}"
            f" | {row['pull_mb_s']:,.1f} | {row['stored_mb']:,.1f} |"
        )
    lines += [
        "",
        "Each pull reads blocks as ranged GETs (one per run of adjacent entries) and the"
        " rebases read what they re-encode, so on moto the per-request cost shows most in"
        " settled and pull. Other processes shared the machine's cores during the run.",
        "",
        "The endpoint alone (boto3, 32 MiB objects, median of runs):",
        "",
        "| request | s | MB/s |",
        "|---|---:|---:|",
    ]
    for name, seconds in raw.items():
        size = 64 * 256 * 1024 if name == "64 ranged gets" else 32 * MIB
        lines.append(f"| {name} | {seconds:.3f} | {size / MB / seconds:,.1f} |")
    data = {"rows": rows, "endpoint_s": raw, "endpoint": where}
    md = save_report("cluster", "Storage configurations through the HTTP API", lines, data)
    print("\n".join(lines))
    print(f"\nreport: {md}")


if __name__ == "__main__":
    main()
