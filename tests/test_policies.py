"""Checkpoint types as the API defines them: best copies, retention, pending, tenants."""

from __future__ import annotations

import pytest

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CheckpointNotReady,
    CheckpointPinned,
    EndpointNotFound,
    InvalidArgument,
)
from ckptstore.store.ids import block_id
from ckptstore.store.policies import JobSettings, default_mode
from tests.conftest import client_blocks, random_bytes, restore_bytes

MB = 1_000_000


def types(store, job="job", tenant=""):
    page = store.list(job, limit=None, tenant=tenant)
    return sorted((r.type, r.epoch) for r in page.checkpoints)


def test_best_copy_follows_the_lowest_validation_loss(store):
    data = {e: random_bytes(MB, seed=e) for e in range(4)}
    for epoch, loss in [(0, 0.9), (1, 0.7), (2, 0.8), (3, 0.6)]:
        store.put("job", data[epoch], epoch=epoch, metrics={"validationLoss": loss})
        stored_after_put = store.stats().stored_bytes
    (best,) = store.list("job", types=("best",)).checkpoints
    assert (best.epoch, best.metrics["validationLoss"], best.name) == (
        3,
        0.6,
        "Best Validation - Epoch 3",
    )
    assert best.stored_bytes == 0 and store.stats().stored_bytes == stored_after_put
    assert restore_bytes(store, best.checkpoint_id) == data[3]
    assert types(store).count(("best", 3)) == 1 and len(types(store)) == 5


def test_accuracy_metric_prefers_higher_values(store):
    store.set_job_settings("job", JobSettings.from_dict({"bestMetric": "validationAccuracy"}))
    for epoch, acc in [(0, 0.5), (1, 0.8), (2, 0.7)]:
        store.put(
            "job", random_bytes(1000, seed=epoch), epoch=epoch, metrics={"validationAccuracy": acc}
        )
    (best,) = store.list("job", types=("best",)).checkpoints
    assert best.epoch == 1 and best.name == "Best validationAccuracy - Epoch 1"
    assert default_mode("validationAccuracy") == "max" and default_mode("loss") == "min"


def test_best_copy_of_a_pinned_best_is_kept_until_unpinned(store):
    store.put("job", b"a", epoch=0, metrics={"validationLoss": 0.9})
    (first_best,) = store.list("job", types=("best",)).checkpoints
    endpoint = store.deploy(first_best.checkpoint_id, name="serve", gpu_ids=[], worker_count=1)
    store.put("job", b"b", epoch=1, metrics={"validationLoss": 0.5})
    bests = store.list("job", types=("best",)).checkpoints
    assert {b.epoch for b in bests} == {0, 1}  # the served copy stays, the new best is added
    with pytest.raises(CheckpointPinned):
        store.delete(first_best.checkpoint_id)
    store.undeploy(endpoint.endpoint_id)
    store.delete(first_best.checkpoint_id)


def test_retention_keeps_newest_automatic_and_never_others(store, clock):
    store.set_job_settings("job", JobSettings(keep_automatic=2))
    store.put("job", b"final", type="final")
    store.put("job", b"manual", type="manual", name="Milestone")
    pinned = store.put("job", b"served", epoch=0)
    store.deploy(pinned.checkpoint_id, name="serve", gpu_ids=["rtx-4090"], worker_count=1)
    for epoch in range(1, 5):
        clock.advance(1)
        store.put("job", random_bytes(1000, seed=epoch), epoch=epoch)
    assert types(store) == [
        ("automatic", 0),
        ("automatic", 3),
        ("automatic", 4),
        ("final", None),
        ("manual", None),
    ]


def test_job_settings_validate_their_fields(store):
    with pytest.raises(InvalidArgument, match="keepAutomatic"):
        JobSettings.from_dict({"keepAutomatic": 0})
    with pytest.raises(InvalidArgument, match="bestMode"):
        JobSettings.from_dict({"bestMode": "up"})
    assert store.job_settings("job") == JobSettings()


