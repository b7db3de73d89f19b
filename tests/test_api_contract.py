"""One suite, two implementations of CheckpointAPI: the embedded store and a Client
talking to the server in-process. Every test must pass on both, with the same results
and the same exception classes and fields.

Types: ``mypy tests/test_api_contract.py`` checks that both satisfy the Protocol
(the two ``_is_an_api`` functions below).
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ckptstore import CheckpointAPI, CheckpointStore, Client
from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointNotReady,
    CheckpointPinned,
    CkptStoreError,
    EndpointNameTaken,
    EndpointNotFound,
    InvalidArgument,
    InvalidCheckpointType,
    InvalidJobId,
    InvalidLimit,
    NotFound,
    UnknownAlias,
    UnknownSortKey,
)
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.gc import GcReport
from ckptstore.store.policies import JobSettings
from ckptstore.testing.clock import FakeClock
from tests.conftest import TEST_CONFIG, random_bytes
from tests.server_helpers import JOB, make_server

DATA = random_bytes(300_000, seed=5)


def _store_is_an_api(store: CheckpointStore) -> CheckpointAPI:
    return store


def _client_is_an_api(client: Client) -> CheckpointAPI:
    return client


@dataclass
class Target:
    api: CheckpointAPI
    clock: FakeClock
    settle: Callable[[], None]  # waits for the store's (the server's) background work


def without_digest(record: CheckpointRecord) -> CheckpointRecord:
    """A record as put returns it on both sides: a server states the SHA-256 of an
    upload only once it has read the blocks back, after the commit."""
    return replace(record, sha256=None)


@contextmanager
def open_target(side: str, root: Path, catalog: str | None = None) -> Iterator[Target]:
    """The embedded store (its catalog at ``catalog``, else SQLite), or a Client on the
    in-process server (tenant acme)."""
    if side == "store":
        clock = FakeClock()
        with CheckpointStore.open(
            root / "store", catalog=catalog, config=TEST_CONFIG, clock=clock
        ) as store:
            yield Target(store, clock, store.settle)
        return
    server = make_server(root)
    key = server.acme["Authorization"].split()[1]
    with (
        server.client,
        Client("http://testserver", key, http=server.client, sleep=lambda s: None) as client,
    ):
        yield Target(client, server.clock, server.store.settle)


# The store side runs on both catalogs; the server's on SQLite (test_shared_catalog runs
# servers on PostgreSQL).
@pytest.fixture(params=["store", "store-postgres", "client"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    side, _, catalog_kind = request.param.partition("-")
    catalog = request.getfixturevalue("postgres_url") if catalog_kind == "postgres" else None
    with open_target(side, tmp_path, catalog) as handle:
        yield handle


def saved(target: Target, data: bytes = DATA, **fields: Any) -> CheckpointRecord:
    target.clock.advance(10)  # distinct creation times, so the order is defined
    record = target.api.put(JOB, data, **fields)
    target.settle()  # a server states an upload's SHA-256 once it has read it back
    assert without_digest(record) == without_digest(target.api.get(record.checkpoint_id))
    return target.api.get(record.checkpoint_id)


@pytest.mark.parametrize("name", sorted(n for n in vars(CheckpointAPI) if not n.startswith("_")))
def test_api_both_sides_take_the_protocols_parameters(name: str) -> None:
    wanted = inspect.signature(getattr(CheckpointAPI, name)).parameters
    for implementation in (CheckpointStore, Client):
        have = inspect.signature(getattr(implementation, name)).parameters
        for parameter in wanted.values():
            assert parameter.name in have, (implementation, name, parameter.name)
            assert have[parameter.name].kind == parameter.kind
            assert have[parameter.name].default == parameter.default
        for extra in set(have) - set(wanted):
            assert have[extra].default is not inspect.Parameter.empty, (implementation, extra)


def test_api_put_then_get_list_and_read_back(target: Target, tmp_path: Path) -> None:
    api = target.api
    record = saved(target, epoch=3, step=1200, metrics={"loss": 0.5})
    assert without_digest(api.get(record.checkpoint_id)) == without_digest(record)
    assert (record.status, record.type, record.name, record.size_bytes) == (
        "ready",
        "automatic",
        "Epoch 3 Checkpoint",
        len(DATA),
    )
    listed = [without_digest(r) for r in api.list(JOB).checkpoints]
    assert listed == [without_digest(record)] and api.jobs() == [JOB]
    with api.open_reader(record.checkpoint_id) as reader:
        reader.seek(1000)
        assert reader.read(500) == DATA[1000:1500]
    assert api.restore(record.checkpoint_id, tmp_path / "out.bin") == len(DATA)
    assert (tmp_path / "out.bin").read_bytes() == DATA
    buffer = io.BytesIO()
    assert api.restore(record.checkpoint_id, buffer) == len(DATA)
    assert buffer.getvalue() == DATA


def test_api_lists_sorted_filtered_and_counted(target: Target) -> None:
    api = target.api
    losses = [0.9, 0.4, 0.7]
    made = [
        saved(target, bytes([i]) * 1000, epoch=i, metrics={"validationLoss": v})
        for i, v in enumerate(losses)
    ]
    page = api.list(JOB, sort_by="validationLoss", order="asc", limit=None, types=("automatic",))
    assert [r.checkpoint_id for r in page.checkpoints] == [
        made[1].checkpoint_id,
        made[2].checkpoint_id,
        made[0].checkpoint_id,
    ]
    assert page.total_count == 3
    (best,) = api.list(JOB, types=("best",)).checkpoints
    assert best.parent_id == made[1].checkpoint_id and best.metrics == made[1].metrics
    newest_two = api.list(JOB, sort_by="epoch", limit=2, types=("automatic", "best"))
    assert [r.epoch for r in newest_two.checkpoints] == [2, 1]
    assert newest_two.total_count == 4
    summary = api.job_summary(JOB)
    assert (summary.best, summary.latest) == (best, made[2])
    assert (summary.total_count, summary.total_size_bytes) == (4, 4000)


def test_api_pages_by_cursor_and_lists_everything_without_a_limit(target: Target) -> None:
    api = target.api
    made = [saved(target, bytes([i]) * 100, epoch=i, metrics={"loss": i / 10}) for i in range(7)]
    everything = api.list(JOB, sort_by="loss", order="asc", limit=None, types=("automatic",))
    assert [r.checkpoint_id for r in everything.checkpoints] == [r.checkpoint_id for r in made]
    assert everything.next_cursor is None
    seen, cursor = [], None
    while True:
        page = api.list(
            JOB, sort_by="loss", order="asc", limit=3, types=("automatic",), cursor=cursor
        )
        seen += [r.checkpoint_id for r in page.checkpoints]
        assert page.total_count == 7
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [r.checkpoint_id for r in made]
    with pytest.raises(InvalidArgument):
        api.list(JOB, cursor="not-a-cursor")


def test_api_delete_then_not_found_on_both_sides(target: Target) -> None:
    api = target.api
    record = saved(target)
    deleted = api.delete(record.checkpoint_id)
    assert deleted.checkpoint_id == record.checkpoint_id and deleted.job_id == JOB
    for call in (api.get, api.delete, api.open_reader):
        with pytest.raises(CheckpointNotFound) as info:
            call(record.checkpoint_id)
        assert info.value.checkpoint_id == record.checkpoint_id
        assert isinstance(info.value, NotFound | KeyError)
        assert str(info.value) == f"checkpoint {record.checkpoint_id!r} not found"
    assert api.list(JOB).total_count == 0
    assert type(api.gc()) is GcReport


def test_api_pending_checkpoint_fills_once(target: Target) -> None:
    api = target.api
    pending = api.create_pending(JOB, name="Manual Checkpoint - Good", epoch=4)
    assert (pending.status, pending.type, pending.size_bytes) == ("pending", "manual", 0)
    with pytest.raises(CheckpointNotReady):
        api.open_reader(pending.checkpoint_id)
    ready = api.fill(pending.checkpoint_id, DATA)
    assert (ready.status, ready.name, ready.size_bytes) == ("ready", pending.name, len(DATA))
    with pytest.raises(CheckpointExists) as info:
        api.fill(pending.checkpoint_id, b"again")
    assert info.value.checkpoint_id == pending.checkpoint_id


def test_api_settings_round_trip_and_drive_retention(target: Target) -> None:
    api = target.api
    assert api.job_settings(JOB) == JobSettings()
    settings = JobSettings(best_metric="accuracy", best_mode="max", keep_automatic=2)
    assert api.set_job_settings(JOB, settings) == settings
    assert api.job_settings(JOB) == settings
    for i in range(4):
        saved(target, bytes([i]) * 2000, epoch=i, metrics={"accuracy": i / 10})
    automatic = api.list(JOB, types=("automatic",)).checkpoints
    assert [r.epoch for r in automatic] == [3, 2]
    (best,) = api.list(JOB, types=("best",)).checkpoints
    assert best.epoch == 3


def test_api_endpoints_pin_their_checkpoint(target: Target) -> None:
    api = target.api
    record = saved(target)
    endpoint = api.deploy(record.checkpoint_id, name="serve", gpu_ids=["a100"], worker_count=2)
    assert (endpoint.checkpoint_id, endpoint.gpu_ids, endpoint.worker_count) == (
        record.checkpoint_id,
        ["a100"],
        2,
    )
    assert api.endpoint(endpoint.endpoint_id) == endpoint and api.endpoints() == [endpoint]
    with pytest.raises(CheckpointPinned) as info:
        api.delete(record.checkpoint_id)
    assert info.value.endpoint_ids == [endpoint.endpoint_id]
    api.undeploy(endpoint.endpoint_id)
    with pytest.raises(EndpointNotFound) as missing:
        api.endpoint(endpoint.endpoint_id)
    assert missing.value.endpoint_id == endpoint.endpoint_id
    api.delete(record.checkpoint_id)


def test_api_references_name_checkpoints_on_both_sides(target: Target, tmp_path: Path) -> None:
    api = target.api
    first = saved(target, b"first" * 1000, metrics={"validationLoss": 0.2})
    latest = saved(target, b"latest" * 1000, metrics={"validationLoss": 0.9})
    prefix = latest.checkpoint_id[:13]
    assert api.resolve(prefix) == api.resolve(f"{JOB}:latest") == latest.checkpoint_id
    assert api.get(prefix) == latest
    best = api.get(f"{JOB}:best")
    assert best.type == "best" and best.parent_id == first.checkpoint_id
    assert api.restore(f"{JOB}:latest", tmp_path / "latest.bin") == len(b"latest" * 1000)
    assert (tmp_path / "latest.bin").read_bytes() == b"latest" * 1000
    with api.open_reader(prefix) as reader:
        assert reader.read() == b"latest" * 1000
    with pytest.raises(CheckpointNotFound) as missing:
        api.get(f"{JOB}:final")
    assert missing.value.checkpoint_id == f"{JOB}:final"
    with pytest.raises(UnknownAlias) as unknown:
        api.get(f"{JOB}:newest")
    assert (unknown.value.parameter, unknown.value.value) == ("checkpointId", f"{JOB}:newest")
    assert api.delete(prefix).checkpoint_id == latest.checkpoint_id
    assert api.resolve(f"{JOB}:latest") == first.checkpoint_id


def test_api_endpoints_are_re_pointed_and_named_once(target: Target) -> None:
    api = target.api
    first = saved(target, b"a" * 1000)
    endpoint = api.deploy(f"{JOB}:latest", name="serve", gpu_ids=["a100"], worker_count=1)
    assert endpoint.checkpoint_id == first.checkpoint_id
    with pytest.raises(EndpointNameTaken) as taken:
        api.deploy(first.checkpoint_id, name="serve", gpu_ids=[], worker_count=1)
    assert taken.value.name == "serve"
    second = saved(target, b"b" * 1000)
    moved = api.update_endpoint(endpoint.endpoint_id, checkpoint_id=f"{JOB}:latest")
    assert moved == replace(endpoint, checkpoint_id=second.checkpoint_id)
    assert api.endpoint(endpoint.endpoint_id) == moved
    api.delete(first.checkpoint_id)  # no longer pinned
    with pytest.raises(CheckpointPinned):
        api.delete(second.checkpoint_id)
    renamed = api.update_endpoint(endpoint.endpoint_id, name="serve-2", worker_count=3)
    assert (renamed.name, renamed.worker_count, renamed.checkpoint_id) == (
        "serve-2",
        3,
        second.checkpoint_id,
    )
    with pytest.raises(EndpointNotFound):
        api.update_endpoint("ep_0000000000000000", name="x")


def test_api_gc_takes_a_grace_period_for_one_run(target: Target) -> None:
    api = target.api
    record = saved(target, random_bytes(200_000, seed=9))
    api.delete(record.checkpoint_id)
    assert api.gc().blocks_removed == 0  # inside the store's grace period
    assert api.gc(grace_s=0).blocks_removed > 0
    with pytest.raises(InvalidArgument):
        api.gc(grace_s=-1)


BAD_CALLS: list[tuple[str, Callable[[CheckpointAPI], object], type[CkptStoreError], str]] = [
    ("job id", lambda api: api.list("bad job!"), InvalidJobId, "jobId"),
    ("sort key", lambda api: api.list(JOB, sort_by="bogus key"), UnknownSortKey, "sortBy"),
    ("order", lambda api: api.list(JOB, order="up"), InvalidArgument, "sortOrder"),
    ("type filter", lambda api: api.list(JOB, types=("weekly",)), InvalidCheckpointType, "type"),
    ("limit", lambda api: api.list(JOB, limit=0), InvalidLimit, "limit"),
    ("put type", lambda api: api.put(JOB, b"x", type="weekly"), InvalidCheckpointType, "type"),
    ("epoch", lambda api: api.put(JOB, b"x", epoch=-1), InvalidArgument, "epoch"),
    ("checkpoint id", lambda api: api.get("bad id!"), InvalidArgument, "checkpointId"),
]


@pytest.mark.parametrize(
    "call, error, parameter", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_api_bad_input_raises_the_same_class_naming_the_parameter(
    target: Target,
    call: Callable[[CheckpointAPI], object],
    error: type[CkptStoreError],
    parameter: str,
) -> None:
    saved(target, metrics={"loss": 0.5})
    with pytest.raises(error) as info:
        call(target.api)
    assert type(info.value) is error and isinstance(info.value, ValueError)
    assert isinstance(info.value, InvalidArgument) and info.value.parameter == parameter
    assert (info.value.http_status, info.value.exit_code) == (422, 2)


def test_api_records_compare_equal_across_sides(tmp_path: Path) -> None:
    """The same calls on both sides give equal records, ids aside (also in the best
    copy's description), and stored bytes: a store's put and a client's upload encode
    the same blocks by different paths."""
    results = []
    for side in ("store", "client"):
        with open_target(side, tmp_path / side) as handle:
            first = saved(handle, epoch=1, metrics={"validationLoss": 0.3})
            (best,) = handle.api.list(JOB, types=("best",)).checkpoints
            assert best.parent_id == first.checkpoint_id
            assert (
                best.description == f"Best validationLoss so far: a copy of {first.checkpoint_id}"
            )
            results.append(
                [
                    replace(r, checkpoint_id="", parent_id=None, description=None, stored_bytes=0)
                    for r in (first, best)
                ]
            )
    assert results[0] == results[1]


def test_api_a_pending_checkpoint_is_filled_with_where_training_was(target: Target) -> None:
    api = target.api
    request = api.create_pending(JOB, name="before LR change")
    assert (request.epoch, request.step, request.metrics) == (None, None, {})
    filled = api.fill(
        request.checkpoint_id, b"state" * 100, epoch=7, step=700, metrics={"loss": 0.3}
    )
    assert (filled.epoch, filled.step, filled.metrics) == (7, 700, {"loss": 0.3})
    assert filled.name == "before LR change"
    assert without_digest(api.get(request.checkpoint_id)) == without_digest(filled)
    other = api.create_pending(JOB)
    with pytest.raises(InvalidArgument) as bad:
        api.fill(other.checkpoint_id, b"x", epoch=-1)
    assert bad.value.parameter == "epoch"
    assert api.get(other.checkpoint_id).status == "pending"


def test_api_folders_put_list_read_and_restore_alike(target: Target, tmp_path: Path) -> None:
    import hashlib
    import subprocess

    from tests.test_cli import sample_folder

    api = target.api
    folder = sample_folder(tmp_path / "ckdir")
    record = api.put(JOB, folder, epoch=1)
    assert (record.layout, record.size_bytes) == ("tree", 1_200_020)
    assert without_digest(api.get(record.checkpoint_id)) == without_digest(record)
    target.settle()
    files = api.files(record.checkpoint_id)
    assert [f.path for f in files][:2] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    for f in files:
        assert f.sha256 == hashlib.sha256((folder / f.path).read_bytes()).hexdigest()
    with api.open_reader(record.checkpoint_id, path="optimizer.pt") as reader:
        assert reader.read() == (folder / "optimizer.pt").read_bytes()
    with pytest.raises(InvalidArgument):
        api.open_reader(record.checkpoint_id)  # a folder: which file?
    assert api.restore(record.checkpoint_id, tmp_path / "out") == record.size_bytes
    assert subprocess.run(["diff", "-r", str(folder), str(tmp_path / "out")]).returncode == 0
    single = api.put(JOB, DATA, file_name="weights.bin")
    assert [f.path for f in api.files(single.checkpoint_id)] == ["weights.bin"]
    target.settle()
    assert api.get(single.checkpoint_id).sha256 == hashlib.sha256(DATA).hexdigest()
