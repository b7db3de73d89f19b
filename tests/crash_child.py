"""Child process for the crash tests: one scenario, SIGKILLed at a chosen call.

Usage: python -m tests.crash_child STORE MODE TARGET CALL WHEN [OFFSET_S [SCALE [FIRST]]]
  MODE    ingest | rebase (tensor checkpoints, each rebasing its parent) | gc |
          upload (dedup-aware: missing, put_blocks, flush, commit) | pending
          (create_pending, then fill) | delete (every checkpoint of the job, one by
          one) | policy (best copies and retention, keepAutomatic = KEEP)
  TARGET  dotted attribute to wrap, e.g. ckptstore.store.catalog.sqlite:SQLiteCatalog.add_pack
  CALL    kill on this call number (1-based)
  WHEN    before | after the wrapped call runs
  OFFSET_S  added to the child's clock (0 by default)
  SCALE   multiplies the size of each checkpoint's data (1 by default)
  FIRST   the epoch of the first checkpoint the child stores (0 by default)

What the child was told is done, it prints as it learns it, one line each, so the
parent knows what was acknowledged before the kill: ``ack ID EPOCH`` once a
checkpoint is stored, ``pending ID`` once a pending one is recorded, ``deleted
ID`` once a delete returned.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time

from ckptstore import CheckpointStore
from ckptstore.store.policies import JobSettings
from tests.conftest import TEST_CONFIG, client_blocks, random_bytes

CHECKPOINTS = 5
REBASED_CHECKPOINTS = 3
KEEP = 2  # automatic checkpoints the policy scenario keeps


def data_for(epoch: int, scale: int = 1) -> bytes:
    """Checkpoint ``epoch``: a shared base with a fresh run inserted at a moving offset,
    so consecutive epochs share most of their blocks."""
    base = random_bytes(1_500_000 * scale, seed=1000)
    at = epoch * 100_000 * scale
    return base[:at] + random_bytes(300_000 * scale, seed=epoch) + base[at:]


def tensor_data_for(epoch: int) -> bytes:
    from ckptstore.testing.formats import safetensors_bytes
    from tests.test_deltas import model

    return safetensors_bytes(model(1, epoch))


def arm(target: str, call: int, when: str) -> None:
    module_name, _, attr_path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, attr = attr_path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    original = getattr(owner, attr)
    calls = 0

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == call and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attr, wrapper)


def say(*words: object) -> None:
    print(*words, flush=True)


def upload(store: CheckpointStore, epoch: int, scale: int) -> str:
    """One checkpoint the way a remote client sends it: only the blocks the store lacks."""
    blocks = client_blocks(store, data_for(epoch, scale))
    ids = [bid for bid, _ in blocks]
    with store.begin_upload("job", epoch=epoch) as up:
        missing = set(up.missing(ids))
        up.put_blocks([(bid, data, None, None) for bid, data in blocks if bid in missing])
        up.flush()
        return up.commit(ids).checkpoint_id


def run(store: CheckpointStore, mode: str, scale: int, first: int) -> None:
    epochs = range(first, first + CHECKPOINTS)
    if mode == "ingest":
        for epoch in epochs:
            say("ack", store.put("job", data_for(epoch, scale), epoch=epoch).checkpoint_id, epoch)
    elif mode == "rebase":
        for epoch in range(REBASED_CHECKPOINTS):
            say("ack", store.put("job", tensor_data_for(epoch), epoch=epoch).checkpoint_id, epoch)
        store.settle()
    elif mode == "upload":
        for epoch in epochs:
            say("ack", upload(store, epoch, scale), epoch)
    elif mode == "pending":
        for epoch in epochs:
            pending = store.create_pending("job", epoch=epoch)
            say("pending", pending.checkpoint_id)
            store.fill(pending.checkpoint_id, data_for(epoch, scale))
            say("ack", pending.checkpoint_id, epoch)
    elif mode == "delete":
        for record in store.list("job", order="asc", limit=None).checkpoints:
            store.delete(record.checkpoint_id)
            say("deleted", record.checkpoint_id)
    elif mode == "policy":
        store.set_job_settings("job", JobSettings(keep_automatic=KEEP))
        for epoch in epochs:
            loss = {"validationLoss": 1.0 / (epoch + 1)}  # each one is the new best
            record = store.put("job", data_for(epoch, scale), epoch=epoch, metrics=loss)
            say("ack", record.checkpoint_id, epoch)
    elif mode == "gc":
        store.gc()
    else:
        raise SystemExit(f"unknown mode {mode}")


def main() -> None:
    root, mode, target, call, when = sys.argv[1:6]
    offset = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    scale = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    first = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    arm(target, int(call), when)
    store = CheckpointStore.open(root, config=TEST_CONFIG, clock=lambda: time.time() + offset)
    run(store, mode, scale, first)
    store.close()
    say("finished")


if __name__ == "__main__":
    main()
