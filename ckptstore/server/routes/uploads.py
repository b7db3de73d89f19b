"""Uploading a pending checkpoint's data: a raw stream, or dedup-aware by blocks.

Dedup-aware protocol (the client cuts with the store's chunker and hashes):

1. ``POST .../blocks/missing`` ``{"blockIds": [...]}`` -> ``{"missing": [...]}``;
   the blocks not listed are leased to this upload until it commits.
2. ``PUT .../blocks`` with a body of frames ``block_id[32] | u32 length (LE) | bytes``,
   at most ``max_block_batch_bytes`` per request (after decoding: a body may be
   one zstd frame with ``Content-Encoding: zstd``); every block is re-hashed.
   With ``Content-Type: application/x-ckptstore-blocks; version=2`` each frame
   is ``block_id[32] | u32 length | u8 width | u16 slot length | slot (UTF-8) |
   bytes``: a tensor block's element width and slot, as the store's cutter
   gives them, so it is encoded by its dtype and as a delta against the job's
   previous checkpoint when that is smaller. With ``version=3`` each block comes
   encoded by one of the store's codecs, raw or as a delta on a base block
   (blockframes.py): the server rebuilds it from its own copy of the base, which
   must be a block of the tenant's own checkpoints or of this upload (else 422
   ``delta_base_unavailable``, whether it is absent or another tenant's), and the
   blocks' raw lengths count against ``max_block_batch_bytes``.
3. ``POST .../commit`` ``{"blockIds": [...], "slots": [...]}`` (the checkpoint's
   blocks in order; ``slots`` optional, one per block, null for opaque ones), and
   optionally ``"files": [{"path", "sizeBytes", "mode"}]`` with ``"layout":
   "tree"`` for a folder (files in sorted path order, each cut on its own, so each
   starts at a block edge). The server computes the files' SHA-256 by reading the
   checkpoint back after the commit (``sha256`` is null until then).

Each request stands alone (state lives in the catalog), so a client may
retry or spread the blocks over several server replicas.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Annotated, Any

import anyio.from_thread
import zstandard
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ckptstore.blockframes import (
    FRAMES_V2,
    FRAMES_V3,
    is_v2,
    is_v3,
    parse_frames,
    parse_frames_v3,
)
from ckptstore.errors import InvalidArgument
from ckptstore.server.admission import UploadAdmission
from ckptstore.server.deps import ServicesDep, TenantDep
from ckptstore.server.errors import ApiError
from ckptstore.server.routes.checkpoints import ERRORS
from ckptstore.server.schemas import (
    MAX_COUNTER,
    MAX_PATH_CHARS,
    BlockIds,
    Checkpoint,
    CommitBody,
    Error,
    Missing,
)
from ckptstore.server.views import checkpoint_view
from ckptstore.store.catalog import CheckpointRecord
from ckptstore.store.ids import parse_block_id
from ckptstore.store.uploads import Upload

router = APIRouter(prefix="/v2/training/checkpoints", tags=["uploads"])
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Error}}
_ENCODING = (
    " Content-Encoding: identity (the default) or zstd (one or more zstd frames, decoded"
    " as they arrive)."
)
DATA_BODY = {
    "requestBody": {
        "required": True,
        "description": "The checkpoint's bytes, streamed (any length)." + _ENCODING,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
BLOCKS_BODY = {
    "requestBody": {
        "required": True,
        "description": "Block frames, one after another, at most maxBlockBatchBytes"
        " (GET /v2/store) once decoded. Each frame of application/octet-stream is"
        " block id (32 bytes, BLAKE3 of the block) | length (u32, little-endian) |"
        " the block's bytes. With Content-Type " + FRAMES_V2 + " each frame is"
        " block id (32) | length (u32 LE) | element width (u8, 0: opaque bytes) |"
        " slot length (u16 LE) | slot (UTF-8, <tensor>#<index>) | the block's bytes."
        " With Content-Type " + FRAMES_V3 + " each frame is block id (32) | payload length"
        " (u32 LE) | raw length (u32 LE) | codec (u8: the store's codec id of the payload,"
        " one of 0 (the raw bytes), 1, 4, 6, 7, 8; FORMAT.md, Codecs) | element width (u8) |"
        " slot length (u16 LE) | base block id (32 bytes, only for a codec that decodes"
        " against a base: 6, 8) | slot | payload. The server rebuilds each block (a delta"
        " from its own copy of the base) and checks its id; the base must be a block of the"
        " caller's"
        " own checkpoints or of this upload, else 422 delta_base_unavailable (the same"
        " answer for an absent block and for another tenant's); a payload that does not"
        " decode is 422 undecodable_block. The raw lengths of a request's blocks count"
        " against maxBlockBatchBytes, and so do those of the distinct bases its deltas"
        " name (else 422 delta_bases_too_large)." + _ENCODING,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            FRAMES_V2: {"schema": {"type": "string", "format": "binary"}},
            FRAMES_V3: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class _BodyFromThread:
    """The request body as a plain iterator, for the engine running in a worker thread;
    each chunk is awaited under the admission's read timeout."""

    def __init__(
        self,
        stream: AsyncIterator[bytes],
        count: Callable[[int], None],
        next_chunk: Callable[[AsyncIterator[bytes]], Coroutine[Any, Any, bytes | None]],
    ) -> None:
        self._stream = stream
        self._count = count
        self._next_chunk = next_chunk

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk: bytes | None = anyio.from_thread.run(self._next_chunk, self._stream)
        if chunk is None:
            raise StopIteration
        self._count(len(chunk))
        return chunk


