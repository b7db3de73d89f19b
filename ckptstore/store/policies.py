"""Job policies applied when a checkpoint becomes ready: the best copy and retention.

- **best**: one per job. When a checkpoint's value of the job's metric beats
  the current best, a checkpoint of type ``best`` is added that shares the
  source's manifest (so it costs no block storage) and the old best goes, in
  one transaction.
- **retention**: with ``keepAutomatic = N``, the oldest ``automatic``
  checkpoints beyond N are deleted; best, manual, final and pinned ones never.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ckptstore.errors import CheckpointNotFound, CheckpointPinned, InvalidArgument
from ckptstore.store.catalog.base import CheckpointRecord, ListQuery
from ckptstore.store.context import StoreContext
from ckptstore.store.ids import new_checkpoint_id

DEFAULT_BEST_METRIC = "validationLoss"
_HIGHER_IS_BETTER = ("acc", "f1", "auc", "precision", "recall", "score", "bleu", "rouge", "iou")


def default_mode(metric: str) -> str:
    """``max`` for accuracy-like metrics, ``min`` for losses and everything else."""
    lowered = metric.lower()
    return "max" if any(hint in lowered for hint in _HIGHER_IS_BETTER) else "min"


@dataclass(frozen=True)
class JobSettings:
    best_metric: str = DEFAULT_BEST_METRIC
    best_mode: str = "min"  # "min" (lower is better) or "max"
    keep_automatic: int | None = None  # None keeps every automatic checkpoint

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> JobSettings:
        metric = data.get("bestMetric", DEFAULT_BEST_METRIC)
        if not isinstance(metric, str) or not metric:
            raise InvalidArgument("bestMetric", metric, "a metric name")
        mode = data.get("bestMode") or default_mode(metric)
        if mode not in ("min", "max"):
            raise InvalidArgument("bestMode", mode, "min or max")
        keep = data.get("keepAutomatic")
        if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
            raise InvalidArgument("keepAutomatic", keep, "a positive integer or null")
        return cls(metric, str(mode), keep)

    def as_dict(self) -> dict[str, object]:
        return {
            "bestMetric": self.best_metric,
            "bestMode": self.best_mode,
            "keepAutomatic": self.keep_automatic,
        }

    def better(self, candidate: float, incumbent: float) -> bool:
        return candidate < incumbent if self.best_mode == "min" else candidate > incumbent


def job_settings(ctx: StoreContext, tenant_id: str, job_id: str) -> JobSettings:
    return JobSettings.from_dict(ctx.catalog.job_settings(tenant_id, job_id))


def apply_policies(ctx: StoreContext, record: CheckpointRecord) -> list[str]:
    """Apply the job's policies after ``record`` became ready; returns the ids deleted."""
    settings = job_settings(ctx, record.tenant_id, record.job_id)
    deleted: list[str] = []
    if record.type != "best":
        deleted += _update_best(ctx, settings, record)
    if record.type == "automatic" and settings.keep_automatic is not None:
        deleted += _enforce_retention(ctx, record, settings.keep_automatic)
    return deleted


def _of_type(ctx: StoreContext, record: CheckpointRecord, type_: str) -> list[CheckpointRecord]:
    query = ListQuery(record.tenant_id, record.job_id, "createdAt", True, None, types=(type_,))
    return ctx.catalog.list_checkpoints(query)[0]


def _update_best(ctx: StoreContext, settings: JobSettings, record: CheckpointRecord) -> list[str]:
    value = record.metrics.get(settings.best_metric)
    if value is None:
        return []
    bests = _of_type(ctx, record, "best")
    current = bests[0] if bests else None
    if current is not None:
        incumbent = current.metrics.get(settings.best_metric)
        if incumbent is not None and not settings.better(value, incumbent):
            return []
    epoch = f" - Epoch {record.epoch}" if record.epoch is not None else ""
    best = replace(
        record,
        checkpoint_id=new_checkpoint_id(),
        type="best",
        name=f"{_best_title(settings.best_metric)}{epoch}",
        description=f"Best {settings.best_metric} so far: a copy of {record.checkpoint_id}",
        stored_bytes=0,
        created_at=ctx.clock(),
        parent_id=record.checkpoint_id,
    )
    replaceable = current if current is not None and not _pinned(ctx, current) else None
    try:
        ctx.catalog.replace_best(best, replaceable.checkpoint_id if replaceable else None)
    except CheckpointNotFound as exc:
        if exc.checkpoint_id != record.checkpoint_id:
            raise
        return []  # deleted since it was saved: there is nothing to copy
    return [replaceable.checkpoint_id] if replaceable else []


def _best_title(metric: str) -> str:
    """The best copy's name: the API's own for validation loss (the default metric),
    else one that names the metric that chose it."""
    return "Best Validation" if metric == "validationLoss" else f"Best {metric}"


def _enforce_retention(ctx: StoreContext, record: CheckpointRecord, keep: int) -> list[str]:
    deleted = []
    for old in _of_type(ctx, record, "automatic")[keep:]:
        try:
            ctx.catalog.delete_checkpoint(old.checkpoint_id, ctx.clock())
        except CheckpointPinned:
            continue  # an endpoint serves it: retention never removes it
        deleted.append(old.checkpoint_id)
    return deleted


def _pinned(ctx: StoreContext, record: CheckpointRecord) -> bool:
    return any(
        e.checkpoint_id == record.checkpoint_id
        for e in ctx.catalog.list_endpoints(record.tenant_id)
    )
