"""One tenant cannot freeze the server: a real ``ckptstore serve`` process, and clients
that open uploads, send a few bytes and stall (the attack that used to take every
thread of the server, so that every request of every tenant timed out)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from ckptstore import CheckpointStore
from ckptstore.server.auth import create_api_key
from ckptstore.testing.live_server import live_server
from tests.conftest import random_bytes

JOB = "job_admission"
PER_TENANT = 4  # the server's default uploads_per_tenant


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    data_dir = tmp_path_factory.mktemp("admission") / "data"
    with CheckpointStore.open(data_dir) as store:
        _, slow = create_api_key(store.context.catalog, "slow", "", time.time())
        _, fast = create_api_key(store.context.catalog, "fast", "", time.time())
    with live_server(data_dir, env={"CKPTSTORE_BODY_READ_TIMEOUT_S": "3"}) as base:
        yield base, slow, fast


def _pending(base: str, key: str) -> str:
    r = httpx.post(
        f"{base}/v2/training/jobs/{JOB}/checkpoints",
        headers={"Authorization": f"Bearer {key}"},
        json={"type": "automatic"},
    )
    assert r.status_code == 201
    return str(r.json()["checkpointId"])


def _stalled_upload(base: str, key: str, checkpoint_id: str) -> socket.socket:
    """An upload that declares a megabyte, sends ten bytes and then nothing."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        (
            f"PUT /v2/training/checkpoints/{checkpoint_id}/data HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Length: 1000000\r\n\r\n"
        ).encode()
        + b"0123456789"
    )
    return sock


def _status(sock: socket.socket, wait_s: float) -> int:
    sock.settimeout(wait_s)
    head = sock.recv(4096).decode(errors="replace")
    return int(head.split(" ", 2)[1])


def test_stalled_uploads_of_one_tenant_block_no_one(server: tuple[str, str, str]) -> None:
    base, slow, fast = server
    stalled = [_stalled_upload(base, slow, _pending(base, slow)) for _ in range(3 * PER_TENANT)]
    try:
        # beyond its slots the tenant is refused at once; the others hold their slots
        statuses = []
        for sock in stalled:
            sock.settimeout(0.5)
            try:
                statuses.append(_status(sock, 0.5))
            except TimeoutError:
                statuses.append(None)
        assert statuses.count(429) == 2 * PER_TENANT and statuses.count(None) == PER_TENANT
        # meanwhile everyone else is served: health, lists, another tenant's upload
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        auth = {"Authorization": f"Bearer {fast}"}
        data = random_bytes(1_000_000, seed=5)
        cid = _pending(base, fast)
        put = httpx.put(f"{base}/v2/training/checkpoints/{cid}/data", headers=auth, content=data)
        assert put.status_code == 200 and put.json()["status"] == "ready"
        listed = httpx.get(f"{base}/v2/training/jobs/{JOB}/checkpoints", headers=auth, timeout=5)
        assert listed.json()["totalCount"] == 1
        # the stalled bodies are cut by the read timeout, and their slots come back
        held = [sock for sock, status in zip(stalled, statuses, strict=True) if status is None]
        assert [_status(sock, 30) for sock in held] == [408] * PER_TENANT
        again = _pending(base, slow)
        put = httpx.put(
            f"{base}/v2/training/checkpoints/{again}/data",
            headers={"Authorization": f"Bearer {slow}"},
            content=b"finally",
        )
        assert put.status_code == 200
    finally:
        for sock in stalled:
            sock.close()
