"""torch.distributed.checkpoint save and load through ckptstore, in one process."""

from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from ckptstore.client import Client
from ckptstore.integrations.dcp import CkptStoreReader, CkptStoreWriter
from tests.server_helpers import make_server

# DCP says so when no process group is set up: one process is what these tests run
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


@pytest.fixture
def server_client(tmp_path):
    srv = make_server(tmp_path / "server")
    with srv.client:
        key = srv.acme["Authorization"].split()[1]
        with Client("http://testserver", key, http=srv.client) as client:
            yield client


def trained(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = model(torch.randn(8, 32)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def state_of(model, optimizer, step: int) -> dict:
    return {"model": model.state_dict(), "optim": optimizer.state_dict(), "extra": {"step": step}}


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
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


@pytest.mark.parametrize("where", ["store", "server"])
def test_save_then_load_round_trips_model_and_optimizer_state(where, store, server_client):
    target = store if where == "store" else server_client
    model, optimizer = trained(0)
    saved = state_of(model, optimizer, 3)
    writer = CkptStoreWriter(target, "job_dcp", step=3, metrics={"loss": 0.5})
    dcp.save(saved, storage_writer=writer, checkpoint_id="step-3")
    record = writer.record
    assert record is not None and record.status == "ready"
    assert (record.step, record.name, record.metrics) == (3, "step-3", {"loss": 0.5})

    other_model, other_optimizer = trained(1)  # different weights and moments, same shapes
    loaded = state_of(other_model, other_optimizer, 0)
    dcp.load(loaded, storage_reader=CkptStoreReader(target), checkpoint_id="job_dcp:latest")
    assert_same(loaded, saved)
    other_model.load_state_dict(loaded["model"])
    other_optimizer.load_state_dict(loaded["optim"])
    assert_same(other_model.state_dict(), model.state_dict())


def test_a_view_is_stored_as_its_own_elements(store):
    big = torch.arange(1_000_000, dtype=torch.float32)
    writer = CkptStoreWriter(store, "job_dcp")
    dcp.save({"slice": big[10:20]}, storage_writer=writer)
    assert writer.record.size_bytes < 100_000  # not the four megabytes under the view
    loaded = {"slice": torch.zeros(10)}
    dcp.load(loaded, storage_reader=CkptStoreReader(store, writer.record.checkpoint_id))
    assert torch.equal(loaded["slice"], big[10:20])


def test_saving_the_same_state_again_stores_almost_nothing(store):
    model, optimizer = trained(0)
    first = CkptStoreWriter(store, "job_dcp")
    dcp.save(state_of(model, optimizer, 3), storage_writer=first)
    second = CkptStoreWriter(store, "job_dcp")
    dcp.save(state_of(model, optimizer, 3), storage_writer=second)
    assert second.record.stored_bytes < first.record.stored_bytes / 10


def test_the_reader_refuses_a_checkpoint_dcp_did_not_write(store):
    from ckptstore import torch as ckpt_torch

    record = ckpt_torch.save({"weights": torch.ones(3)}, store, "job_dcp")
    # DCP gathers each rank's error into a CheckpointException, with its text
    with pytest.raises(CheckpointException, match="not written by CkptStoreWriter"):
        dcp.load(
            {"weights": torch.zeros(3)}, storage_reader=CkptStoreReader(store, record.checkpoint_id)
        )
