"""Endpoints: records that deploy (and so pin) a checkpoint.

Serving models is outside a storage service. An endpoint records which
checkpoint a serving deployment uses, keeps that checkpoint from being
deleted, and hands the serving worker a fresh signed URL on every GET.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ckptstore.server.deps import ServicesDep, TenantDep
from ckptstore.server.routes.checkpoints import ERRORS
from ckptstore.server.schemas import (
    DeployEndpoint,
    Endpoint,
    EndpointList,
    Error,
    UpdateEndpoint,
)
from ckptstore.server.views import endpoint_view

router = APIRouter(prefix="/v2/endpoints", tags=["endpoints"])


@router.post(
    "",
    status_code=201,
    responses={201: {"model": Endpoint}, 409: {"model": Error}, **ERRORS},
    summary="Deploy a checkpoint as an endpoint (pins the checkpoint)",
)
async def deploy(body: DeployEndpoint, svc: ServicesDep, tenant: TenantDep) -> JSONResponse:
    record = await run_in_threadpool(
        lambda: svc.store.deploy(
            body.checkpointId,
            name=body.name,
            gpu_ids=body.gpuIds,
            worker_count=body.workerCount,
            tenant=tenant,
        )
    )
    return JSONResponse(endpoint_view(record, svc.settings.base_url, svc.signer), status_code=201)


@router.get("", responses={200: {"model": EndpointList}}, summary="List endpoints")
async def list_endpoints(svc: ServicesDep, tenant: TenantDep) -> JSONResponse:
    records = await run_in_threadpool(svc.store.endpoints, tenant=tenant)
    base = svc.settings.base_url
    return JSONResponse({"endpoints": [endpoint_view(r, base, svc.signer) for r in records]})


@router.get(
    "/{endpointId}",
    responses={200: {"model": Endpoint}, **ERRORS},
    summary="One endpoint, with a fresh signed URL of its checkpoint",
)
async def get_endpoint(endpointId: str, svc: ServicesDep, tenant: TenantDep) -> JSONResponse:  # noqa: N803
    record = await run_in_threadpool(svc.store.endpoint, endpointId, tenant=tenant)
    return JSONResponse(endpoint_view(record, svc.settings.base_url, svc.signer))


@router.patch(
    "/{endpointId}",
    responses={200: {"model": Endpoint}, 409: {"model": Error}, **ERRORS},
    summary="Change an endpoint: re-point it to another checkpoint, rename it",
)
async def update_endpoint(
    endpointId: str,  # noqa: N803
    body: UpdateEndpoint,
    svc: ServicesDep,
    tenant: TenantDep,
) -> JSONResponse:
    record = await run_in_threadpool(
        lambda: svc.store.update_endpoint(
            endpointId,
            checkpoint_id=body.checkpointId,
            name=body.name,
            gpu_ids=body.gpuIds,
            worker_count=body.workerCount,
            tenant=tenant,
        )
    )
    return JSONResponse(endpoint_view(record, svc.settings.base_url, svc.signer))


@router.delete("/{endpointId}", status_code=204, responses=ERRORS, summary="Delete an endpoint")
async def delete_endpoint(endpointId: str, svc: ServicesDep, tenant: TenantDep) -> Response:  # noqa: N803
    await run_in_threadpool(svc.store.undeploy, endpointId, tenant=tenant)
    return Response(status_code=204)
