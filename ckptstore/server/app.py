"""The FastAPI application: the checkpoint API over a CheckpointStore."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ckptstore.config import ServerSettings
from ckptstore.server.admission import UploadAdmission
from ckptstore.server.deps import Services
from ckptstore.server.errors import install_error_handlers
from ckptstore.server.gc_worker import GcWorker
from ckptstore.server.limits import JsonBodyLimit
from ckptstore.server.logs import redact_access_log
from ckptstore.server.metrics import Metrics
from ckptstore.server.routes import checkpoints, downloads, endpoints, ops, uploads
from ckptstore.server.signing import UrlSigner
from ckptstore.store.checkpoints import CheckpointStore


def create_app(
    store: CheckpointStore,
    settings: ServerSettings,
    *,
    clock: Callable[[], float] = time.time,
    close_store: bool = False,
) -> FastAPI:
    """The app serving ``store``; background GC runs while the app's lifespan does."""
    redact_access_log()
    signer = UrlSigner(
        settings.resolved_signing_keys(), settings.base_url, settings.url_ttl_s, clock
    )
    gc = GcWorker(store, settings.gc_interval_s, settings.gc_after_delete_s)
    admission = UploadAdmission(
        settings.uploads_per_tenant, settings.upload_threads, settings.body_read_timeout_s
    )
    services = Services(store, signer, settings, gc, Metrics(), admission)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gc.start()
        try:
            yield
        finally:
            await gc.stop()
            if close_store:
                store.close()

    app = FastAPI(
        title="ckptstore",
        version="0.1.0",
        description="Deduplicating storage for ML training checkpoints.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (checkpoints, uploads, downloads, endpoints, ops):
        app.include_router(module.router)

    app.add_middleware(JsonBodyLimit, limit_bytes=settings.max_json_body_bytes)
    app.add_middleware(RequestCounter, metrics=services.metrics)
    return app


class RequestCounter:
    """Counts requests by method, route template and status (plain ASGI: no body wrapping)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self._metrics.count_request(scope["method"], route, status)


def app_from_env() -> FastAPI:
    """Uvicorn factory: ``uvicorn --factory ckptstore.server.app:app_from_env``."""
    settings = ServerSettings.from_env()
    store = CheckpointStore.open(
        settings.data_dir, catalog=settings.catalog, config=settings.store_config()
    )
    return create_app(store, settings, close_store=True)
