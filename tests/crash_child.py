"""Child process for the crash tests: ingest or GC, SIGKILLed at a chosen point.

Usage: python -m tests.crash_child STORE MODE TARGET CALL WHEN [CLOCK_OFFSET_S]
  MODE    ingest | rebase (tensor checkpoints, each rebasing its parent) | gc
  TARGET  dotted attribute to wrap, e.g. ckptstore.store.catalog.sqlite:SQLiteCatalog.add_pack
  CALL    kill on this call number (1-based)
  WHEN    before | after the wrapped call runs
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time

from ckptstore import CheckpointStore
from tests.conftest import TEST_CONFIG, random_bytes

CHECKPOINTS = 5
REBASED_CHECKPOINTS = 3


def data_for(epoch: int) -> bytes:
    base = random_bytes(1_500_000, seed=1000)
    return base[: epoch * 100_000] + random_bytes(300_000, seed=epoch) + base[epoch * 100_000 :]


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


def main() -> None:
    root, mode, target, call, when = sys.argv[1:6]
    offset = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    arm(target, int(call), when)
    store = CheckpointStore.open(root, config=TEST_CONFIG, clock=lambda: time.time() + offset)
    if mode == "ingest":
        for epoch in range(CHECKPOINTS):
            record = store.put("job", data_for(epoch), epoch=epoch)
            print(record.checkpoint_id, epoch, flush=True)
    elif mode == "rebase":
        for epoch in range(REBASED_CHECKPOINTS):
            record = store.put("job", tensor_data_for(epoch), epoch=epoch)
            print(record.checkpoint_id, epoch, flush=True)
        store.settle()
    else:
        store.gc()
    store.close()
    print("finished", flush=True)


if __name__ == "__main__":
    main()
