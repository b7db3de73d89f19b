"""torch save/load straight into a store or server, and the training-job helper."""

from __future__ import annotations

import pytest
import torch

import ckptstore
from ckptstore import torch as ckpt_torch
from ckptstore.client import Client
from tests.server_helpers import make_server


def training_state(seed: int = 0, steps: int = 2) -> dict:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = model(torch.randn(16, 64)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": steps}


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) and a.dtype == b.dtype
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    with srv.client:
        key = srv.acme["Authorization"].split()[1]
        with Client("http://testserver", key, http=srv.client) as client:
            yield srv, client


def test_save_and_load_round_trip_in_an_embedded_store(store):
    state = training_state()
    record = ckpt_torch.save(state, store, "job_t", epoch=1, metrics={"loss": 0.3})
    assert record.status == "ready" and record.epoch == 1
    assert_same(ckpt_torch.load(store, record.checkpoint_id, map_location="cpu"), state)


def test_save_and_load_round_trip_through_a_server(server):
    _, client = server
    state = training_state(seed=1)
    record = ckpt_torch.save(state, client, "job_t", epoch=2)
    assert_same(ckpt_torch.load(client, record.checkpoint_id, map_location="cpu"), state)


def test_saving_the_same_state_again_stores_nothing_new(store):
    state = training_state(seed=2)
    ckpt_torch.save(state, store, "job_t")
    again = ckpt_torch.save(state, store, "job_t")
    assert again.stored_bytes == 0


def test_a_failing_torch_save_commits_nothing(store):
    with pytest.raises(Exception, match="pickle|lambda|Can't"):
        ckpt_torch.save({"fn": lambda x: x}, store, "job_t")
    assert store.list("job_t").total_count == 0


def test_job_helper_with_manual_request_fulfilled_end_to_end(server):
    srv, client = server
    job = ckptstore.job(client, "job_x", best_metric="validationLoss", keep_automatic=2)
    state = training_state(seed=3)
    for epoch, loss in enumerate([0.9, 0.6, 0.7], start=1):
        job.save(state, epoch=epoch, step=epoch * 10, metrics={"validationLoss": loss})
    # someone asks for a manual checkpoint through the API while the job runs
    r = srv.client.post(
        "/v2/training/jobs/job_x/checkpoints",
        headers=srv.acme,
        json={"name": "Experiment Milestone", "description": "before lr change"},
    )
    assert r.status_code == 201 and r.json()["status"] == "pending"
    (request,) = job.pending_manual()
    assert request.name == "Experiment Milestone"
    (filled,) = job.fulfil_pending(state, epoch=3, step=35, metrics={"validationLoss": 0.65})
    assert filled.status == "ready" and job.pending_manual() == []
    assert (filled.epoch, filled.step, filled.metrics) == (3, 35, {"validationLoss": 0.65})
    final = job.finish(state, epoch=3)
    kinds = sorted((c.type, c.epoch) for c in client.list("job_x", limit=None).checkpoints)
    assert kinds == [
        ("automatic", 2),
        ("automatic", 3),
        ("best", 2),
        ("final", 3),
        ("manual", 3),
    ]
    assert_same(job.load(final.checkpoint_id, map_location="cpu"), state)
    assert_same(job.load(filled.checkpoint_id), state)
