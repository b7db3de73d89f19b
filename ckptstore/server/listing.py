"""The list of a job's checkpoints (``GET /v2/training/jobs/{jobId}/checkpoints``):
its page and summary, its answer's bytes, and a route of its own for plain queries.

Listing is what dashboards and trainers poll, so its cost per request decides the
server's request rate. FastAPI's parameter handling (dependency solving, a
pydantic validation per query parameter) cost more than the rest of the route's
own work; ``ListRoute`` answers the queries whose parameters need no conversion
(absent, or spelled as a client library spells them) itself, before the API
route, and leaves every other query to the API route declared in
``routes/checkpoints.py``: a value that FastAPI would convert or refuse gets
FastAPI's answer, as before. Both build the answer with ``list_answer``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from ckptstore.formatting import human_size
from ckptstore.server.deps import Services, tenant
from ckptstore.server.signing import UrlSigner
from ckptstore.server.views import best_summary, checkpoint_view, latest_summary
from ckptstore.store import checkpoints as engine

# checkpoints per list answer: the API names 1-100; more is allowed, and pages beyond
# go by cursor
MAX_PAGE = 1000
MAX_CURSOR = 512  # characters


@dataclass(frozen=True)
class ListParams:
    include_metrics: bool = True
    sort_by: str = "createdAt"
    sort_order: str = "desc"
    limit: int = 50
    types: tuple[str, ...] | None = None
    cursor: str | None = None


def load(
    svc: Services, job_id: str, tenant_id: str, params: ListParams
) -> tuple[engine.CheckpointPage, engine.JobSummary]:
    """The page the parameters ask for and the job's summary, in one read of the
    catalog (run it on a thread)."""
    return svc.store.listing(
        job_id,
        sort_by=params.sort_by,
        order=params.sort_order,
        limit=params.limit,
        tenant=tenant_id,
        types=params.types,
        cursor=params.cursor,
    )


def list_answer(
    page: engine.CheckpointPage,
    summary: engine.JobSummary,
    signer: UrlSigner,
    include_metrics: bool,
) -> bytes:
    """The answer's JSON, byte for byte as Starlette's JSONResponse writes it."""
    shown = [r.metrics for r in page.checkpoints] if include_metrics else []
    if summary.best is not None:
        shown.append(summary.best.metrics)
    body = {
        "checkpoints": [checkpoint_view(r, signer, include_metrics) for r in page.checkpoints],
        "totalCount": page.total_count,
        "nextCursor": page.next_cursor,
        "summary": {
            "bestCheckpoint": best_summary(summary.best),
            "latestCheckpoint": latest_summary(summary.latest),
            "totalSize": human_size(summary.total_size_bytes),
        },
    }
    return encode(body, shown)


def encode(body: dict[str, Any], metrics: list[dict[str, float]]) -> bytes:
    """``body`` as JSON, in the spelling of Python's json module as Starlette's
    JSONResponse calls it (compact, UTF-8, floats as ``repr`` writes them, NaN
    refused), by orjson where that gives the same bytes: its text, integers and the
    floats of ``[1e-4, 1e16)`` are spelled alike (tests/test_server_list_answer.py);
    it writes smaller floats without an exponent (``0.00001``, not ``1e-05``), so
    metrics with one, or anything but numbers, go through the json module. The
    only floats of a list answer are those of its ``metrics``."""
    if _spelled_alike(metrics):
        try:
            return orjson.dumps(body)
        except orjson.JSONEncodeError:  # an integer past 64 bits
            pass
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


def _spelled_alike(metrics: list[dict[str, float]]) -> bool:
    """Whether every value is a number that orjson spells as the json module does:
    zero, or of [1e-4, 1e16) (larger integers go to the json module too). NaN and
    the infinities fail every comparison; text and None fail ``abs``."""
    try:
        return all(
            _FLOAT_LOW <= abs(v) < _FLOAT_HIGH or v == 0 for m in metrics for v in m.values()
        )
    except TypeError:
        return False


# where Python's repr of a float and orjson's agree: repr uses an exponent below
# 1e-4 and from 1e16 on, orjson only from 1e16 on
_FLOAT_LOW = 1e-4
_FLOAT_HIGH = 1e16


_LIMIT = re.compile(r"[1-9][0-9]{0,3}")
_BOOLEANS = {"true": True, "false": False}


def plain_params(query_string: bytes) -> ListParams | None:
    """The list parameters of a query string that needs no conversion, else None: each
    parameter at most once (``type`` may repeat), ``includeMetrics`` true or false,
    ``limit`` a plain decimal from 1 to MAX_PAGE, text values not empty and a cursor
    not too long. Other parameters are ignored, as the API route ignores them."""
    if not query_string:
        return _DEFAULT
    values: dict[str, Any] = {}
    types: list[str] = []
    for name, value in QueryParams(query_string).multi_items():
        if name == "type":
            if not value:
                return None
            types.append(value)
            continue
        field = _FIELDS.get(name)
        if field is None:
            continue
        if field in values or not value:
            return None
        if name == "includeMetrics":
            if value not in _BOOLEANS:
                return None
            values[field] = _BOOLEANS[value]
        elif name == "limit":
            if not _LIMIT.fullmatch(value) or int(value) > MAX_PAGE:
                return None
            values[field] = int(value)
        elif name == "cursor" and len(value) > MAX_CURSOR:
            return None
        else:
            values[field] = value
    return ListParams(**values, types=tuple(types) if types else None)


_DEFAULT = ListParams()
_FIELDS = {
    "includeMetrics": "include_metrics",
    "sortBy": "sort_by",
    "sortOrder": "sort_order",
    "limit": "limit",
    "cursor": "cursor",
}
_PARAMS = "ckptstore.list_params"  # where matches() leaves them for the endpoint


class ListRoute(Route):
    """The list path's GET with plain parameters (``plain_params``), answered without
    FastAPI's parameter handling; the request is counted and logged under the API
    route's path, as before. Any other request on the path does not match here."""

    def __init__(self, api_route: APIRoute) -> None:
        super().__init__(api_route.path, self._answer, methods=["GET"], include_in_schema=False)
        self.methods = {"GET"}  # not HEAD, which Starlette adds and the API route lacks
        self._api_route = api_route

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        match, child_scope = super().matches(scope)
        params = plain_params(scope["query_string"]) if match == Match.FULL else None
        if params is None:
            return Match.NONE, {}
        child_scope["route"] = self._api_route
        child_scope[_PARAMS] = params
        return Match.FULL, child_scope

    async def _answer(self, request: Request) -> Response:
        svc: Services = request.app.state.services
        tenant_id = await tenant(request)
        params: ListParams = request.scope[_PARAMS]
        job_id: str = request.path_params["jobId"]
        page, summary = await run_in_threadpool(load, svc, job_id, tenant_id, params)
        body = list_answer(page, summary, svc.signer, params.include_metrics)
        return Response(body, media_type="application/json")
