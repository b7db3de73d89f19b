"""The embedded store end to end: save, list, find by alias, restore, verify, delete, gc.

Needs ckptstore and numpy (``pip install ckptstore``), no server::

    python examples/quickstart.py            # in a new temporary directory, removed after
    python examples/quickstart.py ./ckpts    # in ./ckpts (kept; run again to add more)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from ckptstore import CheckpointStore

JOB = "job_quickstart"


def fake_checkpoint(epoch: int) -> bytes:
    """Weights that drift a little each epoch, and a frozen embedding that never changes."""
    rng = np.random.default_rng(0)
    frozen = rng.standard_normal(2_000_000, dtype=np.float32)
    weights = rng.standard_normal(3_000_000, dtype=np.float32)
    weights[: epoch * 100_000] += np.float32(0.001 * epoch)
    return frozen.tobytes() + weights.tobytes()


def run(path: Path) -> None:
    with CheckpointStore.open(path) as store:
        for epoch in range(1, 4):
            ck = store.put(
                JOB,
                fake_checkpoint(epoch),
                epoch=epoch,
                step=epoch * 1000,
                metrics={"loss": 1.0 / epoch, "validationLoss": 1.1 / epoch},
            )
            print(
                f"saved {ck.checkpoint_id}  {ck.name}: {ck.size_bytes / 1e6:.1f} MB,"
                f" {ck.stored_bytes / 1e6:.1f} MB new on disk"
            )
        store.settle()  # older saves are re-encoded as deltas on newer ones in the background

        # the saves themselves; the job's best checkpoint is a copy (it costs no blocks)
        saves = store.list(JOB, types=("automatic",), sort_by="validationLoss", order="asc")
        best = store.get(f"{JOB}:best")  # also JOB:latest, JOB:final, or a unique id prefix
        print(
            f"\n{saves.total_count} saves; {JOB}:best is {best.checkpoint_id},"
            f" a copy of {best.parent_id} (epoch {best.epoch})"
        )

        with store.open_reader(f"{JOB}:latest") as f:  # every block re-hashed as it is read
            restored = f.read()
        latest = store.get(f"{JOB}:latest")
        print(
            f"restored {JOB}:latest ({latest.checkpoint_id}): {len(restored) / 1e6:.1f} MB,"
            f" bit-exact: {restored == fake_checkpoint(latest.epoch or 0)}"
        )

        report = store.verify(read_data=True)
        print(f"verify: {'ok' if report.ok else report.findings}, {report.blocks_checked} blocks")

        stats = store.stats()
        print(
            f"store: {stats.logical_bytes / 1e6:.1f} MB of checkpoints (the best copy included)"
            f" in {stats.stored_bytes / 1e6:.1f} MB ({stats.dedup_ratio:.2f}x)"
        )

        worst = saves.checkpoints[-1]
        store.delete(worst.checkpoint_id)
        # GC keeps unused blocks for a grace period (an hour by default); 0: reclaim now
        freed = store.gc(grace_s=0).bytes_freed
        print(f"deleted {worst.checkpoint_id} (epoch {worst.epoch}); gc freed {freed / 1e6:.1f} MB")


def main() -> None:
    if len(sys.argv) > 1:
        run(Path(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory(prefix="ckptstore-quickstart-") as path:
        run(Path(path))


if __name__ == "__main__":
    main()
