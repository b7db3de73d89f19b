"""The ckptstore command as a subprocess against a real server: same command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import random_bytes

BIN = Path(sys.executable).parent / "ckptstore"
MB = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from ckptstore.testing.live_server import live_server

    data_dir = tmp_path_factory.mktemp("cli") / "data"
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", "acme", "--data", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(made.stdout)["key"]
    with live_server(data_dir) as base:
        yield {
            **os.environ,
            "CKPTSTORE_SERVER": base,
            "CKPTSTORE_API_KEY": key,
            "CKPTSTORE_DATA_DIR_FOR_TESTS": str(data_dir),
        }


def cli(env, *args, check=True):
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_push_ls_pull_url_rm_through_the_server(server, tmp_path):
    data = random_bytes(3 * MB, seed=8)
    src = tmp_path / "model.pt"
    src.write_bytes(data)
    pushed = json.loads(
        cli(
            server,
            "push",
            str(src),
            "--job",
            "job_cli",
            "--epoch",
            "4",
            "--metric",
            "validationLoss=0.3",
            "--json",
        ).stdout
    )
    assert pushed["status"] == "ready" and pushed["sizeBytes"] == len(data)
    again = json.loads(cli(server, "push", str(src), "--job", "job_cli", "--json").stdout)
    assert again["storedBytes"] == 0  # nothing new travelled or was stored

    listed = json.loads(cli(server, "ls", "job_cli", "--json").stdout)
    assert listed["totalCount"] == 3  # two pushes and the best copy
    out = tmp_path / "restored.bin"
    cli(server, "pull", pushed["checkpointId"], "-o", str(out))
    assert out.read_bytes() == data

    signed = cli(server, "url", pushed["checkpointId"]).stdout.strip()
    assert "/signed/" in signed and "signature=" in signed
    assert json.loads(cli(server, "jobs", "--json").stdout) == ["job_cli"]

    endpoint = json.loads(
        cli(
            server,
            "endpoints",
            "deploy",
            pushed["checkpointId"],
            "--name",
            "serve",
            "--gpu",
            "rtx-4090",
            "--json",
        ).stdout
    )
    blocked = cli(server, "rm", pushed["checkpointId"], check=False)
    assert blocked.returncode == 7 and endpoint["endpoint_id"] in blocked.stderr
    cli(server, "endpoints", "rm", endpoint["endpoint_id"])
    cli(server, "rm", pushed["checkpointId"])
    missing = cli(server, "show", pushed["checkpointId"], check=False)
    assert missing.returncode == 3 and "Traceback" not in missing.stderr


def test_push_from_stdin(server):
    data = random_bytes(MB, seed=9)
    done = subprocess.run(
        [str(BIN), "push", "-", "--job", "job_stdin", "--json"],
        env=server,
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    pulled = subprocess.run(
        [str(BIN), "pull", record["checkpointId"], "-o", "-"],
        env=server,
        capture_output=True,
        timeout=120,
    )
    assert pulled.stdout == data


def test_wrong_key_and_store_only_commands_fail_cleanly(server):
    bad = {**server, "CKPTSTORE_API_KEY": "ck_00000000_" + "x" * 43}
    denied = cli(bad, "jobs", check=False)
    assert (
        denied.returncode == 8 and "API key" in denied.stderr and "Traceback" not in denied.stderr
    )
    remote_verify = cli(server, "verify", check=False)
    assert remote_verify.returncode == 2 and "--store" in remote_verify.stderr
    offline = {**server, "CKPTSTORE_SERVER": "http://127.0.0.1:9"}  # nothing listens there
    gone = subprocess.run(
        [str(BIN), "jobs"], env=offline, capture_output=True, text=True, timeout=300
    )
    assert gone.returncode == 10 and "Traceback" not in gone.stderr


def test_gc_through_the_server_needs_an_admin_key(server, tmp_path):
    refused = cli(server, "gc", check=False)
    assert refused.returncode == 2 and "admin key" in refused.stderr
    data_dir = Path(server["CKPTSTORE_DATA_DIR_FOR_TESTS"])
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", "ops", "--admin", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    admin = {**server, "CKPTSTORE_API_KEY": made.stdout.strip()}
    assert cli(admin, "gc").returncode == 0
    listed = json.loads(cli(server, "keys", "list", "--data", str(data_dir), "--json").stdout)
    assert {k["tenant"]: k["admin"] for k in listed} == {"acme": False, "ops": True}


def test_example_training_script_against_the_server(server):
    import httpx

    headers = {"Authorization": f"Bearer {server['CKPTSTORE_API_KEY']}"}
    r = httpx.post(
        f"{server['CKPTSTORE_SERVER']}/v2/training/jobs/job_example/checkpoints",
        headers=headers,
        json={"name": "Requested Milestone"},
    )
    assert r.status_code == 201
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "train_small.py")],
        env=server,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    assert f"fulfilled manual request {r.json()['checkpointId']}" in done.stdout
    listing = done.stdout.split("checkpoints:\n", 1)[1].splitlines()
    kinds = {line.split()[0] for line in listing}
    assert {"final", "automatic", "best", "manual"} <= kinds


def test_first_start_keeps_the_key_in_a_private_file_not_the_log(tmp_path):
    import httpx

    from ckptstore.testing.live_server import live_server

    data_dir = tmp_path / "data"
    with live_server(data_dir, log_level="info") as base:
        key_file = data_dir / "first-api-key"
        key = key_file.read_text().strip()
        assert key_file.stat().st_mode & 0o777 == 0o600
        log = (tmp_path / "server.log").read_text()
        assert str(key_file) in log and key not in log
        ok = httpx.get(f"{base}/v2/training/jobs", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        signed = httpx.get(f"{base}/signed/ckpt_x?expires=1&signature=SECRETSIG")
        assert signed.status_code == 403
    log = (tmp_path / "server.log").read_text()
    assert "/signed/ckpt_x?expires=1&signature=[redacted]" in log and "SECRETSIG" not in log


def test_ls_pages_with_limit_and_lists_everything_with_all(server, tmp_path):
    src = tmp_path / "tiny.bin"
    for step in range(3):
        src.write_bytes(bytes([step]) * 100)
        cli(server, "push", str(src), "--job", "job_pages", "--step", str(step))
    paged = json.loads(cli(server, "ls", "job_pages", "--limit", "2", "--json").stdout)
    assert len(paged["checkpoints"]) == 2 and paged["totalCount"] == 3
    everything = json.loads(cli(server, "ls", "job_pages", "--all", "--json").stdout)
    assert [c["step"] for c in everything["checkpoints"]] == [2, 1, 0]


def test_references_through_the_server(server, tmp_path):
    src = tmp_path / "a.bin"
    ids = []
    for n in range(2):
        src.write_bytes(random_bytes(200_000, seed=20 + n))
        pushed = cli(server, "push", str(src), "--job", "job_refs", "--json").stdout
        ids.append(json.loads(pushed)["checkpointId"])
    shown = json.loads(cli(server, "show", ids[0][:13], "--json").stdout)
    assert shown["checkpointId"] == ids[0]
    out = tmp_path / "latest.bin"
    cli(server, "pull", "job_refs:latest", "-o", str(out))
    assert out.read_bytes() == src.read_bytes()
    signed = json.loads(cli(server, "url", "job_refs:latest", "--json").stdout)
    assert signed["checkpointId"] == ids[1] and f"/signed/{ids[1]}?" in signed["downloadUrl"]
    endpoint = json.loads(
        cli(server, "endpoints", "deploy", ids[0][:13], "--name", "refs", "--json").stdout
    )
    moved = cli(server, "endpoints", "set", endpoint["endpoint_id"], "-c", "job_refs:latest")
    assert f"-> {ids[1]}" in moved.stdout
    assert cli(server, "rm", ids[0][:13]).stdout.strip() == f"deleted {ids[0]}"
    cli(server, "endpoints", "rm", endpoint["endpoint_id"])
    missing = cli(server, "show", "job_refs:final", check=False)
    assert missing.returncode == 3 and "job_refs:final" in missing.stderr


def test_push_folder_and_pull_it_through_the_server(server, tmp_path):
    from tests.test_cli import sample_folder

    src = sample_folder(tmp_path / "ckdir")
    record = json.loads(cli(server, "push", str(src), "--job", "job_dir", "--json").stdout)
    assert record["layout"] == "tree"
    cli(server, "pull", record["checkpointId"], "-o", str(tmp_path / "out"))
    assert subprocess.run(["diff", "-r", str(src), str(tmp_path / "out")]).returncode == 0
    # the whole folder as one tar on stdout
    tar = subprocess.run(
        [str(BIN), "pull", record["checkpointId"], "-o", "-"], env=server, capture_output=True
    )
    assert tar.returncode == 0, tar.stderr
    (tmp_path / "x").mkdir()
    subprocess.run(["tar", "-x", "-C", str(tmp_path / "x")], input=tar.stdout, check=True)
    assert subprocess.run(["diff", "-r", str(src), str(tmp_path / "x")]).returncode == 0
