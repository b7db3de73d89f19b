"""The tenant's endpoints (list, undeploy) and storage."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ckptstore.server.ui.pages import CheckedSessionDep, PageRoute, SessionDep, render, services
from ckptstore.server.ui.plot import Chart, growth
from ckptstore.store.checkpoints import StoreStats

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
NOTICES = {"deployed": "Endpoint deployed.", "undeployed": "Endpoint removed."}


@router.get("/endpoints")
async def endpoints(request: Request, session: SessionDep, notice: str = "") -> HTMLResponse:
    svc = services(request)
    records = await run_in_threadpool(svc.store.endpoints, tenant=session.tenant)
    return render(request, "endpoints.html", endpoints=records, notice=NOTICES.get(notice))


@router.post("/endpoints/{endpoint_id}/undeploy")
async def undeploy(
    request: Request, endpoint_id: str, session: CheckedSessionDep
) -> RedirectResponse:
    svc = services(request)
    await run_in_threadpool(svc.store.undeploy, endpoint_id, tenant=session.tenant)
    return RedirectResponse("/ui/endpoints?notice=undeployed", 303)


@router.get("/storage")
async def storage(request: Request, session: SessionDep) -> HTMLResponse:
    svc = services(request)

    def load() -> tuple[StoreStats, list[Chart]]:
        records = [
            record
            for job_id in svc.store.jobs(tenant=session.tenant)
            for record in svc.store.list(job_id, limit=None, tenant=session.tenant).checkpoints
        ]
        return svc.store.tenant_usage(session.tenant), growth(records)

    usage, charts = await run_in_threadpool(load)
    return render(request, "storage.html", usage=usage, charts=charts)
