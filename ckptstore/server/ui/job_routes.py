"""The jobs list and a job's page: checkpoints, metrics, settings, manual checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ckptstore.server.deps import Services
from ckptstore.server.ui.pages import (
    NOT_FOUND,
    CheckedSessionDep,
    PageError,
    PageRoute,
    SessionDep,
    render,
    services,
)
from ckptstore.server.ui.plot import charts
from ckptstore.store.catalog import CHECKPOINT_TYPES, CheckpointRecord
from ckptstore.store.drafts import sort_keys
from ckptstore.store.policies import JobSettings

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
MAX_NAME = 256  # as the API's CreateCheckpoint allows
NOTICES = {
    "settings": "Settings saved.",
    "requested": "Manual checkpoint requested: it stays pending until the job uploads it.",
    "deleted": "Checkpoint deleted; its space is reclaimed by background GC.",
}


@dataclass(frozen=True)
class JobRow:
    job_id: str
    count: int
    latest: CheckpointRecord | None
    best: CheckpointRecord | None
    best_metric: str
    best_value: float | None
    logical_bytes: int
    stored_bytes: int

    @property
    def ratio(self) -> float | None:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else None


def _job_row(svc: Services, tenant: str, job_id: str) -> JobRow:
    summary = svc.store.job_summary(job_id, tenant=tenant)
    settings = svc.store.job_settings(job_id, tenant=tenant)
    records = svc.store.list(job_id, limit=None, tenant=tenant).checkpoints
    best = summary.best
    value = best.metrics.get(settings.best_metric) if best else None
    return JobRow(
        job_id,
        summary.total_count,
        summary.latest,
        best,
        settings.best_metric,
        value,
        summary.total_size_bytes,
        sum(r.stored_bytes for r in records),
    )


def _require_job(svc: Services, tenant: str, job_id: str) -> None:
    """Another tenant's job is as unknown as one that does not exist."""
    if job_id not in svc.store.jobs(tenant=tenant):
        raise PageError(404, NOT_FOUND, f"No job {job_id!r}.")


@router.get("")
@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", 303)


@router.get("/jobs")
async def jobs(request: Request, session: SessionDep) -> HTMLResponse:
    svc = services(request)

    def load() -> list[JobRow]:
        ids = svc.store.jobs(tenant=session.tenant)
        return [_job_row(svc, session.tenant, job_id) for job_id in ids]

    return render(request, "jobs.html", jobs=await run_in_threadpool(load))


@router.get("/jobs/{job_id}")
async def job(
    request: Request,
    job_id: str,
    session: SessionDep,
    sortBy: str = "createdAt",  # noqa: N803 - the API's names
    sortOrder: str = "desc",  # noqa: N803
    type: Annotated[list[str] | None, Query()] = None,  # noqa: A002
    limit: int = 100,
    notice: str = "",
) -> HTMLResponse:
    svc = services(request)
    tenant = session.tenant
    types = tuple(t for t in type or () if t) or None

    def load() -> dict[str, Any]:
        _require_job(svc, tenant, job_id)
        page = svc.store.list(
            job_id, sort_by=sortBy, order=sortOrder, limit=limit, tenant=tenant, types=types
        )
        history = svc.store.list(job_id, order="asc", limit=None, tenant=tenant).checkpoints
        row = _job_row(svc, tenant, job_id)
        keys = sort_keys(svc.store.context.catalog.metric_keys(tenant, job_id))
        return {
            "row": row,
            "checkpoints": page.checkpoints,
            "total": page.total_count,
            "charts": charts(history),
            "settings": svc.store.job_settings(job_id, tenant=tenant),
            "sort_keys": keys,
            "metric_names": sorted({k for r in history for k in r.metrics}),
        }

    data = await run_in_threadpool(load)
    best = data["row"].best if isinstance(data["row"], JobRow) else None
    return render(
        request,
        "job.html",
        job_id=job_id,
        sort_by=sortBy,
        sort_order=sortOrder,
        types=types or (),
        all_types=CHECKPOINT_TYPES,
        limit=limit,
        best_source=best.parent_id if best else None,
        notice=NOTICES.get(notice),
        **data,
    )


def _job_url(job_id: str, notice: str) -> str:
    return f"/ui/jobs/{quote(job_id, safe='')}?notice={notice}"


@router.post("/jobs/{job_id}/settings")
async def save_settings(
    request: Request,
    job_id: str,
    session: CheckedSessionDep,
    bestMetric: Annotated[str, Form()] = "",  # noqa: N803
    bestMode: Annotated[str, Form()] = "",  # noqa: N803
    keepAutomatic: Annotated[str, Form()] = "",  # noqa: N803
) -> RedirectResponse:
    svc = services(request)
    keep: int | str | None = None
    if keepAutomatic.strip():
        try:
            keep = int(keepAutomatic)
        except ValueError:
            keep = keepAutomatic  # JobSettings refuses it with the allowed values
    settings = JobSettings.from_dict(
        {"bestMetric": bestMetric.strip(), "bestMode": bestMode or None, "keepAutomatic": keep}
    )

    def save() -> None:
        _require_job(svc, session.tenant, job_id)
        svc.store.set_job_settings(job_id, settings, tenant=session.tenant)

    await run_in_threadpool(save)
    return RedirectResponse(_job_url(job_id, "settings"), 303)


@router.post("/jobs/{job_id}/checkpoints")
async def request_checkpoint(
    request: Request,
    job_id: str,
    session: CheckedSessionDep,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """A pending manual checkpoint: the training job sees it and uploads its data."""
    svc = services(request)
    if len(name.strip()) > MAX_NAME or not name.strip().isprintable():
        raise PageError(400, "Invalid form", f"Name: at most {MAX_NAME} printable characters.")

    def create() -> None:
        _require_job(svc, session.tenant, job_id)
        svc.store.create_pending(
            job_id,
            tenant=session.tenant,
            type="manual",
            name=name.strip() or None,
            description=description.strip() or "requested from the web interface",
        )

    await run_in_threadpool(create)
    return RedirectResponse(_job_url(job_id, "requested"), 303)
