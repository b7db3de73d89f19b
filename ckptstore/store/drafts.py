"""What a caller may say about a checkpoint, checked: the fields of a new checkpoint
(made into a draft record) and the arguments of a listing."""

from __future__ import annotations

import math
import re
from dataclasses import replace
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


class ProgressFields(TypedDict, total=False):
    """Where training was when a pending (say, manually requested) checkpoint is filled."""

    epoch: int | None
    step: int | None
    metrics: dict[str, float] | None


MAX_COUNTER = 2**63 - 1  # epochs and steps are stored as signed 64-bit integers
MAX_METRICS = 256  # metric names per checkpoint

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
    epoch, step = _counter("epoch", fields.get("epoch")), _counter("step", fields.get("step"))
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


def with_progress(pending: CheckpointRecord, fields: ProgressFields) -> CheckpointRecord:
    """``pending`` with the epoch, step and metrics given (the others as they were);
    InvalidArgument for an unknown field or a bad value."""
    unknown = set(fields) - set(ProgressFields.__annotations__)
    if unknown:
        raise InvalidArgument("field", sorted(unknown)[0], "epoch, step, metrics")
    epoch, step = fields.get("epoch"), fields.get("step")
    metrics = fields.get("metrics")
    return replace(
        pending,
        epoch=pending.epoch if epoch is None else _counter("epoch", epoch),
        step=pending.step if step is None else _counter("step", step),
        metrics=pending.metrics if metrics is None else check_metrics(metrics),
    )


def _counter(label: str, value: object) -> int | None:
    """An epoch or step: None, or a whole number from 0 to 2**63 - 1."""
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER
    ):
        raise InvalidArgument(label, value, "a whole number from 0 to 2**63 - 1")
    return value


def check_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics as floats; InvalidArgument for a bad name or a value not finite."""
    if not isinstance(metrics, dict):
        raise InvalidArgument("metrics", metrics, "a mapping of metric name to number")
    if len(metrics) > MAX_METRICS:
        raise InvalidArgument("metrics", len(metrics), f"at most {MAX_METRICS} metrics")
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
