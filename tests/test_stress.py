"""Many clients at once against one real server: a fixed budget of mixed operations.

``ckptstore serve --workers 2`` runs with a grace period of 0 and a GC after every
delete, so GC races the uploads of blocks that other checkpoints share. Client
threads of two tenants each run a seeded sequence of operations on a job of their
own: puts of overlapping data, reads, listings, deletes and (the operator) GC. At
the end every acknowledged checkpoint not deleted restores byte-exact, every
deleted one is gone, no answer was a 5xx, and ``verify(read_data=True)`` of the
store directory is clean. The ``soak`` variant runs a larger budget.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx
import pytest

from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.errors import CheckpointNotFound
from ckptstore.testing.live_server import live_server
from tests.conftest import random_bytes

BIN = Path(sys.executable).parent / "ckptstore"
SEED = 1717
PARTS = 6  # shared runs of bytes that every checkpoint draws two of
PART_BYTES = 240_000
UNIQUE_BYTES = 60_000
OPERATIONS = ("put", "read", "list", "delete", "gc")
WEIGHTS = (45, 20, 15, 12, 8)


@lru_cache(maxsize=PARTS)
def part(index: int) -> bytes:
    return random_bytes(PART_BYTES, seed=3000 + index)


def data_of(seed: int) -> bytes:
    """Two shared parts around bytes of its own: checkpoints of every job and tenant
    share blocks, so uploads race GC for them."""
    first, second = random.Random(seed).sample(range(PARTS), 2)
    return part(first) + random_bytes(UNIQUE_BYTES, seed=seed) + part(second)


@dataclass
class Ledger:
    """What every client saw: each answer's status, each operation done."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)

    def saw(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                request = response.request
                self.server_errors.append(f"{request.method} {request.url.path}")

    def did(self, operation: str) -> None:
        with self.lock:
            self.operations[operation] += 1


@dataclass
class Outcome:
    """One client's checkpoints at the end: live ones (id -> data seed), deleted ones."""

    key: str
    live: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


@contextmanager
def client(base: str, key: str, ledger: Ledger) -> Iterator[Client]:
    """A client whose every answer the ledger sees (retried ones included)."""
    hooks = {"response": [ledger.saw]}
    with httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0), event_hooks=hooks) as http:
        yield Client(base, key, http=http)


def make_key(data_dir: Path, tenant: str, *admin: str) -> str:
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", tenant, *admin, "--data", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(made.stdout)["key"])


def run_worker(
    worker: int, base: str, key: str, admin: bool, budget: int, ledger: Ledger
) -> Outcome:
    """``budget`` seeded operations on job ``job-<worker>``, checked as they go."""
    rng = random.Random(SEED * 1000 + worker)
    job = f"job-{worker}"
    outcome = Outcome(key)
    with client(base, key, ledger) as remote:
        for step in range(budget):
            operation = rng.choices(OPERATIONS, WEIGHTS)[0]
            if operation in ("read", "delete") and not outcome.live:
                operation = "put"
            if operation == "gc" and not admin:
                operation = "list"
            if operation == "put":
                seed = rng.randrange(1 << 30)
                record = remote.put(job, data_of(seed), epoch=step)
                outcome.live[record.checkpoint_id] = seed
            elif operation == "read":
                checkpoint_id = rng.choice(sorted(outcome.live))
                out = io.BytesIO()
                remote.restore(checkpoint_id, out)
                assert out.getvalue() == data_of(outcome.live[checkpoint_id]), checkpoint_id
            elif operation == "delete":
                checkpoint_id = rng.choice(sorted(outcome.live))
                remote.delete(checkpoint_id)
                del outcome.live[checkpoint_id]
                outcome.deleted.add(checkpoint_id)
            elif operation == "list":  # only this worker writes this job: exact
                listed = remote.list(job, limit=None).checkpoints
                assert {c.checkpoint_id for c in listed} == set(outcome.live)
            else:
                remote.gc()
            ledger.did(operation)
    return outcome


def stress(tmp_path: Path, workers: int, budget: int) -> Ledger:
    """Run ``workers`` clients of ``budget`` operations each, then check everything."""
    data_dir = tmp_path / "data"
    keys = [make_key(data_dir, "ops", "--admin"), make_key(data_dir, "acme")]
    env = {"CKPTSTORE_GC_GRACE": "0", "CKPTSTORE_GC_AFTER_DELETE_S": "0"}
    ledger = Ledger()
    with live_server(data_dir, workers=2, env=env) as base:
        with ThreadPoolExecutor(workers) as pool:
            futures = [
                pool.submit(run_worker, w, base, keys[w % 2], w % 2 == 0, budget, ledger)
                for w in range(workers)
            ]
            outcomes = [future.result() for future in futures]
        for outcome in outcomes:
            with client(base, outcome.key, ledger) as remote:
                for checkpoint_id, seed in outcome.live.items():
                    out = io.BytesIO()
                    remote.restore(checkpoint_id, out)
                    assert out.getvalue() == data_of(seed), checkpoint_id
                for checkpoint_id in outcome.deleted:
                    with pytest.raises(CheckpointNotFound):
                        remote.get(checkpoint_id)
        with client(base, keys[0], ledger) as remote:
            remote.gc()
    assert ledger.server_errors == [], ledger.statuses
    with CheckpointStore.open(data_dir) as store:
        report = store.verify(read_data=True)
        assert report.ok, report.findings
        assert store.stats().checkpoints == sum(len(o.live) for o in outcomes)
    assert sum(ledger.operations.values()) == workers * budget
    assert all(ledger.operations[op] for op in OPERATIONS), ledger.operations  # every kind ran
    return ledger


def test_clients_racing_gc_lose_nothing(tmp_path):
    ledger = stress(tmp_path, workers=4, budget=25)
    assert sum(ledger.statuses.values()) >= 200  # HTTP requests in all


@pytest.mark.soak
def test_clients_racing_gc_lose_nothing_longer(tmp_path):
    ledger = stress(tmp_path, workers=6, budget=80)
    assert sum(ledger.statuses.values()) >= 1000
