"""The FastAPI application: the checkpoint API over a CheckpointStore."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ckptstore.config import ServerSettings
from ckptstore.server.access import RequestObserver
from ckptstore.server.admission import UploadAdmission
from ckptstore.server.auth import KeyCache
from ckptstore.server.deps import Services
from ckptstore.server.errors import install_error_handlers
from ckptstore.server.gc_worker import GcWorker
from ckptstore.server.limits import JsonBodyLimit
from ckptstore.server.listing import ListRoute
from ckptstore.server.methods import MethodTable, OptionsAnswer
from ckptstore.server.metrics import Metrics
from ckptstore.server.routes import checkpoints, downloads, endpoints, files, ops, transfer, uploads
from ckptstore.server.signing import UrlSigner
from ckptstore.server.ui import install_ui
from ckptstore.store.checkpoints import CheckpointStore


def create_app(
    store: CheckpointStore,
    settings: ServerSettings,
    *,
    clock: Callable[[], float] = time.time,
    close_store: bool = False,
) -> FastAPI:
    """The app serving ``store``; background GC runs while the app's lifespan does."""
    signing_keys = settings.resolved_signing_keys()
    signer = UrlSigner(signing_keys, settings.base_url, settings.url_ttl_s, clock)
    gc = GcWorker(store, settings.gc_interval_s, settings.gc_after_delete_s)
    admission = UploadAdmission(
        settings.uploads_per_tenant, settings.upload_threads, settings.body_read_timeout_s
    )
    metrics = Metrics()
    metrics.watch_store(store.stats, lambda: gc.runs)
    keys = KeyCache(store.context.catalog, settings.api_key_cache_s, clock)
    services = Services(store, signer, settings, gc, metrics, admission, keys)

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
        # served by the web interface from local files (ui/docs.py): FastAPI's own
        # pages load their scripts from a CDN
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (checkpoints, files, uploads, downloads, transfer, endpoints, ops):
        app.include_router(module.router)
    # plain list queries go to a route of their own first (listing.py)
    app.router.routes.insert(0, ListRoute(checkpoints.list_route()))
    install_ui(app, signing_keys, clock)

    app.state.methods = MethodTable(app)
    app.add_middleware(OptionsAnswer, table=app.state.methods)
    app.add_middleware(JsonBodyLimit, limit_bytes=settings.max_json_body_bytes)
    app.add_middleware(RequestObserver, metrics=services.metrics)
    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory: ``uvicorn --factory ckptstore.server.app:app_from_env``."""
    settings = ServerSettings.from_env()
    store = CheckpointStore.open(
        settings.data_dir,
        catalog=settings.catalog,
        blocks=settings.blocks,
        config=settings.store_config(),
    )
    app = create_app(store, settings, close_store=True)
    # What the process holds from here on (modules, routes, schemas) lives as long as
    # it does: out of the collector's generations, a full collection scans only what
    # requests leave behind, instead of pausing every request of the worker for it.
    gc.collect()
    gc.freeze()
    return app
