"""The job's best copy following the metric a framework picks its best checkpoint by."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ckptstore.store.policies import JobSettings, default_mode


def follow_metric(target: Any, job_id: str, metric: str, mode: str | None = None) -> JobSettings:
    """Set the job's best metric (and mode: ``min``, ``max``, or guessed from the name),
    keeping its other settings; returns the settings stored."""
    current: JobSettings = target.job_settings(job_id)
    wanted = replace(current, best_metric=metric, best_mode=mode or default_mode(metric))
    checked = JobSettings.from_dict(wanted.as_dict())  # the same checks as the API's
    if checked == current:
        return current
    stored: JobSettings = target.set_job_settings(job_id, checked)
    return stored
