"""What a caller may say about a checkpoint, checked: the fields of a new checkpoint
(made into a draft record) and the arguments of a listing."""

from __future__ import annotations

import math
import re
from typing import TypedDict

from ckptstore.errors import (
    InvalidArgument,
    InvalidCheckpointType,
    InvalidLimit,
)
from ckptstore.store.catalog.records import CHECKPOINT_TYPES, CheckpointRecord
from ckptstore.store.ids import check_checkpoint_id, check_job_id, new_checkpoint_id

MAX_LIST_LIMIT = 10_000
SORT_FIELDS = ("createdAt", "epoch", "step")
ALWAYS_SORTABLE_METRICS = ("loss", "accuracy")
METRIC_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,127}")


class CheckpointFields(TypedDict, total=False):
    """The metadata a caller may give a checkpoint."""

    type: str  # automatic | best | manual | final
    epoch: int | None
    step: int | None
    metrics: dict[str, float] | None
    name: str | None
    description: str | None


_DEFAULT_NAMES = {
    "automatic": "Automatic Checkpoint",
    "best": "Best Checkpoint",
    "manual": "Manual Checkpoint",
    "final": "Final Checkpoint",
}


def new_draft(
    job_id: str, tenant: str, checkpoint_id: str | None, fields: CheckpointFields
) -> CheckpointRecord:
    """The record of a checkpoint about to be stored (no size, no time yet), from the
    caller's fields; InvalidArgument or InvalidCheckpointType for a bad one."""
    check_job_id(job_id)
    unknown = set(fields) - set(CheckpointFields.__annotations__)
    if unknown:
        raise InvalidArgument(
            "field", sorted(unknown)[0], ", ".join(CheckpointFields.__annotations__)
        )
    type_ = fields.get("type", "automatic")
    if type_ not in CHECKPOINT_TYPES:
        raise InvalidCheckpointType(type_, CHECKPOINT_TYPES)
    epoch, step = fields.get("epoch"), fields.get("step")
    for label, value in (("epoch", epoch), ("step", step)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise InvalidArgument(label, value, "a non-negative integer")
    name = fields.get("name")
    if name is None:
        automatic = type_ == "automatic" and epoch is not None
        name = f"Epoch {epoch} Checkpoint" if automatic else _DEFAULT_NAMES[type_]
    return CheckpointRecord(
        checkpoint_id=check_checkpoint_id(checkpoint_id) if checkpoint_id else new_checkpoint_id(),
        job_id=job_id,
        type=type_,
        name=name,
        description=fields.get("description"),
        epoch=epoch,
        step=step,
        metrics=check_metrics(fields.get("metrics") or {}),
        status="ready",
        size_bytes=0,
        stored_bytes=0,
        created_at=0.0,
        tenant_id=tenant,
    )


def check_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics as floats; InvalidArgument for a bad name or a value not finite."""
    if not isinstance(metrics, dict):
        raise InvalidArgument("metrics", metrics, "a mapping of metric name to number")
    for key, value in metrics.items():
        if not isinstance(key, str) or not METRIC_KEY.fullmatch(key):
            raise InvalidArgument("metrics", key, "metric names of letters, digits, _ . - /")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidArgument(f"metrics.{key}", value, "a finite number")
    return {key: float(value) for key, value in metrics.items()}


def check_list_arguments(
    job_id: str, order: str, limit: int | None, types: tuple[str, ...] | None
) -> None:
    """Raise for a listing's bad job id, order, limit or checkpoint type."""
    check_job_id(job_id)
    if order not in ("asc", "desc"):
        raise InvalidArgument("sortOrder", order, "asc or desc")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT
    ):
        raise InvalidLimit(limit, 1, MAX_LIST_LIMIT)
    for type_ in types or ():
        if type_ not in CHECKPOINT_TYPES:
            raise InvalidCheckpointType(type_, CHECKPOINT_TYPES)


def may_sort_by(sort_by: str) -> bool:
    """Whether ``sort_by`` names a field or could name a metric."""
    return sort_by in SORT_FIELDS or METRIC_KEY.fullmatch(sort_by) is not None


def sort_keys(metric_keys: list[str]) -> list[str]:
    """Every key a job's checkpoints can be sorted by, given its metrics' keys."""
    return sorted(set(SORT_FIELDS) | set(ALWAYS_SORTABLE_METRICS) | set(metric_keys))