def test_pending_checkpoint_filled_by_raw_data(store):
    pending = store.create_pending(
        "job", name="Manual Checkpoint - Good Performance", description="Saving model state"
    )
    assert (pending.status, pending.type) == ("pending", "manual")
    with pytest.raises(CheckpointNotReady):
        store.open_reader(pending.checkpoint_id)
    data = random_bytes(2 * MB, seed=3)
    filled = store.fill(pending.checkpoint_id, data)
    assert (filled.status, filled.name, filled.size_bytes) == ("ready", pending.name, len(data))
    assert filled.created_at == pending.created_at
    assert restore_bytes(store, pending.checkpoint_id) == data
    with pytest.raises(CheckpointExists):
        store.fill(pending.checkpoint_id, data)


def test_pending_checkpoint_filled_by_upload_across_requests(store):
    pending = store.create_pending("job", type="automatic", epoch=7)
    data = random_bytes(3 * MB, seed=4)
    ids, blocks = zip(*client_blocks(store, data), strict=True)
    ids, blocks = list(ids), list(blocks)
    # every call on a fresh Upload object, as separate HTTP requests would do
    assert store.resume_upload(pending.checkpoint_id).missing(ids) == ids
    for i in range(0, len(blocks), 3):
        upload = store.resume_upload(pending.checkpoint_id)
        for b in blocks[i : i + 3]:
            upload.put_block(block_id(b), b)
        upload.flush()
    record = store.resume_upload(pending.checkpoint_id).commit(ids)
    assert (record.status, record.epoch, record.name) == ("ready", 7, "Epoch 7 Checkpoint")
    assert restore_bytes(store, pending.checkpoint_id) == data


def test_tenants_never_see_each_other(store):
    mine = store.put("job", b"tenant a data", tenant="a")
    for call in (store.get, store.delete, store.open_reader):
        with pytest.raises(CheckpointNotFound):
            call(mine.checkpoint_id, tenant="b")
    assert store.list("job", tenant="b").total_count == 0
    assert store.jobs(tenant="b") == [] and store.jobs(tenant="a") == ["job"]
    endpoint = store.deploy(mine.checkpoint_id, name="e", gpu_ids=[], worker_count=1, tenant="a")
    with pytest.raises(EndpointNotFound):
        store.endpoint(endpoint.endpoint_id, tenant="b")
    with pytest.raises(CheckpointNotFound):
        store.deploy(mine.checkpoint_id, name="e", gpu_ids=[], worker_count=1, tenant="b")


def test_upload_does_not_reveal_other_tenants_blocks_nor_store_them_twice(store):
    data = random_bytes(2 * MB, seed=5)
    store.put("job", data, tenant="a")
    stored = store.stats().stored_bytes
    ids, blocks = zip(*client_blocks(store, data), strict=True)
    ids, blocks = list(ids), list(blocks)
    with store.begin_upload("job", tenant="b") as upload:
        assert upload.missing(ids) == ids  # tenant b learns nothing about tenant a's data
        for b in blocks:
            upload.put_block(block_id(b), b)
        record = upload.commit(ids)
    assert store.stats().stored_bytes == stored  # yet nothing was stored twice
    with store.open_reader(record.checkpoint_id, tenant="b") as reader:
        assert reader.read() == data
    with store.begin_upload("job", tenant="b") as again:
        assert again.missing(ids) == []  # now tenant b holds them itself
        again.abort()


def test_commit_cannot_probe_for_or_borrow_another_tenants_blocks(store):
    from ckptstore.errors import BlocksNotUploaded

    secret = random_bytes(MB, seed=77)
    store.put("job", secret, tenant="a")
    ids = [bid for bid, _ in client_blocks(store, secret)]
    with store.begin_upload("job", tenant="b") as upload, pytest.raises(BlocksNotUploaded) as info:
        upload.commit(ids)  # tenant b names tenant a's blocks without sending them
    assert len(info.value.block_ids) == len(set(ids))  # indistinguishable from absent ones
    assert store.list("job", tenant="b").total_count == 0
    with store.begin_upload("job", tenant="a") as own:
        assert own.commit(ids).size_bytes == len(secret)  # a tenant may name its own blocks