def _unzstd_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The decoded bytes of a body of one or more zstd frames, as they arrive; 400 if
    it is not zstd or ends inside a frame."""
    decoder = zstandard.ZstdDecompressor()
    frame = decoder.decompressobj()
    started = False
    for chunk in chunks:
        data = chunk
        while data:
            started = True
            try:
                out = frame.decompress(data)
            except zstandard.ZstdError as exc:
                raise ApiError(400, "malformed_body", f"body is not valid zstd: {exc}") from None
            if out:
                yield out
            data = frame.unused_data if frame.eof else b""
            if frame.eof:
                frame, started = decoder.decompressobj(), bool(data)
    if started:
        raise ApiError(400, "malformed_body", "body ends inside a zstd frame")


@router.put(
    "/{checkpointId}/data",
    responses={200: {"model": Checkpoint}, **CONFLICT, **ERRORS},
    summary="Upload a pending checkpoint's bytes as one streamed body",
    openapi_extra=DATA_BODY,
)
async def put_data(
    checkpointId: str,  # noqa: N803
    request: Request,
    svc: ServicesDep,
    tenant: TenantDep,
    # extension: where training was, for a checkpoint requested before its data existed
    epoch: Annotated[int | None, Query(ge=0, le=MAX_COUNTER)] = None,
    step: Annotated[int | None, Query(ge=0, le=MAX_COUNTER)] = None,
    metrics: Annotated[
        str | None, Query(max_length=64 * 1024, description='A JSON object: {"loss": 0.5}')
    ] = None,
    # extension: the file's name (the default is <checkpointId>.ckpt)
    fileName: Annotated[str | None, Query(max_length=MAX_PATH_CHARS)] = None,  # noqa: N803
) -> JSONResponse:
    encoding = _encoding(request)
    async with svc.uploads.slot(tenant):
        body: Iterable[bytes] = _BodyFromThread(
            request.stream().__aiter__(), svc.metrics.add_uploaded, svc.uploads.next_chunk
        )
        if encoding == "zstd":
            body = _unzstd_stream(body)
        source = body

        given = _metrics(metrics)

        def fill() -> CheckpointRecord:
            return svc.store.fill(
                checkpointId,
                source,
                tenant=tenant,
                file_name=fileName,
                epoch=epoch,
                step=step,
                metrics=given,
            )

        record = await svc.uploads.run(fill)
    return JSONResponse(checkpoint_view(record, svc.signer))


@router.post(
    "/{checkpointId}/blocks/missing",
    responses={200: {"model": Missing}, **CONFLICT, **ERRORS},
    summary="Which of these blocks must be sent (the others are leased to this upload)",
)
async def missing_blocks(
    checkpointId: str,  # noqa: N803
    body: BlockIds,
    svc: ServicesDep,
    tenant: TenantDep,
) -> dict[str, list[str]]:
    ids = [parse_block_id(text) for text in body.blockIds]

    def ask() -> list[bytes]:
        return svc.store.resume_upload(checkpointId, tenant=tenant).missing(ids)

    return {"missing": [bid.hex() for bid in await run_in_threadpool(ask)]}


@router.put(
    "/{checkpointId}/blocks",
    status_code=204,
    responses={**CONFLICT, **ERRORS, 413: {"model": Error}},
    summary="Upload a batch of blocks (frames of id, length, bytes)",
    openapi_extra=BLOCKS_BODY,
)
async def put_blocks(
    checkpointId: str,  # noqa: N803
    request: Request,
    svc: ServicesDep,
    tenant: TenantDep,
) -> Response:
    cap = svc.settings.max_block_batch_bytes
    encoding = _encoding(request)
    async with svc.uploads.slot(tenant):
        body = await _read_capped(request, cap, svc.uploads)
        svc.metrics.add_uploaded(len(body))
        if encoding == "zstd":
            body = await svc.uploads.run(lambda: _unzstd(body, cap))
        put = _putter(body, request.headers.get("content-type", ""), cap)

        def store_blocks() -> None:
            upload = svc.store.resume_upload(checkpointId, tenant=tenant)
            put(upload)
            upload.flush()

        await svc.uploads.run(store_blocks)
    return Response(status_code=204)  # no body: a 204 with one breaks the connection


@router.post(
    "/{checkpointId}/commit",
    responses={200: {"model": Checkpoint}, **CONFLICT, **ERRORS},
    summary="Make the checkpoint from its blocks, in order",
)
async def commit(
    checkpointId: str,  # noqa: N803
    body: CommitBody,
    svc: ServicesDep,
    tenant: TenantDep,
) -> JSONResponse:
    ids = [parse_block_id(text) for text in body.blockIds]

    def finish() -> CheckpointRecord:
        upload = svc.store.resume_upload(
            checkpointId, tenant=tenant, epoch=body.epoch, step=body.step, metrics=body.metrics
        )
        files = None
        if body.files is not None:
            files = [(f.path, f.sizeBytes, f.mode) for f in body.files]
        return upload.commit(ids, body.slots, files, tree=body.layout == "tree")

    async with svc.uploads.slot(tenant):
        record = await svc.uploads.run(finish)
    return JSONResponse(checkpoint_view(record, svc.signer))


def _putter(body: bytearray, content_type: str, cap: int) -> Callable[[Upload], None]:
    """How to store the frames of ``body``, parsed now (400 if malformed): as sent raw
    (versions 1 and 2), or encoded (version 3: 413 if they hold more than ``cap`` raw
    bytes; 422 delta_bases_too_large if their bases do)."""
    if not is_v3(content_type):
        frames = parse_frames(body, v2=is_v2(content_type))
        return lambda upload: upload.put_blocks(frames)
    sent = parse_frames_v3(body)
    if sum(block.raw_len for block in sent) > cap:
        raise ApiError(413, "body_too_large", f"a block batch may hold at most {cap} raw bytes")
    return lambda upload: upload.put_sent(sent, max_base_bytes=cap)


def _metrics(text: str | None) -> dict[str, float] | None:
    """The ``metrics`` query parameter: a JSON object of numbers (checked by the store)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgument("metrics", text[:100], 'a JSON object: {"loss": 0.5}') from None
    if not isinstance(value, dict):
        raise InvalidArgument("metrics", text[:100], 'a JSON object: {"loss": 0.5}')
    return value


def _encoding(request: Request) -> str:
    """The body's Content-Encoding: identity or zstd; 415 for any other."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "zstd"):
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}: use zstd")
    return encoding


async def _read_capped(request: Request, cap: int, admission: UploadAdmission) -> bytearray:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > cap):
        raise ApiError(413, "body_too_large", f"a block batch may be at most {cap} bytes")
    body = bytearray()
    stream = request.stream().__aiter__()
    while (chunk := await admission.next_chunk(stream)) is not None:
        body += chunk
        if len(body) > cap:
            raise ApiError(413, "body_too_large", f"a block batch may be at most {cap} bytes")
    return body


def _unzstd(body: bytearray, cap: int) -> bytearray:
    """The decoded batch, of every frame in the body; 413 past ``cap`` bytes, 400 if it
    is not zstd."""
    reader = zstandard.ZstdDecompressor().stream_reader(bytes(body), read_across_frames=True)
    try:
        decoded = bytearray(reader.read(cap + 1))
    except zstandard.ZstdError as exc:
        raise ApiError(400, "malformed_batch", f"body is not valid zstd: {exc}") from None
    if len(decoded) > cap:
        raise ApiError(413, "body_too_large", f"a decoded block batch may be at most {cap} bytes")
    return decoded
