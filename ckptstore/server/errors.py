"""Every error leaves the server as ``{"error": {"code", "message"}}``, mapped here once."""

from __future__ import annotations

import errno

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ckptstore.errors import CkptStoreError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class ApiError(Exception):
    """An error of the HTTP layer itself (auth, signatures, ranges, body size)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return 400, "malformed_json", "request body is not valid JSON"
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    parameter = ".".join(location) or "body"
    return 422, "invalid_argument", f"invalid {parameter}: {first.get('msg', 'invalid value')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CkptStoreError)
    async def store_error(request: Request, exc: CkptStoreError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, str(exc))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*_validation_message(exc))

    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in _NO_SPACE:
            return error_response(507, "insufficient_storage", "the store's disk is full")
        return await unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception and its traceback after this answer is sent.
        return error_response(500, "internal_error", "internal server error; see the server log")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))
