"""Train a small model for a few epochs on CPU, checkpointing into ckptstore.

    make run                                   # in one terminal: prints an API key
    CKPTSTORE_SERVER=http://127.0.0.1:8000 CKPTSTORE_API_KEY=ck_... \\
        .venv/bin/python examples/train_small.py

Without CKPTSTORE_SERVER it uses an embedded store in ./ckpts. While it runs,
request a manual checkpoint through the API and watch the next epoch fulfil it:

    curl -X POST "$CKPTSTORE_SERVER/v2/training/jobs/job_example/checkpoints" \\
        -H "Authorization: Bearer $CKPTSTORE_API_KEY" -H "Content-Type: application/json" \\
        -d '{"name": "Manual Checkpoint", "description": "from the command line"}'
"""

from __future__ import annotations

import os
import time

import torch

import ckptstore

JOB = "job_example"
EPOCHS = 5


def main() -> None:
    target = (
        ckptstore.Client.from_env()
        if os.environ.get("CKPTSTORE_SERVER")
        else ckptstore.CheckpointStore.open("./ckpts")
    )
    with target:
        job = ckptstore.job(target, JOB, best_metric="validationLoss", keep_automatic=3)
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        inputs, targets = torch.randn(2048, 32), torch.randn(2048, 1)
        val_inputs, val_targets = torch.randn(512, 32), torch.randn(512, 1)
        step = 0
        for epoch in range(1, EPOCHS + 1):
            for batch in range(0, len(inputs), 64):
                loss = torch.nn.functional.mse_loss(
                    model(inputs[batch : batch + 64]), targets[batch : batch + 64]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
            with torch.no_grad():
                val_loss = torch.nn.functional.mse_loss(model(val_inputs), val_targets).item()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
            record = job.save(
                state,
                epoch=epoch,
                step=step,
                metrics={"loss": loss.item(), "validationLoss": val_loss},
            )
            print(
                f"epoch {epoch}: {record.checkpoint_id} validationLoss={val_loss:.4f}"
                f" ({record.size_bytes / 1e6:.1f} MB, {record.stored_bytes / 1e6:.2f} MB new)"
            )
            for filled in job.fulfil_pending(state):
                print(f"  fulfilled manual request {filled.checkpoint_id} ({filled.name})")
            time.sleep(0.5)  # time to send a manual request in this demo
        final = job.finish(state, epoch=EPOCHS, step=step)
        restored = job.load(final.checkpoint_id, map_location="cpu")
        assert all(torch.equal(restored["model"][k], v) for k, v in model.state_dict().items())
        page = target.list(JOB, limit=None)
        print(f"final {final.checkpoint_id}; the job keeps {page.total_count} checkpoints:")
        for r in page.checkpoints:
            print(f"  {r.type:9s} {r.name}")


if __name__ == "__main__":
    main()
