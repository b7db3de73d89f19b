"""Checkpoint references (store/refs.py): unique id prefixes and job aliases, per tenant."""

from __future__ import annotations

import pytest

from ckptstore.errors import (
    AmbiguousCheckpointId,
    CheckpointNotFound,
    CheckpointPinned,
    EndpointNameTaken,
    EndpointNotFound,
    InvalidArgument,
    UnknownAlias,
)
from ckptstore.store.refs import MIN_PREFIX_CHARS
from tests.conftest import restore_bytes


def put(store, job, cid, data=b"x" * 100, tenant="", **fields):
    return store.put(job, data, checkpoint_id=cid, tenant=tenant, **fields)


def test_a_unique_prefix_names_the_checkpoint_everywhere(store):
    ck = store.put("job", b"weights" * 1000)
    prefix = ck.checkpoint_id[:13]  # "ckpt_" and 8 hex digits, as the issue quotes it
    assert store.get(prefix).checkpoint_id == ck.checkpoint_id
    assert store.resolve(prefix) == ck.checkpoint_id
    assert restore_bytes(store, prefix) == b"weights" * 1000
    assert store.deploy(prefix, name="e", gpu_ids=[], worker_count=1).checkpoint_id == (
        ck.checkpoint_id
    )


def test_a_prefix_shorter_than_the_minimum_is_only_an_id(store):
    put(store, "job", "abcdefghij")
    with pytest.raises(CheckpointNotFound):
        store.get("abcdefghij"[: MIN_PREFIX_CHARS - 1])
    assert store.get("abcdefghij"[:MIN_PREFIX_CHARS]).checkpoint_id == "abcdefghij"


def test_a_whole_id_wins_over_the_ids_it_starts(store):
    put(store, "job", "run-00001")
    put(store, "job", "run-000010")
    assert store.get("run-00001").checkpoint_id == "run-00001"


def test_an_ambiguous_prefix_names_the_callers_matches_only(store):
    for n in range(8):
        put(store, "job", f"sharedck-{n}", tenant="a")
    put(store, "job", "sharedck-9", tenant="b")
    with pytest.raises(AmbiguousCheckpointId) as info:
        store.get("sharedck-", tenant="a")
    assert info.value.matches == [f"sharedck-{n}" for n in range(5)]
    assert "and more" in str(info.value)
    assert "sharedck-9" not in str(info.value) and info.value.exit_code == 13
    assert info.value.http_status == 422


def test_another_tenants_checkpoints_neither_match_nor_make_a_prefix_ambiguous(store):
    mine = put(store, "job", "ckpt_0000aaaa", tenant="a")
    put(store, "job", "ckpt_0000aaab", tenant="b")
    assert store.get("ckpt_0000aa", tenant="a").checkpoint_id == mine.checkpoint_id
    # b's checkpoint is not found by a's prefix of it, nor by its whole id
    for reference in ("ckpt_0000aaab", "ckpt_0000aaa"):
        with pytest.raises(CheckpointNotFound) as info:
            store.get(reference, tenant="c")
        assert info.value.checkpoint_id == reference
    with pytest.raises(CheckpointNotFound):
        store.delete("ckpt_0000aaab", tenant="a")


def test_job_aliases_follow_the_job(store, clock):
    first = store.put("job", b"a" * 1000, metrics={"validationLoss": 0.5})
    clock.advance(1)
    second = store.put("job", b"b" * 1000, metrics={"validationLoss": 0.9})
    clock.advance(1)
    store.create_pending("job", name="requested")  # pending: no alias names it
    assert store.resolve("job:latest") == second.checkpoint_id  # not the newer best copy
    best = store.get("job:best")
    assert best.type == "best" and best.parent_id == first.checkpoint_id
    with pytest.raises(CheckpointNotFound) as info:
        store.get("job:final")
    assert info.value.checkpoint_id == "job:final"
    clock.advance(1)
    final = store.put("job", b"c" * 1000, type="final")
    assert store.resolve("job:final") == final.checkpoint_id
    assert store.resolve("job:latest") == final.checkpoint_id
    assert restore_bytes(store, "job:latest") == b"c" * 1000


def test_aliases_are_per_tenant(store):
    put(store, "job", "theirs-1", tenant="b")
    with pytest.raises(CheckpointNotFound):
        store.get("job:latest", tenant="a")


@pytest.mark.parametrize("reference", ["job:newest", "job:", ":latest", "bad job:latest", ""])
def test_a_malformed_reference_is_bad_input(store, reference):
    with pytest.raises(InvalidArgument):
        store.get(reference)


def test_unknown_alias_lists_the_aliases(store):
    with pytest.raises(UnknownAlias, match="JOB:latest"):
        store.get("job:newest")


def test_an_endpoint_pins_the_checkpoint_an_alias_named_then(store, clock):
    first = store.put("job", b"a" * 1000)
    endpoint = store.deploy("job:latest", name="serve", gpu_ids=[], worker_count=1)
    clock.advance(1)
    store.put("job", b"b" * 1000)
    assert store.endpoint(endpoint.endpoint_id).checkpoint_id == first.checkpoint_id


def test_an_endpoint_is_re_pointed(store, clock):
    first = store.put("job", b"a" * 1000)
    endpoint = store.deploy(first.checkpoint_id, name="serve", gpu_ids=["g0"], worker_count=1)
    clock.advance(1)
    second = store.put("job", b"b" * 1000)
    moved = store.update_endpoint(endpoint.endpoint_id, checkpoint_id="job:latest")
    assert moved.checkpoint_id == second.checkpoint_id
    assert (moved.name, moved.gpu_ids, moved.worker_count) == ("serve", ["g0"], 1)
    assert store.endpoint(endpoint.endpoint_id) == moved
    store.delete(first.checkpoint_id)  # let go of
    with pytest.raises(CheckpointPinned):
        store.delete(second.checkpoint_id)


def test_endpoint_names_are_unique_per_tenant(store):
    put(store, "job", "ckpt-a", tenant="a")
    put(store, "job", "ckpt-b", tenant="b")
    store.deploy("ckpt-a", name="serve", gpu_ids=[], worker_count=1, tenant="a")
    with pytest.raises(EndpointNameTaken):
        store.deploy("ckpt-a", name="serve", gpu_ids=[], worker_count=1, tenant="a")
    other = store.deploy("ckpt-b", name="serve", gpu_ids=[], worker_count=1, tenant="b")
    with pytest.raises(EndpointNotFound):  # nor can a tenant re-point another's endpoint
        store.update_endpoint(other.endpoint_id, checkpoint_id="ckpt-a", tenant="a")
