"""Signed downloads: no header needed, one hour, Range and resumes, verified bytes.

``/signed/{id}`` gives a single-file checkpoint's bytes under the file's name, or
a folder checkpoint as one tar archive (archive.py: deterministic, so Range works
on it too); ``/signed/{id}/files/{path}`` gives one file of either."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ckptstore.errors import CheckpointNotFound, CheckpointNotReady
from ckptstore.server.deps import ServicesDep
from ckptstore.server.errors import ApiError
from ckptstore.server.ranges import RangeNotSatisfiable, parse_range
from ckptstore.server.schemas import Error
from ckptstore.server.signing import SignatureExpired, SignatureInvalid
from ckptstore.store.catalog import CheckpointRecord

router = APIRouter(tags=["downloads"])
RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/octet-stream": {}, "application/x-tar": {}}},
    206: {"content": {"application/octet-stream": {}, "application/x-tar": {}}},
    403: {"model": Error},
    404: {"model": Error},
    416: {"model": Error},
}


class Body(Protocol):
    """What a download streams: a checkpoint reader or a tar archive of one."""

    @property
    def size(self) -> int: ...

    def iter_range(
        self, start: int = 0, end: int | None = None
    ) -> Iterator[bytes | memoryview]: ...

    def content_digest(self) -> str: ...

    def close(self) -> None: ...


@router.head("/signed/{checkpointId}", include_in_schema=False)
@router.get(
    "/signed/{checkpointId}",
    responses=RESPONSES,
    summary="Download a checkpoint through its signed URL (a folder as tar; supports Range)",
)
async def download(
    checkpointId: str,  # noqa: N803
    request: Request,
    svc: ServicesDep,
    expires: str = "",
    signature: str = "",
) -> Response:
    record = await _signed_record(svc, request, checkpointId, expires, signature, None)

    def open_body() -> tuple[Body, str]:
        if record.layout == "tree":
            archive = svc.store.open_archive(record.checkpoint_id, tenant=record.tenant_id)
            return archive, f"{record.checkpoint_id}.tar"
        (only,) = svc.store.files(record.checkpoint_id, tenant=record.tenant_id)
        return svc.store.open_reader(record.checkpoint_id, tenant=record.tenant_id), only.path

    body, name = await run_in_threadpool(open_body)
    media = "application/x-tar" if record.layout == "tree" else "application/octet-stream"
    return _respond(request, body, name, media, svc.metrics.add_downloaded)


@router.head("/signed/{checkpointId}/files/{path:path}", include_in_schema=False)
@router.get(
    "/signed/{checkpointId}/files/{path:path}",
    responses=RESPONSES,
    summary="Download one file of a checkpoint through its signed URL (supports Range)",
)
async def download_file(
    checkpointId: str,  # noqa: N803
    path: str,
    request: Request,
    svc: ServicesDep,
    expires: str = "",
    signature: str = "",
) -> Response:
    record = await _signed_record(svc, request, checkpointId, expires, signature, path)
    reader = await run_in_threadpool(
        lambda: svc.store.open_reader(record.checkpoint_id, tenant=record.tenant_id, path=path)
    )
    name = path.rsplit("/", 1)[-1]
    return _respond(request, reader, name, "application/octet-stream", svc.metrics.add_downloaded)


async def _signed_record(
    svc: ServicesDep,
    request: Request,
    checkpoint_id: str,
    expires: str,
    signature: str,
    path: str | None,
) -> CheckpointRecord:
    """The checkpoint a signed URL opens; 403 unless the URL is good and unexpired."""
    try:
        record = await run_in_threadpool(svc.store.context.catalog.get_checkpoint, checkpoint_id)
    except CheckpointNotFound:
        record = None
    # An unknown id fails exactly as a wrong signature does: without a valid URL
    # nobody learns which checkpoint ids exist.
    tenant_id = record.tenant_id if record is not None else "\0unknown"
    try:
        for name in ("expires", "signature"):
            if len(request.query_params.getlist(name)) > 1:
                raise SignatureInvalid(f"{name} is given more than once")
        svc.signer.verify(tenant_id, checkpoint_id, expires, signature, path)
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
    return record


def _respond(
    request: Request, body: Body, name: str, media_type: str, count: Callable[[int], None]
) -> Response:
    """The body, or the one byte range asked for, with what a resuming client needs."""
    etag = f'"{body.content_digest()}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": _disposition(name),
    }
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != etag:
        wanted = None  # the client's partial copy is of other content: send it all
    try:
        span = parse_range(wanted, body.size)
    except RangeNotSatisfiable:
        body.close()
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the download has {body.size} bytes",
            {"Content-Range": f"bytes */{body.size}"},
        ) from None
    start, end = span if span is not None else (0, body.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{body.size}"
    if request.method == "HEAD":
        body.close()
        return Response(status_code=status, headers=headers)
    return StreamingResponse(
        _stream(body, start, end, count),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )


def _disposition(name: str) -> str:
    """``attachment`` under ``name``: as is where plain ASCII, and in RFC 6266's UTF-8
    form for clients that read it (``curl -J``, browsers)."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _stream(body: Body, start: int, end: int, count: Callable[[int], None]) -> Iterator[bytes]:
    try:
        for view in body.iter_range(start, end):
            count(len(view))
            yield bytes(view)
    finally:
        body.close()
