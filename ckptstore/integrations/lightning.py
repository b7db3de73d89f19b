"""PyTorch Lightning: a ``CheckpointIO`` plugin that stores checkpoints in ckptstore.

::

    io = CkptStoreCheckpointIO(ckptstore.Client.from_env(), "job_x", best_metric="val_loss")
    trainer = lightning.Trainer(plugins=[io], callbacks=[ModelCheckpoint(monitor="val_loss")])
    trainer.fit(model)
    trainer.fit(model, ckpt_path="job_x:latest")  # or a checkpoint id

Each save is streamed into the store as a new checkpoint of the job (no local
file), with the trainer's epoch and global step and, when a ``ModelCheckpoint``
monitors a metric, that metric's value now (so the job's best copy follows it).
With ``best_metric`` (a metric a ``ModelCheckpoint`` monitors) the job's settings
are set so that its best copy follows that metric.
The path Lightning names a save with becomes the checkpoint's name and stays
its handle in this process: ``ckpt_path`` may be such a path, a checkpoint id or
``JOB:latest``.
A path saved again (``last.ckpt``) or removed (``save_top_k``) deletes the
checkpoint stored under it, as a file would be replaced or deleted, unless
``keep_replaced=True`` (then the job's retention settings decide).

``trainer.save_checkpoint(path, storage_options={...})`` takes ``type``,
``name``, ``description`` and ``metrics`` for that one save.

``pip install ckptstore[lightning]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.types import _PATH

from ckptstore import torch as ckpt_torch
from ckptstore.errors import InvalidArgument
from ckptstore.integrations.best import follow_metric
from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.checkpoints import CheckpointFields

STORAGE_OPTIONS = ("type", "name", "description", "metrics")


class CkptStoreCheckpointIO(CheckpointIO):
    """Lightning's checkpoint files as checkpoints of ``job_id`` in a store or server."""

    def __init__(
        self,
        target: Any,
        job_id: str,
        *,
        best_metric: str | None = None,
        best_mode: str | None = None,
        keep_replaced: bool = False,
    ) -> None:
        self.target = target  # a CheckpointStore or a Client
        self.job_id = job_id
        if best_metric is not None:
            follow_metric(target, job_id, best_metric, best_mode)
        self.keep_replaced = keep_replaced
        self.saved: list[CheckpointRecord] = []  # every save of this process, in order
        self._by_path: dict[str, str] = {}  # a path Lightning saved to -> its checkpoint id

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        """Stream ``checkpoint`` into the store as a new checkpoint of the job."""
        fields = _fields(checkpoint, Path(path).name, storage_options)
        record = ckpt_torch.save(checkpoint, self.target, self.job_id, **fields)
        self.saved.append(record)
        replaced = self._by_path.get(str(path))
        self._by_path[str(path)] = record.checkpoint_id
        if replaced is not None:
            self._delete(replaced)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """The checkpoint saved under ``path`` in this process, or of that checkpoint id
        (or ``JOB:latest``)."""
        checkpoint_id = self._by_path.get(str(path)) or self.target.resolve(str(path))
        options = {} if weights_only is None else {"weights_only": weights_only}
        loaded: dict[str, Any] = ckpt_torch.load(
            self.target, checkpoint_id, map_location=map_location, **options
        )
        return loaded

    def remove_checkpoint(self, path: _PATH) -> None:
        """Delete the checkpoint saved under ``path`` (unless ``keep_replaced``)."""
        checkpoint_id = self._by_path.pop(str(path), None)
        if checkpoint_id is not None:
            self._delete(checkpoint_id)

    def checkpoint_id(self, path: _PATH) -> str:
        """The id of the checkpoint saved under ``path`` in this process."""
        try:
            return self._by_path[str(path)]
        except KeyError:
            raise InvalidArgument("path", str(path), "a path this plugin saved to") from None

    def _delete(self, checkpoint_id: str) -> None:
        if not self.keep_replaced:
            self.target.delete(checkpoint_id)


def _fields(checkpoint: dict[str, Any], name: str, options: Any | None) -> CheckpointFields:
    fields = CheckpointFields(
        type="automatic",
        name=name,
        epoch=checkpoint.get("epoch"),
        step=checkpoint.get("global_step"),
        metrics=_monitored(checkpoint),
    )
    if options is None:
        return fields
    if not isinstance(options, dict) or set(options) - set(STORAGE_OPTIONS):
        raise InvalidArgument("storage_options", options, f"a dict of {', '.join(STORAGE_OPTIONS)}")
    fields.update(options)  # type: ignore[typeddict-item]  # keys checked above
    return fields


def _monitored(checkpoint: dict[str, Any]) -> dict[str, float]:
    """The value of each metric a ``ModelCheckpoint`` monitors, at this save."""
    metrics: dict[str, float] = {}
    for state in checkpoint.get("callbacks", {}).values():
        if not isinstance(state, dict):
            continue
        monitor, score = state.get("monitor"), state.get("current_score")
        if isinstance(monitor, str) and score is not None:
            metrics[monitor] = float(score)
    return metrics
