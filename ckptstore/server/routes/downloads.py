"""Signed downloads: no header needed, one hour, Range and resumes, verified bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ckptstore.errors import CheckpointNotFound, CheckpointNotReady
from ckptstore.server.deps import ServicesDep
from ckptstore.server.errors import ApiError
from ckptstore.server.ranges import RangeNotSatisfiable, parse_range
from ckptstore.server.schemas import Error
from ckptstore.server.signing import SignatureExpired, SignatureInvalid
from ckptstore.store.restore import CheckpointReader

router = APIRouter(tags=["downloads"])


@router.head("/signed/{checkpointId}", include_in_schema=False)
@router.get(
    "/signed/{checkpointId}",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"content": {"application/octet-stream": {}}},
        403: {"model": Error},
        404: {"model": Error},
        416: {"model": Error},
    },
    summary="Download a checkpoint through its signed URL (supports Range)",
)
async def download(
    checkpointId: str,  # noqa: N803
    request: Request,
    svc: ServicesDep,
    expires: str = "",
    signature: str = "",
) -> Response:
    try:
        record = await run_in_threadpool(svc.store.context.catalog.get_checkpoint, checkpointId)
    except CheckpointNotFound:
        record = None
    # An unknown id fails exactly as a wrong signature does: without a valid URL
    # nobody learns which checkpoint ids exist.
    tenant_id = record.tenant_id if record is not None else "\0unknown"
    try:
        for name in ("expires", "signature"):
            if len(request.query_params.getlist(name)) > 1:
                raise SignatureInvalid(f"{name} is given more than once")
        svc.signer.verify(tenant_id, checkpointId, expires, signature)
        if record is None:
            raise SignatureInvalid("signature does not match")
    except SignatureInvalid as exc:
        raise ApiError(403, "invalid_signature", f"download URL is not valid: {exc}") from None
    except SignatureExpired as exc:
        raise ApiError(
            403, "url_expired", f"download URL {exc}; get a fresh one from the checkpoint"
        ) from None
    if record.status != "ready":
        raise CheckpointNotReady(record.checkpoint_id)
    reader = await run_in_threadpool(
        svc.store.open_reader, record.checkpoint_id, tenant=record.tenant_id
    )
    etag = f'"{reader.content_digest()}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": f'attachment; filename="{record.checkpoint_id}.ckpt"',
    }
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != etag:
        wanted = None  # the client's partial copy is of other content: send it all
    try:
        span = parse_range(wanted, reader.size)
    except RangeNotSatisfiable:
        reader.close()
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"checkpoint has {reader.size} bytes",
            {"Content-Range": f"bytes */{reader.size}"},
        ) from None
    start, end = span if span is not None else (0, reader.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{reader.size}"
    if request.method == "HEAD":
        reader.close()
        return Response(status_code=status, headers=headers)
    return StreamingResponse(
        _stream(reader, start, end, svc.metrics.add_downloaded),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


def _stream(
    reader: CheckpointReader, start: int, end: int, count: Callable[[int], None]
) -> Iterator[bytes]:
    try:
        for view in reader.iter_range(start, end):
            count(len(view))
            yield bytes(view)
    finally:
        reader.close()
