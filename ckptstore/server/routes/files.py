"""The files of a checkpoint: paths, sizes, modes, SHA-256 and a signed URL each."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ckptstore.server.deps import ServicesDep, TenantDep
from ckptstore.server.routes.checkpoints import ERRORS
from ckptstore.server.schemas import CheckpointFiles
from ckptstore.server.views import file_view
from ckptstore.store.catalog import CheckpointRecord, FileRecord

router = APIRouter(prefix="/v2/training", tags=["checkpoints"])


@router.get(
    "/checkpoints/{checkpointId}/files",
    responses={200: {"model": CheckpointFiles}, **ERRORS},
    summary="A checkpoint's files (one, or a folder's), each with a signed download URL",
)
async def list_files(
    checkpointId: str,  # noqa: N803
    svc: ServicesDep,
    tenant: TenantDep,
) -> JSONResponse:
    def load() -> tuple[CheckpointRecord, list[FileRecord]]:
        record = svc.store.get(checkpointId, tenant=tenant)
        return record, svc.store.files(record.checkpoint_id, tenant=tenant)

    record, files = await run_in_threadpool(load)
    ready = record.status == "ready"
    return JSONResponse(
        {
            "layout": record.layout,
            "sha256": record.sha256,
            "files": [file_view(record, f, svc.signer) for f in files] if ready else [],
        }
    )
