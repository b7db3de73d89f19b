"""Operations: health, Prometheus metrics, storage stats, GC on demand."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from ckptstore.blockframes import FRAME_VERSIONS
from ckptstore.server.deps import AdminDep, ServicesDep, TenantDep
from ckptstore.server.schemas import GcResult, Health, Stats, StoreInfo
from ckptstore.store.checkpoints import FORMAT_VERSION

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    responses={200: {"model": Health}, 507: {"model": Health}},
    summary="Liveness, catalog reachability and room to write (no key needed)",
)
async def healthz(svc: ServicesDep) -> JSONResponse:
    await run_in_threadpool(svc.store.context.catalog.get_setting, "format_version")
    free_bytes = shutil.disk_usage(svc.settings.data_dir).free
    if free_bytes < svc.settings.min_free_bytes:
        # still serving reads, but a load balancer should send writes elsewhere
        return JSONResponse({"status": "insufficient_storage", "freeBytes": free_bytes}, 507)
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics (admin key)",
)
async def metrics(svc: ServicesDep, admin: AdminDep) -> PlainTextResponse:
    text = await run_in_threadpool(svc.metrics.render)
    return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v2/stats",
    responses={200: {"model": Stats}},
    summary="Storage use of the caller's checkpoints, and dedup",
)
async def stats(svc: ServicesDep, tenant: TenantDep) -> JSONResponse:
    usage = await run_in_threadpool(svc.store.tenant_usage, tenant)
    return JSONResponse(
        {
            "checkpoints": usage.checkpoints,
            "logicalBytes": usage.logical_bytes,
            "storedBytes": usage.stored_bytes,
            "dedupRatio": usage.dedup_ratio,
        }
    )


@router.get(
    "/v2/store",
    responses={200: {"model": StoreInfo}},
    summary="What a client needs to cut and send blocks like the store",
)
async def store_info(svc: ServicesDep, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(
        {
            "formatVersion": FORMAT_VERSION,
            "chunker": svc.store.context.chunker.as_dict(),
            "maxBlockBatchBytes": svc.settings.max_block_batch_bytes,
            "blockBatchEncodings": ["identity", "zstd"],
            "blockFrameVersions": list(FRAME_VERSIONS),
        }
    )


@router.post(
    "/v2/gc",
    responses={200: {"model": GcResult}},
    summary="Run garbage collection now (admin key)",
)
async def gc(
    svc: ServicesDep,
    admin: AdminDep,
    grace: Annotated[
        float | None,
        Query(
            ge=0,
            description="Seconds a block must have been unused to go, this run only"
            " (default: the server's CKPTSTORE_GC_GRACE; 0 reclaims at once)",
        ),
    ] = None,
) -> JSONResponse:
    report = await svc.gc.run_now(grace_s=grace)
    return JSONResponse({_camel(k): v for k, v in asdict(report).items()})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
