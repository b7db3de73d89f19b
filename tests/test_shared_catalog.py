"""Several processes on one PostgreSQL catalog and one pack directory: two servers
share checkpoints, and the catalog's GC lock holds across stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckptstore import CheckpointStore
from ckptstore.client import Client
from ckptstore.errors import CheckpointNotFound
from ckptstore.store.gc import GcReport
from tests.conftest import TEST_CONFIG, random_bytes

BIN = Path(sys.executable).parent / "ckptstore"
MB = 1_000_000


def test_two_servers_on_one_catalog_share_checkpoints(postgres_url: str, tmp_path: Path) -> None:
    from ckptstore.testing.live_server import live_server

    data_dir = tmp_path / "data"
    env = {**os.environ, "CKPTSTORE_CATALOG": postgres_url}
    made = subprocess.run(
        [str(BIN), "keys", "create", "--tenant", "acme", "--data", str(data_dir), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    key = json.loads(made.stdout)["key"]
    assert not (data_dir / "catalog.sqlite").exists()  # the key is in PostgreSQL
    data = random_bytes(3 * MB, seed=18)
    with (
        live_server(data_dir, env={"CKPTSTORE_CATALOG": postgres_url}) as first,
        live_server(data_dir, env={"CKPTSTORE_CATALOG": postgres_url}) as second,
        Client(first, key) as one,
        Client(second, key) as other,
    ):
        assert first != second
        pushed = one.put("job_shared", data, epoch=2, metrics={"loss": 0.25})
        (listed,) = other.list("job_shared").checkpoints
        assert listed.checkpoint_id == pushed.checkpoint_id and listed.epoch == 2
        with other.open_reader(pushed.checkpoint_id) as reader:
            assert reader.read() == data
        again = other.put("job_shared", data, epoch=3)  # deduplicated against the first
        assert one.stats().checkpoints == 2
        other.delete(pushed.checkpoint_id)
        with pytest.raises(CheckpointNotFound):
            one.get(pushed.checkpoint_id)
        with one.open_reader(again.checkpoint_id) as reader:
            assert reader.read() == data


def test_gc_lock_is_held_across_stores_on_one_catalog(postgres_url: str, tmp_path: Path) -> None:
    with (
        CheckpointStore.open(tmp_path / "a", catalog=postgres_url, config=TEST_CONFIG) as a,
        CheckpointStore.open(tmp_path / "b", catalog=postgres_url, config=TEST_CONFIG) as b,
    ):
        ran: list[str] = []

        def work_b() -> GcReport:
            ran.append("b")
            return GcReport()

        def work_a() -> GcReport:
            ran.append("a")
            assert b._gc_lock.run(work_b, wait=False) is None  # a holds it: b runs nothing
            return GcReport()

        assert a._gc_lock.run(work_a, wait=True) is not None
        assert ran == ["a"]
        assert b._gc_lock.run(work_b, wait=False) is not None  # let go: b takes it now
        assert ran == ["a", "b"]


def test_cli_commands_open_the_catalog_named_by_catalog(postgres_url: str, tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    src.write_bytes(random_bytes(MB, seed=19))

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(BIN), *args, "--store", str(tmp_path / "store"), "--catalog", postgres_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    pushed = json.loads(cli("push", str(src), "--job", "job_cli", "--json"))
    listed = json.loads(cli("ls", "job_cli", "--json"))
    assert [c["checkpointId"] for c in listed["checkpoints"]] == [pushed["checkpointId"]]
    assert not (tmp_path / "store" / "catalog.sqlite").exists()
    with CheckpointStore.open(tmp_path / "store", catalog=postgres_url) as store:
        assert store.get(pushed["checkpointId"]).job_id == "job_cli"


def _writer(root: str, catalog: str, worker: int, rounds: int, out: str) -> None:
    """One process: puts overlapping data (a shared part and one of its own) into its
    job; records what it acknowledged."""
    acknowledged = {}
    with CheckpointStore.open(Path(root), catalog=catalog, config=TEST_CONFIG) as store:
        shared = random_bytes(600_000, seed=500)
        for step in range(rounds):
            data = shared + random_bytes(200_000, seed=worker * 1000 + step)
            record = store.put(f"job_{worker}", data, step=step)
            acknowledged[record.checkpoint_id] = data.hex()
        store.settle()
    Path(out).write_text(json.dumps(acknowledged))


def _reaper(root: str, catalog: str, wanted: int, out: str) -> None:
    """One process: deletes the oldest checkpoint of each job as the writers make them,
    and runs GC, until it has deleted ``wanted`` (or the writers are long done)."""
    import time

    deleted: list[str] = []
    with CheckpointStore.open(Path(root), catalog=catalog, config=TEST_CONFIG) as store:
        for _ in range(3000):
            if len(deleted) >= wanted:
                break
            time.sleep(0.01)  # another process's turn: this one polls the catalog
            for job in store.jobs():
                page = store.list(job, limit=None, order="asc")
                if len(page.checkpoints) > 1:  # the oldest of each job goes
                    oldest = page.checkpoints[0].checkpoint_id
                    store.delete(oldest)
                    deleted.append(oldest)
            store.gc()
    Path(out).write_text(json.dumps(deleted))


def test_processes_sharing_a_catalog_lose_nothing_acknowledged(
    postgres_url: str, tmp_path: Path
) -> None:
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    root = str(tmp_path / "store")
    CheckpointStore.open(Path(root), catalog=postgres_url).close()  # one migration first
    writers = [
        spawn.Process(target=_writer, args=(root, postgres_url, w, 4, f"{tmp_path}/w{w}.json"))
        for w in range(3)
    ]
    reaper = spawn.Process(target=_reaper, args=(root, postgres_url, 4, f"{tmp_path}/r.json"))
    for process in [*writers, reaper]:
        process.start()
    for process in [*writers, reaper]:
        process.join(timeout=300)
        assert process.exitcode == 0
    acknowledged: dict[str, str] = {}
    for w in range(3):
        acknowledged |= json.loads(Path(f"{tmp_path}/w{w}.json").read_text())
    deleted = set(json.loads(Path(f"{tmp_path}/r.json").read_text()))
    assert len(acknowledged) == 12 and len(deleted) >= 4 and deleted <= set(acknowledged)
    with CheckpointStore.open(Path(root), catalog=postgres_url, config=TEST_CONFIG) as store:
        store.settle()
        for checkpoint_id, data in acknowledged.items():
            if checkpoint_id in deleted:
                with pytest.raises(CheckpointNotFound):
                    store.get(checkpoint_id)
            else:
                with store.open_reader(checkpoint_id) as reader:
                    assert reader.read().hex() == data
        assert store.verify(read_data=True).ok
        assert store.stats().pending_rebases == 0
