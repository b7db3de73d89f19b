"""End to end with the embedded engine: ingest, list, restore, verify, delete, gc.

Run with ``.venv/bin/python examples/quickstart.py`` after ``make test`` (or in any
environment with ckptstore installed). The store lives in ./data/quickstart (delete it
to start over).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ckptstore import CheckpointStore

STORE = Path("data/quickstart")


def fake_checkpoint(epoch: int) -> bytes:
    """Weights that drift a little each epoch, and a frozen embedding that never changes."""
    rng = np.random.default_rng(0)
    frozen = rng.standard_normal(2_000_000, dtype=np.float32)
    weights = rng.standard_normal(3_000_000, dtype=np.float32)
    weights[: epoch * 100_000] += np.float32(0.001 * epoch)
    return frozen.tobytes() + weights.tobytes()


def main() -> None:
    with CheckpointStore.open(STORE) as store:
        for epoch in range(1, 4):
            ck = store.put(
                "job_quickstart",
                fake_checkpoint(epoch),
                epoch=epoch,
                step=epoch * 1000,
                metrics={"loss": 1.0 / epoch, "validationLoss": 1.1 / epoch},
            )
            print(
                f"stored {ck.checkpoint_id}  {ck.name}: {ck.size_bytes / 1e6:.1f} MB logical,"
                f" {ck.stored_bytes / 1e6:.1f} MB new on disk"
            )

        page = store.list("job_quickstart", sort_by="validationLoss", order="asc", limit=10)
        print(
            f"\n{page.total_count} checkpoints; best by validationLoss:"
            f" {page.checkpoints[0].checkpoint_id} (epoch {page.checkpoints[0].epoch})"
        )

        best = page.checkpoints[0]
        with store.open_reader(best.checkpoint_id) as f:
            restored = f.read()
        same = (
            hashlib.sha256(restored).digest()
            == hashlib.sha256(fake_checkpoint(best.epoch)).digest()
        )
        print(f"restored {len(restored) / 1e6:.1f} MB, bit-exact: {same}")

        report = store.verify(read_data=True)
        print(
            f"verify: {'ok' if report.ok else report.findings}"
            f" ({report.blocks_checked} blocks re-hashed)"
        )

        stats = store.stats()
        print(
            f"store: {stats.logical_bytes / 1e6:.1f} MB logical"
            f" in {stats.stored_bytes / 1e6:.1f} MB ({stats.dedup_ratio:.2f}x)"
        )

        oldest = store.list("job_quickstart", sort_by="createdAt", order="asc", limit=1)
        store.delete(oldest.checkpoints[0].checkpoint_id)
        print(
            f"deleted {oldest.checkpoints[0].checkpoint_id};"
            " gc reclaims its unshared blocks once the grace period (1 h) has passed:"
        )
        print(f"  {store.gc()}")


if __name__ == "__main__":
    main()
