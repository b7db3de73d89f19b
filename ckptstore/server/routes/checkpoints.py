"""The seed's checkpoint routes: list, get, create, delete; and job settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ckptstore.errors import InvalidLimit
from ckptstore.server import listing
from ckptstore.server.deps import ServicesDep, TenantDep
from ckptstore.server.listing import MAX_CURSOR, MAX_PAGE, ListParams
from ckptstore.server.schemas import (
    Checkpoint,
    CheckpointList,
    CreateCheckpoint,
    Error,
    JobList,
    JobSettingsBody,
    JobSummary,
)
from ckptstore.server.views import checkpoint_view
from ckptstore.store.catalog import CHECKPOINT_TYPES, CheckpointRecord
from ckptstore.store.policies import JobSettings

router = APIRouter(prefix="/v2/training", tags=["checkpoints"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Error} for code in (401, 404, 422)}
# sortOrder and type are validated by the store, so a bad one is the store's own error
# class (InvalidArgument, InvalidCheckpointType); the schema still lists what they allow
SORT_ORDER = Query(json_schema_extra={"enum": ["asc", "desc"]})
TYPES = Query(json_schema_extra={"items": {"enum": list(CHECKPOINT_TYPES)}})


@router.get(
    "/jobs/{jobId}/checkpoints",
    responses={200: {"model": CheckpointList}, **ERRORS},
    summary="List checkpoints of a training job",
)
async def list_checkpoints(
    jobId: str,  # noqa: N803 - the API's name
    svc: ServicesDep,
    tenant: TenantDep,
    includeMetrics: bool = True,  # noqa: N803
    sortBy: str = "createdAt",  # noqa: N803
    sortOrder: Annotated[str, SORT_ORDER] = "desc",  # noqa: N803
    limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PAGE})] = 50,
    # extension: only checkpoints of these types (the parameter may repeat)
    type: Annotated[list[str] | None, TYPES] = None,  # noqa: A002
    # extension: the nextCursor of the page before (same sort and filter)
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
) -> Response:
    # (not a docstring: FastAPI would publish it) queries with plain parameters are
    # answered by listing.ListRoute before this route; both answer with list_answer
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidLimit(limit, 1, MAX_PAGE)
    params = ListParams(
        includeMetrics, sortBy, sortOrder, limit, tuple(type) if type else None, cursor
    )
    page, summary = await run_in_threadpool(listing.load, svc, jobId, tenant, params)
    body = listing.list_answer(page, summary, svc.signer, includeMetrics)
    return Response(body, media_type="application/json")


@router.post(
    "/jobs/{jobId}/checkpoints",
    status_code=201,
    responses={201: {"model": Checkpoint}, **ERRORS},
    summary="Create a checkpoint (pending until its data is uploaded)",
)
async def create_checkpoint(
    jobId: str,  # noqa: N803
    body: CreateCheckpoint,
    svc: ServicesDep,
    tenant: TenantDep,
) -> JSONResponse:
    record = await run_in_threadpool(
        lambda: svc.store.create_pending(jobId, tenant=tenant, **body.model_dump())
    )
    return JSONResponse(checkpoint_view(record, svc.signer), status_code=201)


@router.get(
    "/checkpoints/{checkpointId}",
    responses={200: {"model": Checkpoint}, **ERRORS},
    summary="Get one checkpoint, with a fresh signed download URL",
)
async def get_checkpoint(
    checkpointId: str,  # noqa: N803
    svc: ServicesDep,
    tenant: TenantDep,
) -> JSONResponse:
    record = await run_in_threadpool(lambda: svc.store.get(checkpointId, tenant=tenant))
    return JSONResponse(checkpoint_view(record, svc.signer))


@router.delete(
    "/checkpoints/{checkpointId}",
    status_code=204,
    responses={200: {"model": Checkpoint}, 409: {"model": Error}, **ERRORS},
    summary="Delete a checkpoint; its space is reclaimed by background GC",
)
async def delete_checkpoint(
    checkpointId: str,  # noqa: N803
    request: Request,
    svc: ServicesDep,
    tenant: TenantDep,
) -> Response:
    """204 as the seed has it; with ``Prefer: return=representation`` (RFC 7240), 200
    and the checkpoint as it was deleted (no download URL)."""
    record = await run_in_threadpool(svc.store.delete, checkpointId, tenant=tenant)
    svc.gc.after_delete()
    if "return=representation" in request.headers.get("prefer", "").replace(" ", ""):
        return JSONResponse(
            checkpoint_view(record, svc.signer, signed=False),
            headers={"Preference-Applied": "return=representation"},
        )
    return Response(status_code=204)


@router.get(
    "/jobs/{jobId}/summary",
    tags=["jobs"],
    responses={200: {"model": JobSummary}, **ERRORS},
    summary="The job's best and latest checkpoints, their count and total size",
)
async def job_summary(jobId: str, svc: ServicesDep, tenant: TenantDep) -> JSONResponse:  # noqa: N803
    summary = await run_in_threadpool(lambda: svc.store.job_summary(jobId, tenant=tenant))

    def view(record: CheckpointRecord | None) -> dict[str, object] | None:
        return None if record is None else checkpoint_view(record, svc.signer)

    return JSONResponse(
        {
            "bestCheckpoint": view(summary.best),
            "latestCheckpoint": view(summary.latest),
            "totalCount": summary.total_count,
            "totalSizeBytes": summary.total_size_bytes,
        }
    )


@router.get("/jobs", tags=["jobs"], response_model=JobList, summary="The caller's job ids")
async def list_jobs(svc: ServicesDep, tenant: TenantDep) -> dict[str, list[str]]:
    return {"jobs": await run_in_threadpool(lambda: svc.store.jobs(tenant=tenant))}


@router.get("/jobs/{jobId}/settings", response_model=JobSettingsBody, tags=["jobs"])
async def get_job_settings(
    jobId: str,  # noqa: N803
    svc: ServicesDep,
    tenant: TenantDep,
) -> dict[str, object]:
    """Which metric decides the best checkpoint, and how many automatic ones to keep."""
    settings = await run_in_threadpool(svc.store.job_settings, jobId, tenant=tenant)
    return settings.as_dict()


@router.put("/jobs/{jobId}/settings", response_model=JobSettingsBody, tags=["jobs"])
async def put_job_settings(
    jobId: str,  # noqa: N803
    body: JobSettingsBody,
    svc: ServicesDep,
    tenant: TenantDep,
) -> dict[str, object]:
    settings = JobSettings.from_dict(body.model_dump())
    await run_in_threadpool(svc.store.set_job_settings, jobId, settings, tenant=tenant)
    return settings.as_dict()


def list_route() -> APIRoute:
    """The API route of ``list_checkpoints``."""
    (route,) = (r for r in router.routes if getattr(r, "endpoint", None) is list_checkpoints)
    assert isinstance(route, APIRoute)
    return route
