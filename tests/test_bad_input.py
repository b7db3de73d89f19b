"""Bad input gets a specific error with a clear message and loses nothing."""

from __future__ import annotations

import pytest

from ckptstore.errors import (
    CheckpointExists,
    CheckpointNotFound,
    InvalidArgument,
    InvalidCheckpointType,
    InvalidJobId,
    InvalidLimit,
    UnknownSortKey,
)
from tests.conftest import random_bytes, restore_bytes


@pytest.mark.parametrize("call", ["get", "delete", "open_reader"])
def test_unknown_checkpoint_raises_not_found(store, call):
    with pytest.raises(CheckpointNotFound, match="ckpt_nope") as info:
        getattr(store, call)("ckpt_nope")
    assert info.value.checkpoint_id == "ckpt_nope"
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("job_id", ["", "a b", "../etc", "x" * 129, "-lead", None, 5])
def test_invalid_job_id_is_rejected(store, job_id):
    with pytest.raises(InvalidJobId, match="jobId"):
        store.put(job_id, b"data")
    with pytest.raises(InvalidJobId):
        store.list(job_id)


@pytest.mark.parametrize("checkpoint_id", ["", "a/b", "x" * 200, "ckpt id"])
def test_invalid_checkpoint_id_is_rejected(store, checkpoint_id):
    with pytest.raises(InvalidArgument, match="checkpointId"):
        store.get(checkpoint_id)


@pytest.mark.parametrize("limit", [0, -1, 10**9, True, "5", 2.5])
def test_out_of_range_limit_is_rejected(store, limit):
    with pytest.raises(InvalidLimit, match="limit") as info:
        store.list("job", limit=limit)
    assert info.value.parameter == "limit"


def test_unknown_sort_key_lists_what_is_allowed(store):
    store.put("job", b"x", metrics={"validationLoss": 0.5})  # also makes the best copy
    with pytest.raises(UnknownSortKey) as info:
        store.list("job", sort_by="validationLos")
    message = str(info.value)
    assert "validationLos" in message and "validationLoss" in message and "createdAt" in message
    assert store.list("job", sort_by="validationLoss").total_count == 2
    assert store.list("job", sort_by="accuracy").total_count == 2  # a seed key, always allowed


def test_bad_sort_order_is_rejected(store):
    with pytest.raises(InvalidArgument, match="sortOrder"):
        store.list("job", order="up")


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"type": "weekly"}, "type"),
        ({"epoch": -1}, "epoch"),
        ({"step": "3"}, "step"),
        ({"metrics": {"loss": float("nan")}}, "metrics.loss"),
        ({"metrics": {"bad key!": 1.0}}, "metrics"),
        ({"metrics": {"loss": "low"}}, "metrics.loss"),
    ],
)
def test_invalid_checkpoint_fields_are_rejected_before_any_write(store, kwargs, parameter):
    with pytest.raises(InvalidArgument) as info:
        store.put("job", random_bytes(100_000), **kwargs)
    assert info.value.parameter == parameter
    assert store.stats().stored_bytes == 0
    if "type" in kwargs:
        assert isinstance(info.value, InvalidCheckpointType)


@pytest.mark.parametrize("source", [12345, object(), [1, 2, 3]])
def test_unsupported_source_is_rejected(store, source):
    with pytest.raises(InvalidArgument, match="source"):
        store.put("job", source)


def test_missing_path_is_rejected(store, tmp_path):
    with pytest.raises(InvalidArgument, match="readable regular file"):
        store.put("job", tmp_path / "absent.bin")


def test_failing_stream_leaves_no_checkpoint_and_stored_data_intact(store, clock):
    kept = store.put("job", random_bytes(2_000_000, seed=1))

    def broken():
        yield random_bytes(3_000_000, seed=2)
        raise OSError("network went away")

    with pytest.raises(OSError, match="network went away"):
        store.put("job", broken())
    assert store.list("job").total_count == 1
    clock.advance(3600 * 24)
    store.gc()  # the half-ingested blocks are garbage, the kept checkpoint is not
    assert restore_bytes(store, kept.checkpoint_id) == random_bytes(2_000_000, seed=1)
    assert store.verify(read_data=True).ok


def test_duplicate_checkpoint_id_is_rejected(store):
    store.put("job", b"one", checkpoint_id="ckpt_fixed")
    with pytest.raises(CheckpointExists, match="ckpt_fixed"):
        store.put("job", b"two", checkpoint_id="ckpt_fixed")
    assert restore_bytes(store, "ckpt_fixed") == b"one"
