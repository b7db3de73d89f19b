"""One log line and one set of metrics per request (plain ASGI: no body wrapping)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ckptstore.server.logs import redact
from ckptstore.server.metrics import Metrics

log = logging.getLogger("ckptstore.access")
# a request id a client or proxy sent is kept when it is a plain token
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestObserver:
    """Gives each request an id (``X-Request-ID``: the caller's, or a new one, sent
    back), then counts it by method, route and status, times it, and logs it with its
    tenant, the bytes sent and the time taken."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status, sent = 500, 0

        async def observed_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self._app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self._metrics.count_request(scope["method"], route, status, seconds)
            query = scope.get("query_string", b"").decode("latin-1")
            path = redact(scope["path"] + (f"?{query}" if query else ""))
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                path,
                status,
                seconds * 1000,
                extra={
                    "request_id": request_id,
                    "tenant": scope.get("state", {}).get("tenant"),
                    "method": scope["method"],
                    "route": route,
                    "path": path,
                    "status": status,
                    "ms": round(seconds * 1000, 1),
                    "bytes": sent,
                },
            )
