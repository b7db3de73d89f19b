"""Signing in with an API key, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ckptstore.server.ui.pages import CheckedSessionDep, PageRoute, render, services
from ckptstore.server.ui.session import COOKIE, MAX_AGE_S, SessionCodec

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


def _local(target: str) -> str:
    """Where to go after signing in: only a path of the interface, never another site."""
    return target if target.startswith("/ui/") and not target.startswith("//") else "/ui/jobs"


@router.get("/login")
async def login_form(request: Request, next: str = "/ui/jobs") -> HTMLResponse:  # noqa: A002
    return render(request, "login.html", next=_local(next), error=None)


@router.post("/login")
async def login(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ui/jobs",  # noqa: A002
) -> Response:
    svc = services(request)
    codec: SessionCodec = request.app.state.ui_sessions
    signed = codec.sign_in(svc.store.context.catalog, api_key)
    if signed is None:
        error = "That API key is not valid (or has been revoked)."
        return render(request, "login.html", status=401, next=_local(next), error=error)
    cookie, session = signed
    request.state.tenant = session.tenant
    response = RedirectResponse(_local(next), 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=MAX_AGE_S,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=svc.settings.base_url.startswith("https://"),
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: CheckedSessionDep) -> Response:
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="lax")
    return response
