"""Hugging Face ``transformers``: a ``TrainerCallback`` that stores each checkpoint the
Trainer saves, and resuming from a stored one.

::

    from ckptstore.integrations.transformers import CkptStoreCallback, resume_checkpoint
    client = ckptstore.Client.from_env()
    trainer = Trainer(..., callbacks=[CkptStoreCallback(client, "job_x")])
    trainer.train()
    # later, in a new process:
    trainer.train(resume_from_checkpoint=resume_checkpoint(client, "job_x:latest", "out"))

Each time the Trainer has written a ``checkpoint-<step>`` folder (model, optimizer,
scheduler, RNG state, ``trainer_state.json``), the callback stores the folder as
a checkpoint of the job: the Trainer's global step, its epoch (whole epochs
done), and the numbers it logged at that step (``loss``, ``eval_loss``, ...) as
metrics. The save at the last step is of type ``final``, the others
``automatic``. With ``metric_for_best_model`` set, the job's best copy follows
that metric the way the Trainer picks its best checkpoint (``eval_`` prefix,
``greater_is_better``), so the job's ``best`` is the Trainer's best. Only the
main process stores (``state.is_world_process_zero``); a sharded save whose
shards other processes write (FSDP, DeepSpeed on several nodes) is not waited for.

``pip install ckptstore[transformers]``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ckptstore.errors import InvalidArgument
from ckptstore.integrations.best import follow_metric
from ckptstore.store.catalog.base import CheckpointRecord

# what ckptstore accepts as a metric name (drafts.METRIC_KEY); other log keys are left out
_METRIC_NAME = re.compile(r"[A-Za-z0-9_./-]{1,128}")


class CkptStoreCallback(TrainerCallback):
    """Stores every checkpoint folder the Trainer saves as a checkpoint of ``job_id`` in
    ``target`` (a ``CheckpointStore`` or ``Client``)."""

    def __init__(self, target: Any, job_id: str, *, follow_best: bool = True) -> None:
        self.target = target
        self.job_id = job_id
        self.follow_best = follow_best
        self.saved: list[CheckpointRecord] = []  # this run's, in order

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Point the job's best copy at the Trainer's ``metric_for_best_model``."""
        if self.follow_best and args.metric_for_best_model and state.is_world_process_zero:
            metric = args.metric_for_best_model
            if not metric.startswith("eval_"):
                metric = f"eval_{metric}"  # as Trainer._determine_best_metric names it
            follow_metric(
                self.target, self.job_id, metric, "max" if args.greater_is_better else "min"
            )

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Store the folder the Trainer has just written."""
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir or ".") / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():
            # a hyperparameter search saves under a run folder: not followed here
            raise InvalidArgument("output_dir", str(folder), "the folder the Trainer saved")
        record = self.target.put(
            self.job_id,
            folder,
            type="final" if state.global_step >= state.max_steps else "automatic",
            step=state.global_step,
            epoch=math.floor(state.epoch or 0),
            metrics=logged_at(state, state.global_step),
            name=folder.name,
        )
        self.saved.append(record)


def logged_at(state: TrainerState, step: int) -> dict[str, float]:
    """The numbers the Trainer logged at ``step`` (training and evaluation), by name."""
    metrics: dict[str, float] = {}
    for entry in state.log_history:
        if entry.get("step") != step:
            continue
        for name, value in entry.items():
            if name == "step" or not _METRIC_NAME.fullmatch(name):
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and math.isfinite(value):
                metrics[name] = float(value)
    return metrics


def resume_checkpoint(target: Any, reference: str, output_dir: str | Path) -> str:
    """Restore a stored Trainer checkpoint (an id or any reference: ``JOB:latest``,
    ``JOB:best``) to
    ``output_dir/checkpoint-<step>`` and return that folder, for
    ``trainer.train(resume_from_checkpoint=...)``."""
    checkpoint_id = target.resolve(reference)
    record = target.get(checkpoint_id)
    folder = Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{record.step or 0}"
    if folder.exists() and any(folder.iterdir()):
        raise InvalidArgument("output_dir", str(folder), "a folder that is empty or missing")
    target.restore(checkpoint_id, folder)
    return str(folder)
