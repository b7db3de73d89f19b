"""The web interface under ``/ui``: server-rendered pages over the same store as the API.

``install_ui`` mounts the pages, their static files, the ``/`` redirect and the
offline ``/docs``. Routes: auth_routes (sign in and out), job_routes (jobs, a
job), checkpoint_routes (a checkpoint, deploy, delete), account_routes
(endpoints, storage); pages.py holds what they share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from ckptstore.server.ui import account_routes, auth_routes, checkpoint_routes, job_routes
from ckptstore.server.ui.docs import install_docs
from ckptstore.server.ui.pages import NOT_FOUND, PageRoute, error_page
from ckptstore.server.ui.session import SessionCodec

_fallback = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


@_fallback.get("/{rest:path}")
async def unknown_page(request: Request, rest: str) -> HTMLResponse:
    return error_page(request, 404, NOT_FOUND, "There is no such page.")


def install_ui(app: FastAPI, signing_keys: tuple[str, ...], clock: Callable[[], float]) -> None:
    """Add the web interface and the offline API docs to ``app``."""
    app.state.ui_sessions = SessionCodec(signing_keys, clock)
    app.mount(
        "/ui/static",
        StaticFiles(directory=str(Path(__file__).parent / "static")),
        name="ui-static",
    )
    for module in (auth_routes, job_routes, checkpoint_routes, account_routes):
        app.include_router(module.router)
    app.include_router(_fallback)

    async def root(request: Request) -> RedirectResponse:
        return RedirectResponse("/ui/jobs", 307)

    app.add_route("/", root, include_in_schema=False)
    install_docs(app)
