"""A checkpoint's page: its fields, download link, deploy and delete."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ckptstore.server.ui.lineage import lineage
from ckptstore.server.ui.pages import (
    CheckedSessionDep,
    PageError,
    PageRoute,
    SessionDep,
    render,
    services,
)
from ckptstore.server.views import checkpoint_view, file_view

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
MAX_FILES_SHOWN = 1000  # of a folder checkpoint, on its page (the API lists them all)


@router.get("/checkpoints/{checkpoint_id}")
async def checkpoint(request: Request, checkpoint_id: str, session: SessionDep) -> HTMLResponse:
    svc = services(request)

    def load() -> dict[str, Any]:
        record = svc.store.get(checkpoint_id, tenant=session.tenant)
        pins = svc.store.endpoints(tenant=session.tenant)
        files = svc.store.files(record.checkpoint_id, tenant=session.tenant)
        ready = record.status == "ready"
        return {
            "record": record,
            "view": checkpoint_view(record, svc.signer),
            "files": [file_view(record, f, svc.signer) for f in files[:MAX_FILES_SHOWN]]
            if ready
            else [],
            "file_count": len(files),
            "endpoints": [e for e in pins if e.checkpoint_id == record.checkpoint_id],
            "lineage": lineage(svc.store, record),
        }

    return render(request, "checkpoint.html", **await run_in_threadpool(load))


@router.post("/checkpoints/{checkpoint_id}/deploy")
async def deploy(
    request: Request,
    checkpoint_id: str,
    session: CheckedSessionDep,
    name: Annotated[str, Form()] = "",
    gpu_ids: Annotated[str, Form()] = "",
    worker_count: Annotated[str, Form()] = "1",
) -> RedirectResponse:
    svc = services(request)
    try:
        workers = int(worker_count)
    except ValueError:
        raise PageError(400, "Invalid form", "Workers: a positive integer.") from None
    if not name.strip():
        raise PageError(400, "Invalid form", "Name: give the endpoint a name.")
    gpus = [g.strip() for g in gpu_ids.split(",") if g.strip()]

    def create() -> None:
        record = svc.store.get(checkpoint_id, tenant=session.tenant)
        svc.store.deploy(
            record.checkpoint_id,
            name=name.strip(),
            gpu_ids=gpus,
            worker_count=workers,
            tenant=session.tenant,
        )

    await run_in_threadpool(create)
    return RedirectResponse("/ui/endpoints?notice=deployed", 303)


@router.get("/checkpoints/{checkpoint_id}/delete")
async def confirm_delete(request: Request, checkpoint_id: str, session: SessionDep) -> HTMLResponse:
    svc = services(request)
    record = await run_in_threadpool(svc.store.get, checkpoint_id, tenant=session.tenant)
    return render(request, "delete.html", record=record)


@router.post("/checkpoints/{checkpoint_id}/delete")
async def delete(
    request: Request,
    checkpoint_id: str,
    session: CheckedSessionDep,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Deletes only with ``confirm=yes`` (the confirmation page's button); without it
    the confirmation page is shown again and nothing is deleted."""
    svc = services(request)
    if confirm != "yes":
        record = await run_in_threadpool(svc.store.get, checkpoint_id, tenant=session.tenant)
        return render(request, "delete.html", status=400, record=record, unconfirmed=True)
    record = await run_in_threadpool(svc.store.delete, checkpoint_id, tenant=session.tenant)
    svc.gc.after_delete()
    return RedirectResponse(f"/ui/jobs/{quote(record.job_id, safe='')}?notice=deleted", 303)
