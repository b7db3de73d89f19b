"""JOB:latest as the integrations resolve it: the newest ready checkpoint, best copies aside."""

from __future__ import annotations

import pytest

from ckptstore.errors import CheckpointNotFound
from ckptstore.integrations.references import resolve
from ckptstore.store.policies import JobSettings


def test_latest_skips_pending_checkpoints_and_best_copies(store, clock):
    store.set_job_settings("job_r", JobSettings(best_metric="loss"))
    older = store.put("job_r", b"a" * 1000, metrics={"loss": 2.0})
    clock.advance(1)
    newest = store.put("job_r", b"b" * 1000, metrics={"loss": 1.0})  # makes a best copy after it
    clock.advance(1)
    store.create_pending("job_r")  # requested, not filled
    assert store.job_summary("job_r").best.created_at >= newest.created_at
    assert resolve(store, "job_r:latest") == newest.checkpoint_id
    assert resolve(store, older.checkpoint_id) == older.checkpoint_id


def test_latest_of_a_job_without_checkpoints_is_not_found(store):
    with pytest.raises(CheckpointNotFound):
        resolve(store, "job_none:latest")
