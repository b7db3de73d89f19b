"""Several threads and several processes ingesting into one store at once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ckptstore import CheckpointStore
from ckptstore.store.rebase import chain_depths
from tests.conftest import TEST_CONFIG, random_bytes, restore_bytes

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
SHARED = 2 * MB


def overlapping(i: int) -> bytes:
    """Every writer's data shares the same prefix, so writers race to store it."""
    return random_bytes(SHARED, seed=500) + random_bytes(MB, seed=600 + i)


def test_threads_ingesting_overlapping_data(store):
    with ThreadPoolExecutor(4) as pool:
        records = list(pool.map(lambda i: store.put("job", overlapping(i), epoch=i), range(8)))
    for i, record in enumerate(records):
        assert restore_bytes(store, record.checkpoint_id) == overlapping(i)
    assert store.verify(read_data=True).ok
    assert store.stats().unique_raw_bytes < SHARED + 8 * 1.4 * MB


CHILD = """
import sys
from ckptstore import CheckpointStore
from tests.conftest import TEST_CONFIG
from tests.test_concurrency import overlapping
store = CheckpointStore.open(sys.argv[1], config=TEST_CONFIG)
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 3):
    print(store.put("job", overlapping(i), epoch=i).checkpoint_id, i, flush=True)
store.close()
"""


def run_children(script: str, store_dir: Path, starts: tuple[int, ...]) -> dict[str, int]:
    """Run ``script`` once per start at once; the checkpoint ids they printed, with the
    number each printed beside it."""
    CheckpointStore.open(store_dir, config=TEST_CONFIG).close()  # create it once
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(store_dir), str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in starts
    ]
    written: dict[str, int] = {}
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "failed" not in err, err
        written.update((line.split()[0], int(line.split()[1])) for line in out.splitlines())
    return written


def test_processes_ingesting_into_one_store(tmp_path):
    store_dir = tmp_path / "store"
    written = run_children(CHILD, store_dir, (0, 3, 6))
    assert len(written) == 9
    with CheckpointStore.open(store_dir, config=TEST_CONFIG) as store:
        for checkpoint_id, i in written.items():
            assert restore_bytes(store, checkpoint_id) == overlapping(i)
        assert store.verify(read_data=True).ok


def tensors(step: int) -> bytes:
    from ckptstore.testing.formats import safetensors_bytes
    from tests.test_deltas import model

    return safetensors_bytes(model(4, step))


SHALLOW = dataclasses.replace(TEST_CONFIG, delta_max_depth=2)

TENSOR_CHILD = """
import sys
from ckptstore import CheckpointStore
from tests.test_concurrency import SHALLOW, tensors
store = CheckpointStore.open(sys.argv[1], config=SHALLOW)
for step in range(int(sys.argv[2]), 8, 2):
    print(store.put("job", tensors(step), step=step).checkpoint_id, step, flush=True)
store.close()
"""


def test_processes_rebasing_one_job_at_once(tmp_path):
    """Two processes save alternate checkpoints of one job: their rebases race on the
    same blocks, and every checkpoint must still read back, with no chain left broken
    or longer than the bound."""
    store_dir = tmp_path / "store"
    written = run_children(TENSOR_CHILD, store_dir, (0, 1))
    assert len(written) == 8
    with CheckpointStore.open(store_dir, config=SHALLOW) as store:
        store.settle()
        catalog = store.context.catalog
        assert catalog.pending_rebases() == []
        blocks = list(catalog.iter_blocks())
        assert any(r.base_id for r in blocks)  # rebases ran
        assert max(chain_depths(catalog, blocks, limit=64).values()) <= SHALLOW.delta_max_depth
        for checkpoint_id, step in written.items():
            assert restore_bytes(store, checkpoint_id) == tensors(step)
        assert store.verify(read_data=True).ok
