"""Block fetch: a checkpoint's blocks as the store keeps them, for clients that decode.

1. ``GET .../blocks`` (``?held=ID``: a checkpoint the client holds): the block list,
   compact (ids and lengths packed, base64), the files, and with ``held`` the index
   in the held checkpoint's list of the block to send each block as a delta on.
2. ``POST .../blocks/fetch`` ``{"blocks": [...], "bases": [...]}``: a stream of
   frames (``store/fetchframes.py``). Resuming is asking again for the blocks not
   received; each request stands alone.

The store side is ``store/blockfetch.py``: what is sent, and what a tenant may name.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ckptstore.errors import CheckpointNotReady, CkptStoreError, InvalidArgument
from ckptstore.server.deps import ServicesDep, TenantDep
from ckptstore.server.routes.checkpoints import ERRORS
from ckptstore.server.schemas import EXAMPLE_BLOCK, EXAMPLE_ID, Error
from ckptstore.store.blockfetch import MAX_FETCH_BLOCKS, BlockFetch, Listing, listing
from ckptstore.store.catalog import CheckpointRecord
from ckptstore.store.fetchframes import FRAMES_MEDIA, error_frame
from ckptstore.store.ids import parse_block_id

router = APIRouter(prefix="/v2/training/checkpoints", tags=["downloads"])
HEX_ID = Annotated[str, Field(json_schema_extra={"pattern": "^[0-9a-f]{64}$"})]


class ListedFile(BaseModel):
    path: str
    offset: int
    sizeBytes: int  # noqa: N815
    mode: int


class BlockList(BaseModel):
    """A checkpoint's blocks in order. ``blockIds``: the ids (32 bytes each) end to end,
    base64; ``rawLengths``: each block's length in bytes, u32 little-endian end to end,
    base64; ``heldBases`` (with ``held``): for each block an index into the held
    checkpoint's block list, i32 little-endian, base64 (-1: no base there). A block
    starts where the one before it ends; each file at its ``offset``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "checkpointId": EXAMPLE_ID,
                    "layout": "file",
                    "sizeBytes": 1048576,
                    "contentDigest": "5d0b1c2e3f40516273849a0b1c2d3e4f",
                    "files": [
                        {
                            "path": "model.safetensors",
                            "offset": 0,
                            "sizeBytes": 1048576,
                            "mode": 420,
                        }
                    ],
                    "blockCount": 1,
                    "blockIds": base64.b64encode(bytes.fromhex(EXAMPLE_BLOCK)).decode(),
                    "rawLengths": base64.b64encode((1048576).to_bytes(4, "little")).decode(),
                    "held": None,
                    "heldBases": None,
                }
            ]
        }
    )
    checkpointId: str  # noqa: N815
    layout: str
    sizeBytes: int  # noqa: N815
    contentDigest: str  # noqa: N815
    files: list[ListedFile]
    blockCount: int  # noqa: N815
    blockIds: str  # noqa: N815
    rawLengths: str  # noqa: N815
    held: str | None
    heldBases: str | None  # noqa: N815


class FetchBody(BaseModel):
    """Blocks to send, in order; ``bases``, when given, one per block: the id of a block
    the client holds (from the held checkpoint, ``heldBases``) to send it as a delta
    on, or null."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"blocks": [EXAMPLE_BLOCK], "bases": [None]}]},
    )
    blocks: list[HEX_ID] = Field(min_length=1, max_length=MAX_FETCH_BLOCKS)
    bases: list[HEX_ID | None] | None = Field(default=None, max_length=MAX_FETCH_BLOCKS)


FETCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Frames, one per block sent (bases of deltas first): flags (u8:"
        " 1 = has a base, 128 = error) | codec (u8) | reserved (u16) | raw length (u32 LE)"
        " | payload length (u32 LE) | block id (32) | base id (32, only with a base) |"
        " payload. An error frame's payload is a JSON error answer; the stream ends"
        " after it. A stream cut short is resumed by asking for the blocks not received.",
        "content": {FRAMES_MEDIA: {"schema": {"type": "string", "format": "binary"}}},
    },
    409: {"model": Error},
    **ERRORS,
}


@router.get(
    "/{checkpointId}/blocks",
    responses={200: {"model": BlockList}, 409: {"model": Error}, **ERRORS},
    summary="A checkpoint's block list, for fetching its blocks (paired with a held one)",
)
async def block_list(
    checkpointId: str,  # noqa: N803
    svc: ServicesDep,
    tenant: TenantDep,
    held: Annotated[
        str | None,
        Query(
            max_length=256,
            description="A checkpoint of the caller's that the client holds (its id or a"
            " reference): heldBases then pairs each block with one of its blocks.",
        ),
    ] = None,
) -> JSONResponse:
    def load() -> Listing:
        record = _ready(svc, checkpointId, tenant)
        held_record = None if held is None else _ready(svc, held, tenant)
        return listing(svc.store.context, record, held_record)

    found = await run_in_threadpool(load)
    return JSONResponse(_list_view(found))


def _list_view(found: Listing) -> dict[str, object]:
    def packed(values: list[int], dtype: str) -> str:
        return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()

    bases = found.held_bases
    return {
        "checkpointId": found.record.checkpoint_id,
        "layout": found.record.layout,
        "sizeBytes": found.record.size_bytes,
        "contentDigest": found.digest,
        "files": [
            {"path": f.path, "offset": f.offset, "sizeBytes": f.size_bytes, "mode": f.mode}
            for f in found.files
        ],
        "blockCount": len(found.block_ids),
        "blockIds": base64.b64encode(b"".join(found.block_ids)).decode(),
        "rawLengths": packed(found.raw_lens, "<u4"),
        "held": found.held_id,
        "heldBases": None if bases is None else packed(bases, "<i4"),
    }


@router.post(
    "/{checkpointId}/blocks/fetch",
    response_class=Response,
    responses=FETCH_RESPONSES,
    summary="Fetch blocks of a checkpoint as stored frames (deltas on held blocks)",
)
async def fetch_blocks(
    checkpointId: str,  # noqa: N803
    body: FetchBody,
    svc: ServicesDep,
    tenant: TenantDep,
) -> Response:
    if body.bases is not None and len(body.bases) != len(body.blocks):
        raise InvalidArgument("bases", len(body.bases), "one base (or null) per block")
    blocks = [parse_block_id(b) for b in body.blocks]
    bases = [None if b is None else parse_block_id(b) for b in body.bases or [None] * len(blocks)]

    def prepare() -> BlockFetch:
        _ready(svc, checkpointId, tenant)
        return BlockFetch(svc.store.context, tenant, list(zip(blocks, bases, strict=True)))

    fetch = await run_in_threadpool(prepare)
    return StreamingResponse(_stream(fetch, svc), media_type=FRAMES_MEDIA)


def _stream(fetch: BlockFetch, svc: ServicesDep) -> Iterator[bytes]:
    """The frames; an error once the answer has begun ends it with an error frame."""
    try:
        for frame in fetch.frames():
            svc.metrics.add_downloaded(len(frame))
            yield frame
    except CkptStoreError as exc:
        error = {"code": exc.code, "message": str(exc)}
        yield error_frame(
            {"error": error | {"type": type(exc).__name__, "fields": exc.wire_fields()}}
        )


def _ready(svc: ServicesDep, reference: str, tenant: str) -> CheckpointRecord:
    record = svc.store.get(reference, tenant=tenant)
    if record.status != "ready":
        raise CheckpointNotReady(record.checkpoint_id)
    return record
