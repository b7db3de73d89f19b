"""A local cluster (``make run-cluster``): two ``ckptstore serve`` replicas sharing a
PostgreSQL catalog and an S3 bucket, each with a data directory of its own.

::

    python -m ckptstore.testing.cluster [--ports 8001 8002] [--endpoint URL]

The S3 endpoint is ``--endpoint`` (or ``CKPTSTORE_S3_ENDPOINT``; credentials from
the AWS variables), else moto's server started here on a free loopback port. The
catalog is a new schema on ``--postgres`` (default ``CKPTSTORE_TEST_POSTGRES`` or
``postgresql://postgres@127.0.0.1:5432/test``). Prints the URLs and an operator's
key; Ctrl-C stops everything. With moto the bucket lives in memory, so the schema
is dropped at exit too; with an endpoint given, both are kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "ckptstore"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def main(argv: list[str] | None = None) -> int:
    """Run the cluster until interrupted; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, nargs="+", default=[8001, 8002])
    parser.add_argument("--endpoint", default=os.environ.get("CKPTSTORE_S3_ENDPOINT"))
    parser.add_argument("--bucket", default="ckptstore-cluster")
    parser.add_argument(
        "--postgres", default=os.environ.get("CKPTSTORE_TEST_POSTGRES", DEFAULT_POSTGRES)
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    with ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(_moto())
        _ensure_bucket(endpoint, args.bucket)
        catalog = stack.enter_context(_schema(args.postgres, keep=bool(args.endpoint)))
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ckpt-cluster-")))
        env = {
            **os.environ,
            "CKPTSTORE_S3_ENDPOINT": endpoint,
            "CKPTSTORE_CATALOG": catalog,
            "CKPTSTORE_BLOCKS": f"s3://{args.bucket}/packs",
            # one signing key for all replicas: a URL signed by one opens on any
            "CKPTSTORE_SIGNING_KEYS": secrets.token_urlsafe(32),
        }
        key = _admin_key(root / "keys", env)
        urls = [stack.enter_context(_replica(root, port, env)) for port in args.ports]
        print(f"S3 endpoint {endpoint}, bucket {args.bucket}; catalog {catalog}")
        print("Replicas: " + "  ".join(urls))
        print(f"Authenticate with 'Authorization: Bearer {key}', or:")
        print(f"  export CKPTSTORE_SERVER={urls[0]} CKPTSTORE_API_KEY={key}")
        print("Ctrl-C stops all.", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping", flush=True)
    return 0


@contextmanager
def _moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")  # moto takes any credentials
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _ensure_bucket(endpoint: str, bucket: str) -> None:
    from ckptstore.store.blockstore.s3 import s3_client

    client = s3_client(endpoint)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


@contextmanager
def _schema(postgres_url: str, *, keep: bool) -> Iterator[str]:
    """The URL of a new schema on the server (dropped afterwards unless ``keep``)."""
    import psycopg

    schema = f"ckpt_cluster_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        if not keep:
            with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _admin_key(data_dir: Path, env: dict[str, str]) -> str:
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", "default", "--admin", "--data", str(data_dir)]
        + ["--name", "cluster operator", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return str(json.loads(made.stdout)["key"])


@contextmanager
def _replica(root: Path, port: int, env: dict[str, str]) -> Iterator[str]:
    """One ``ckptstore serve`` on ``port`` with its own data directory."""
    data_dir = root / f"replica-{port}"
    log_path = root / f"replica-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--data", str(data_dir), "--port", str(port)]
            + ["--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica on port {port} did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
