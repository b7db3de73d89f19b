"""Which methods a path takes: ``OPTIONS`` answers with them, and a 405 names them all.

Starlette answers ``OPTIONS`` on an API route with 405, and a 405's ``Allow`` with
the methods of the first route matching the path only (``GET`` for
``/v2/training/checkpoints/{id}``, which takes ``DELETE`` too). The table here is
built from every route of the app, once, when first asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fastapi import FastAPI, routing
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send


class MethodTable:
    """The methods of every route of ``app``, by path pattern."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._table: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def allowed(self, path: str) -> list[str]:
        """The methods ``path`` takes (OPTIONS among them if any), sorted; [] for none."""
        if self._table is None:
            self._table = _table(self._app.routes)
        found = {m for pattern, methods in self._table if pattern.match(path) for m in methods}
        return sorted(found | {"OPTIONS"}) if found else []


def _table(routes: Iterable[object]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    # FastAPI 0.16x nests included routers; iter_route_contexts flattens them
    flatten = getattr(routing, "iter_route_contexts", lambda routes: routes)
    table = []
    for route in flatten(routes):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path and methods:  # a mount (static files) has no methods of its own
            table.append((compile_path(path)[0], frozenset(methods)))
    return table


class OptionsAnswer:
    """ASGI middleware: ``OPTIONS`` on a path some route takes is 204 with ``Allow``
    (no key needed: the methods are in the public OpenAPI schema); on any other path
    it goes on (to a 404)."""

    def __init__(self, app: ASGIApp, table: MethodTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            allowed = self.table.allowed(scope["path"])
            if allowed:
                headers = [(b"allow", ", ".join(allowed).encode())]
                await send({"type": "http.response.start", "status": 204, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
