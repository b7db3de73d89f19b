"""A training script's view of one job: save each epoch, the final state, manual requests.

::

    job = ckptstore.job(store_or_client, "job_x", best_metric="validationLoss")
    for epoch in ...:
        job.save(state, epoch=epoch, step=step, metrics={"validationLoss": vl})
        job.fulfil_pending(state)   # manual checkpoints someone requested through the API
    job.finish(state)
"""

from __future__ import annotations

from typing import Any

from ckptstore.store.catalog.base import CheckpointRecord
from ckptstore.store.policies import JobSettings


class Job:
    def __init__(self, target: Any, job_id: str) -> None:
        self.target = target
        self.job_id = job_id

    def save(
        self,
        state: Any,
        *,
        epoch: int | None = None,
        step: int | None = None,
        metrics: dict[str, float] | None = None,
        name: str | None = None,
    ) -> CheckpointRecord:
        """An ``automatic`` checkpoint; the job's best copy and retention follow."""
        from ckptstore import torch as ckpt_torch

        return ckpt_torch.save(
            state,
            self.target,
            self.job_id,
            type="automatic",
            epoch=epoch,
            step=step,
            metrics=metrics,
            name=name,
        )

    def finish(
        self,
        state: Any,
        *,
        epoch: int | None = None,
        step: int | None = None,
        metrics: dict[str, float] | None = None,
    ) -> CheckpointRecord:
        """The ``final`` checkpoint: never removed by retention."""
        from ckptstore import torch as ckpt_torch

        return ckpt_torch.save(
            state, self.target, self.job_id, type="final", epoch=epoch, step=step, metrics=metrics
        )

    def pending_manual(self) -> list[CheckpointRecord]:
        """Manual checkpoints requested (``POST .../checkpoints``) and not yet fulfilled."""
        page = self.target.list(self.job_id, limit=None, types=("manual",))
        return [r for r in page.checkpoints if r.status == "pending"]

    def fulfil(self, request: CheckpointRecord, state: Any, **progress: Any) -> CheckpointRecord:
        """Answer one manual request with ``state``; ``progress``: the ``epoch``,
        ``step`` and ``metrics`` of the training now, recorded with it."""
        from ckptstore import torch as ckpt_torch

        return ckpt_torch.fill(state, self.target, request.checkpoint_id, **progress)

    def fulfil_pending(self, state: Any, **progress: Any) -> list[CheckpointRecord]:
        """Answer every pending manual request with ``state`` (and ``progress``, as
        ``fulfil``); returns what was filled."""
        return [self.fulfil(request, state, **progress) for request in self.pending_manual()]

    def load(self, checkpoint_id: str, *, map_location: Any = None, **kwargs: Any) -> Any:
        from ckptstore import torch as ckpt_torch

        return ckpt_torch.load(self.target, checkpoint_id, map_location=map_location, **kwargs)


def job(
    target: Any,
    job_id: str,
    *,
    best_metric: str | None = None,
    best_mode: str | None = None,
    keep_automatic: int | None = None,
) -> Job:
    """A Job on a CheckpointStore or Client; given settings are stored for the job."""
    if best_metric is not None or best_mode is not None or keep_automatic is not None:
        settings = JobSettings.from_dict(
            {
                k: v
                for k, v in {
                    "bestMetric": best_metric,
                    "bestMode": best_mode,
                    "keepAutomatic": keep_automatic,
                }.items()
                if v is not None
            }
        )
        target.set_job_settings(job_id, settings)
    return Job(target, job_id)
