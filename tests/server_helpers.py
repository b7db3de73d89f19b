"""Shared set-up for server tests: an app over a temporary store, keys for two tenants."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from ckptstore import CheckpointStore, StoreConfig
from ckptstore.config import ServerSettings
from ckptstore.server.app import create_app
from ckptstore.server.auth import create_api_key
from ckptstore.testing.clock import FakeClock
from tests.conftest import TEST_CONFIG

JOB = "job_train_abc123"


@dataclass
class Server:
    client: TestClient
    store: CheckpointStore
    clock: FakeClock
    acme: dict[str, str]  # headers of tenant acme
    other: dict[str, str]  # headers of tenant other


def make_server(
    tmp_path: Path,
    catalog: str | None = None,
    config: StoreConfig = TEST_CONFIG,
    **settings_overrides,
) -> Server:
    """``catalog``: a PostgreSQL URL, else SQLite in the data directory."""
    clock = FakeClock()
    store = CheckpointStore.open(tmp_path / "data", catalog=catalog, config=config, clock=clock)
    values = {
        "data_dir": tmp_path / "data",
        "signing_keys": ("test-signing-key",),
        # no background GC: a run racing the test's own POST /v2/gc would take its
        # report (tests/test_gc_worker.py covers the background runs)
        "gc_interval_s": 3600,
        "gc_after_delete_s": 3600,
    }
    settings = ServerSettings(**(values | settings_overrides))
    # acme's key is an operator's (admin), as the first key of `ckptstore serve` is;
    # other's is a plain tenant's
    _, acme_key = create_api_key(store.context.catalog, "acme", "tests", clock.now, admin=True)
    _, other_key = create_api_key(store.context.catalog, "other", "tests", clock.now)
    client = TestClient(create_app(store, settings, clock=clock, close_store=True))
    return Server(
        client,
        store,
        clock,
        {"Authorization": f"Bearer {acme_key}"},
        {"Authorization": f"Bearer {other_key}"},
    )


def frames(blocks: list[tuple[bytes, bytes]]) -> bytes:
    import struct

    return b"".join(bid + struct.pack("<I", len(data)) + data for bid, data in blocks)


@contextmanager
def live_server_and_key(data_dir: Path, *, admin: bool = False) -> Iterator[tuple[str, str]]:
    """A real ``ckptstore serve`` on ``data_dir`` (ckptstore.testing.live_server) and a
    key of tenant acme made with the CLI: (base URL, key)."""
    import json
    import subprocess
    import sys

    from ckptstore.testing.live_server import live_server

    command = [str(Path(sys.executable).parent / "ckptstore"), "keys", "create"]
    command += ["--tenant", "acme", "--data", str(data_dir), "--json"]
    made = subprocess.run(
        command + (["--admin"] if admin else []), capture_output=True, text=True, check=True
    )
    with live_server(data_dir) as base:
        yield base, json.loads(made.stdout)["key"]
