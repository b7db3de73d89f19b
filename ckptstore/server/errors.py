"""Every error leaves the server as ``{"error": {"code", "message"}}``, mapped here once.

An error of the store also names its class and carries its attributes
(``{"type": "CheckpointNotFound", "fields": {"checkpointId": ...}}``), and so
does a request the schema rejects (``InvalidArgument`` with ``parameter``), so a
client raises the very class the store would have raised.
"""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ckptstore.errors import CkptStoreError, InvalidArgument, StorageFull
from ckptstore.store.blockstore.s3 import ObjectStoreError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger("ckptstore.server")


class ApiError(Exception):
    """An error of the HTTP layer itself (auth, signatures, ranges, body size)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    error: CkptStoreError | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if error is not None:
        body |= {"type": type(error).__name__, "fields": error.wire_fields()}
    return JSONResponse({"error": body}, status, headers=headers)


def store_error_response(error: CkptStoreError) -> JSONResponse:
    """The answer for an error of the store (or a request it would reject)."""
    return error_response(error.http_status, error.code, str(error), error=error)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return error_response(400, "malformed_json", "request body is not valid JSON")
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    parameter = ".".join(location) or "body"
    allowed = str(first.get("msg", "invalid value"))
    value = first.get("input")
    fields = {
        "parameter": parameter,
        # a scalar is echoed; a whole body or list is not (the caller has it)
        "value": value if value is None or isinstance(value, str | int | float) else None,
        "allowed": allowed,
    }
    error = InvalidArgument.from_wire(f"invalid {parameter}: {allowed}", fields)
    return store_error_response(error)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CkptStoreError)
    async def store_error(request: Request, exc: CkptStoreError) -> JSONResponse:
        return store_error_response(exc)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in _NO_SPACE:
            return store_error_response(StorageFull(exc.strerror or ""))
        if isinstance(exc, ObjectStoreError):
            # the bucket failed past the S3 client's retries: a service this one needs
            # is down, so 503; its address and answer stay in the server's log
            log.warning("object storage failed: %s", exc)
            return error_response(
                503,
                "storage_unavailable",
                "object storage did not answer; try again later",
                {"Retry-After": "5"},
            )
        return await unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception and its traceback after this answer is sent.
        return error_response(500, "internal_error", "internal server error; see the server log")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        table = getattr(request.app.state, "methods", None)
        if exc.status_code == 405 and table is not None:
            # every method the path takes, not only those of the first route matching it
            headers = {**(headers or {}), "Allow": ", ".join(table.allowed(request.url.path))}
        return error_response(exc.status_code, code, str(exc.detail), headers)
