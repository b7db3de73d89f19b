"""The seed's snippets, unchanged but for base URL and key, against a real uvicorn."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ckptstore import CheckpointStore
from ckptstore.server.auth import create_api_key
from ckptstore.testing.live_server import live_server
from tests import seed_snippets as seed
from tests.conftest import random_bytes

JOB = "job_train_abc123"
BIN = Path(sys.executable).parent


def seed_data(data_dir: Path) -> str:
    """The seed's job: eight epochs, ckpt_best_abc123, ckpt_old_abc123; returns a key."""
    with CheckpointStore.open(data_dir) as store:
        _, key = create_api_key(store.context.catalog, "acme", "seed", time.time())
        store.put(
            JOB,
            random_bytes(100_000, seed=99),
            checkpoint_id="ckpt_old_abc123",
            epoch=0,
            tenant="acme",
        )
        for epoch in range(1, 9):
            store.put(
                JOB,
                random_bytes(200_000, seed=epoch),
                epoch=epoch,
                step=epoch * 600,
                tenant="acme",
                metrics={
                    "loss": 1 / epoch,
                    "accuracy": 0.8 + epoch / 100,
                    "validationLoss": 1.1 / epoch,
                    "validationAccuracy": 0.7 + epoch / 100,
                },
            )
        store.put(
            JOB,
            random_bytes(200_000, seed=15),
            checkpoint_id="ckpt_best_abc123",
            type="best",
            name="Best Validation - Epoch 15",
            epoch=15,
            step=9000,
            tenant="acme",
            metrics={
                "loss": 0.6234,
                "accuracy": 0.891,
                "validationLoss": 0.7123,
                "validationAccuracy": 0.876,
            },
        )
        store.put(JOB, random_bytes(1000, seed=20), type="final", tenant="acme")
    return key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("seed") / "data"
    key = seed_data(data_dir)
    # the seed's cleanup snippet lists without a key: see test_cleanup below
    with live_server(data_dir, env={"CKPTSTORE_ANONYMOUS_TENANT": "acme"}) as base:
        yield base, key, data_dir


def run_snippet(server, code: str, cwd: Path) -> str:
    base, key, _ = server
    program = "import requests\n" + code.replace(seed.BASE, base).replace(seed.KEY, key)
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_get(server, tmp_path):
    out = run_snippet(server, seed.GET, tmp_path)
    assert "Checkpoint: Best Validation - Epoch 15" in out
    assert "Validation Accuracy: 0.876" in out


def test_create_manual(server, tmp_path):
    out = run_snippet(server, seed.CREATE_MANUAL, tmp_path)
    assert out.startswith("Created checkpoint: ckpt_")


def test_deploy(server, tmp_path):
    out = run_snippet(server, seed.DEPLOY, tmp_path)
    assert "Deployed endpoint: ep_" in out and "Endpoint URL: http://127.0.0.1" in out


def test_delete(server, tmp_path):
    assert run_snippet(server, seed.DELETE, tmp_path) == "Checkpoint deleted successfully\n"


def test_backup(server, tmp_path):
    (tmp_path / "backups").mkdir()  # the snippet writes into ./backups without creating it
    out = run_snippet(server, seed.BACKUP, tmp_path)
    assert out == "Backed up checkpoint to ./backups/best_model.ckpt\n"
    assert (tmp_path / "backups" / "best_model.ckpt").read_bytes() == random_bytes(200_000, seed=15)


def test_cleanup(server, tmp_path):
    """The seed's cleanup lists without an Authorization header; the server runs here with
    CKPTSTORE_ANONYMOUS_TENANT so that it works unchanged (by default that request gets 401)."""
    base, key, _ = server
    run_snippet(server, seed.CLEANUP + f"\ncleanup_old_checkpoints({JOB!r})\n", tmp_path)
    listed = httpx.get(
        f"{base}/v2/training/jobs/{JOB}/checkpoints", headers={"Authorization": f"Bearer {key}"}
    ).json()["checkpoints"]
    automatic = [c for c in listed if c["type"] == "automatic"]
    assert len(automatic) == 5
    assert {"best", "final"} <= {c["type"] for c in listed}


@pytest.mark.parametrize("command", [seed.CURL_LIST, seed.CURL_GET])
def test_curl_examples(server, command):
    base, key, _ = server
    argv = shlex.split(command.replace(seed.BASE, base).replace(seed.KEY, key))
    done = subprocess.run(argv + ["-s", "-f"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    if "checkpoints" in body:
        assert len(body["checkpoints"]) == min(10, body["totalCount"])
        has = ["validationLoss" in c["metrics"] for c in body["checkpoints"]]
        assert has == sorted(has, reverse=True)  # those lacking the key come last
        losses = [c["metrics"]["validationLoss"] for c in body["checkpoints"] if c["metrics"]]
        assert losses == sorted(losses)
        assert set(body["summary"]) == {"bestCheckpoint", "latestCheckpoint", "totalSize"}
    else:
        assert body["checkpointId"] == "ckpt_best_abc123"
