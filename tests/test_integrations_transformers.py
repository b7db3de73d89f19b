"""The Hugging Face Trainer saving into ckptstore through the callback, and resuming from it.

A tiny GPT-2 built from a config (nothing downloaded) trains a few steps on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from ckptstore.client import Client  # noqa: E402
from ckptstore.integrations.transformers import CkptStoreCallback, resume_checkpoint  # noqa: E402
from tests.server_helpers import live_server_and_key  # noqa: E402

JOB = "job_hf"

# The Trainer's own remarks about this machine and set-up (no accelerator, tiny data)
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*pin_memory.*:UserWarning"),
]


def tiny_model(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=96, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config)


def tiny_dataset(n: int = 32, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, 96, (n, 16), generator=gen)
    return [{"input_ids": row, "labels": row} for row in rows]


def arguments(output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        logging_steps=2,
        metric_for_best_model="eval_loss",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )


def train(target, output_dir: Path) -> tuple[Trainer, CkptStoreCallback]:
    callback = CkptStoreCallback(target, JOB)
    trainer = Trainer(
        model=tiny_model(0),
        args=arguments(output_dir),
        train_dataset=tiny_dataset(),
        eval_dataset=tiny_dataset(16, seed=1),
        callbacks=[callback],
    )
    trainer.train()
    return trainer, callback


def test_each_save_is_stored_with_step_epoch_metrics_and_type(store, tmp_path):
    trainer, callback = train(store, tmp_path / "out")
    records = store.list(JOB, order="asc", limit=None, types=("automatic", "final")).checkpoints
    assert [(r.step, r.type, r.name) for r in records] == [
        (2, "automatic", "checkpoint-2"),
        (4, "automatic", "checkpoint-4"),
        (6, "final", "checkpoint-6"),
    ]
    assert [r.checkpoint_id for r in records] == [r.checkpoint_id for r in callback.saved]
    for record in records:
        assert {"loss", "eval_loss", "learning_rate"} <= set(record.metrics)
        logged = [e for e in trainer.state.log_history if e.get("step") == record.step]
        assert record.metrics["eval_loss"] == next(
            e["eval_loss"] for e in logged if "eval_loss" in e
        )
        assert record.epoch == int(next(e["epoch"] for e in logged))
    # the job's best copy is the Trainer's best checkpoint
    best = store.job_summary(JOB).best
    trainers_best = Path(trainer.state.best_model_checkpoint).name
    assert store.get(best.parent_id).name == trainers_best
    assert store.job_settings(JOB).best_metric == "eval_loss"
    # each stored folder is the folder the Trainer wrote, file for file
    folder = tmp_path / "out" / "checkpoint-4"
    stored = {f.path: f.size_bytes for f in store.files(records[1].checkpoint_id)}
    on_disk = {
        str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }
    assert stored == on_disk and "optimizer.pt" in stored and "trainer_state.json" in stored


RESUME = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from pathlib import Path
import torch
from transformers import TrainerCallback
from ckptstore.client import Client
from ckptstore.integrations.transformers import resume_checkpoint
from tests.test_integrations_transformers import arguments, tiny_dataset, tiny_model, Trainer

class Capture(TrainerCallback):
    # the state training goes on from: after the Trainer loaded the checkpoint
    def on_train_begin(self, args, state, control, model, optimizer, **kwargs):
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": state.global_step}, sys.argv[3])

out = Path(sys.argv[2])
trainer = Trainer(model=tiny_model(seed=7), args=arguments(out), train_dataset=tiny_dataset(),
                  eval_dataset=tiny_dataset(16, seed=1), callbacks=[Capture()])
with Client.from_env() as client:
    trainer.train(resume_from_checkpoint=resume_checkpoint(client, "job_hf:latest", out))
"""


def test_a_new_process_resumes_from_latest_through_a_server_with_identical_state(tmp_path):
    result = tmp_path / "resumed.pt"
    with live_server_and_key(tmp_path / "data") as (base, key), Client(base, key) as client:
        trainer, callback = train(client, tmp_path / "out")
        assert [r.step for r in callback.saved] == [2, 4, 6]
        assert [
            c.step for c in client.list(JOB, limit=None, types=("automatic", "final")).checkpoints
        ] == [6, 4, 2]
        env = {"CKPTSTORE_SERVER": base, "CKPTSTORE_API_KEY": key, "PYTHONPATH": os.getcwd()}
        done = subprocess.run(
            [sys.executable, "-c", RESUME, "", str(tmp_path / "new"), str(result)],
            capture_output=True,
            text=True,
            env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    resumed = torch.load(result, weights_only=True)
    assert resumed["step"] == 6
    assert (tmp_path / "new" / "checkpoint-6" / "optimizer.pt").exists()
    assert_same_training_state(trainer, resumed)


def assert_same_training_state(trainer: Trainer, resumed: dict) -> None:
    """The model's weights and the optimizer's moments and groups, bit for bit."""
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(resumed["model"][key], value), key
    ours = trainer.optimizer.state_dict()
    assert ours["param_groups"] == resumed["optimizer"]["param_groups"]
    assert ours["state"].keys() == resumed["optimizer"]["state"].keys()
    for index, moments in ours["state"].items():
        for name, tensor in moments.items():
            assert torch.equal(resumed["optimizer"]["state"][index][name], tensor), (index, name)


def test_resume_refuses_a_folder_that_holds_files(store, tmp_path):
    train(store, tmp_path / "out")
    with pytest.raises(ValueError, match="empty or missing"):
        resume_checkpoint(store, f"{JOB}:latest", tmp_path / "out")
