"""Two ``ckptstore serve`` replicas on one PostgreSQL catalog and one S3 bucket (moto),
each with a data directory of its own: nothing is shared on local disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.errors import CheckpointNotFound
from tests.conftest import random_bytes

BIN = Path(sys.executable).parent / "ckptstore"
MB = 1_000_000


def test_two_replicas_on_postgres_and_s3_serve_one_store(
    postgres_url: str, s3_bucket: str, tmp_path: Path
) -> None:
    from ckptstore.testing.live_server import live_server

    blocks = f"s3://{s3_bucket}/packs"
    env = {
        "CKPTSTORE_CATALOG": postgres_url,
        "CKPTSTORE_BLOCKS": blocks,
        "CKPTSTORE_SIGNING_KEYS": "cluster-test-key",  # one key for both: no shared file
        "CKPTSTORE_GC_GRACE": "0",
    }
    data_a, data_b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", "acme", "--admin", "--data", str(data_a)]
        + ["--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    key = json.loads(made.stdout)["key"]
    data = random_bytes(3 * MB, seed=40)
    with (
        live_server(data_a, env=env) as first,
        live_server(data_b, env=env) as second,
        Client(first, key) as one,
        Client(second, key) as other,
    ):
        pushed = one.put("job_cluster", data, epoch=1)
        (listed,) = other.list("job_cluster").checkpoints
        assert listed.checkpoint_id == pushed.checkpoint_id
        with other.open_reader(pushed.checkpoint_id) as reader:
            assert reader.read() == data
        # a URL signed by one replica opens on the other
        signed = one.download_url(pushed.checkpoint_id)
        assert signed.startswith(first)
        assert httpx.get(second + signed[len(first) :], timeout=60).content == data

        # an upload begun on one replica is filled through the other
        more = data[: MB // 2] + random_bytes(2 * MB, seed=41)
        pending = one.create_pending("job_cluster", epoch=2)
        filled = other.fill(pending.checkpoint_id, more)
        assert one.get(filled.checkpoint_id).size_bytes == len(more)

        packs = _objects(s3_bucket, "packs/")
        assert packs and all(key.endswith(".pack") for key in packs)
        assert not list(tmp_path.glob("*/data/packs/*/*")), "packs went to local disk"

        other.delete(pushed.checkpoint_id)
        with pytest.raises(CheckpointNotFound):
            one.get(pushed.checkpoint_id)
        report = one.gc()
        assert report.blocks_removed > 0 and report.bytes_freed > 0
        assert _objects(s3_bucket, "packs/") != packs  # freed in the bucket
        with other.open_reader(filled.checkpoint_id) as reader:
            assert reader.read() == more

    with CheckpointStore.open(tmp_path / "check", catalog=postgres_url, blocks=blocks) as store:
        assert store.verify(read_data=True).ok
        assert store.stats().checkpoints == 1


def _objects(bucket: str, prefix: str, endpoint: str | None = None) -> set[str]:
    from ckptstore.store.blockstore.s3 import s3_client

    listed = s3_client(endpoint or os.environ["CKPTSTORE_S3_ENDPOINT"]).list_objects_v2(
        Bucket=bucket, Prefix=prefix
    )
    return {obj["Key"] for obj in listed.get("Contents", [])}


def test_run_cluster_serves_one_store_from_both_replicas(postgres_url: str) -> None:
    """What ``make run-cluster`` runs (on free ports): its key works on both
    replicas, and Ctrl-C stops it cleanly."""
    import signal

    from ckptstore.testing.live_server import free_port

    ports = [str(free_port()), str(free_port())]
    base = postgres_url.split("?")[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckptstore.testing.cluster", "--ports", *ports]
        + ["--postgres", base],  # its own moto server; the schema is dropped at exit
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "Ctrl-C stops all.\n":
            lines.append(proc.stdout.readline())
            assert lines[-1], "".join(lines)  # it exited instead
        (export,) = [line for line in lines if "CKPTSTORE_API_KEY=" in line]
        (where,) = [line for line in lines if line.startswith("S3 endpoint ")]
        endpoint, bucket = where.split()[2].rstrip(","), where.split()[4].rstrip(";")
        key = export.split("CKPTSTORE_API_KEY=")[1].strip()
        data = random_bytes(MB, seed=42)
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        with Client(urls[0], key) as one, Client(urls[1], key) as other:
            pushed = one.put("job_run_cluster", data)
            with other.open_reader(pushed.checkpoint_id) as reader:
                assert reader.read() == data
        assert any(k.endswith(".pack") for k in _objects(bucket, "packs/", endpoint))
    finally:
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert returncode == 0


def test_cli_commands_keep_the_packs_where_blocks_names(s3_bucket: str, tmp_path: Path) -> None:
    src, out = tmp_path / "model.pt", tmp_path / "back.pt"
    src.write_bytes(random_bytes(MB, seed=43))
    blocks = f"s3://{s3_bucket}/cli"

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(BIN), *args, "--store", str(tmp_path / "store"), "--blocks", blocks],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    pushed = json.loads(cli("push", str(src), "--job", "job_cli", "--json"))
    cli("pull", pushed["checkpointId"], "-o", str(out))
    assert out.read_bytes() == src.read_bytes()
    assert _objects(s3_bucket, "cli/") and not (tmp_path / "store" / "packs").exists()


def test_cli_refuses_a_blocks_url_it_does_not_know(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(BIN),
            "push",
            "-",
            "--job",
            "j",
            "--store",
            str(tmp_path / "s"),
            "--blocks",
            "gs://b/p",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "s3://bucket[/prefix]" in done.stderr
