"""A cap on request bodies that are read whole (JSON), so one request cannot fill the
server's memory. The streamed uploads (``PUT .../data`` and ``PUT .../blocks``) have
caps of their own and are left alone here."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ckptstore.server.errors import ApiError, error_response

_STREAMED_SUFFIXES = ("/data", "/blocks")
_WITH_BODY = ("POST", "PUT", "PATCH")


class BodyTooLarge(ApiError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, "body_too_large", f"request body is larger than {limit_bytes} bytes")


class JsonBodyLimit:
    """Answers 413 to a body over ``limit_bytes``: at once when its Content-Length says
    so, else as soon as that many bytes have arrived. These bodies are parsed whole
    anyway, so the body is gathered here and handed on in one message."""

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self._app = app
        self._limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY or _streamed(scope):
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and (len(declared) > 18 or int(declared) > self._limit_bytes)
        body = bytearray()
        more = not too_large
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            too_large = len(body) > self._limit_bytes
            more = more and not too_large
        if too_large:
            exc = BodyTooLarge(self._limit_bytes)
            await error_response(exc.status, exc.code, exc.message)(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: only a disconnect can come
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._app(scope, replay, send)


def _streamed(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return scope.get("method") == "PUT" and path.endswith(_STREAMED_SUFFIXES)
