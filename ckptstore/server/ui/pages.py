"""What every page shares: templates, the session dependencies, errors as pages.

Routes of the web interface use ``PageRoute``: an error of the store, of the
HTTP layer or of a form becomes an HTML page with the right status (never a
traceback, never raw JSON), and a request without a session is sent to the
sign-in page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ckptstore.errors import CkptStoreError
from ckptstore.formatting import human_size, iso_time
from ckptstore.server.deps import Services
from ckptstore.server.errors import ApiError
from ckptstore.server.ui.session import COOKIE, Session, SessionCodec, csrf_matches

log = logging.getLogger("ckptstore.ui")
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
TEMPLATES.filters["size"] = human_size
TEMPLATES.filters["time"] = iso_time


class PageError(Exception):
    """An error the interface shows as a page with this status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInRequired(Exception):
    """No valid session: the caller is sent to the sign-in page."""


def render(
    request: Request, template: str, *, status: int = 200, **context: object
) -> HTMLResponse:
    """The page ``template`` with the session (if any) and ``context``."""
    session: Session | None = getattr(request.state, "ui_session", None)
    html = TEMPLATES.get_template(template).render(request=request, session=session, **context)
    return HTMLResponse(html, status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, title=title, message=message)


NOT_FOUND = "Not found"


class PageRoute(APIRoute):
    """A route whose errors are pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", 303)
            except PageError as exc:
                return error_page(request, exc.status, exc.title, exc.message)
            except CkptStoreError as exc:
                title = NOT_FOUND if exc.http_status == 404 else "Request refused"
                return error_page(request, exc.http_status, title, str(exc))
            except ApiError as exc:
                return error_page(request, exc.status, "Request refused", exc.message)
            except RequestValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "form"
                message = f"{field}: {first.get('msg', 'invalid value')}"
                return error_page(request, 400, "Invalid form", message)
            except Exception:
                log.exception("web interface error on %s", request.url.path)
                return error_page(
                    request, 500, "Server error", "Something went wrong; see the server log."
                )

        return page_handler


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def session(request: Request) -> Session:
    """The caller's session; SignInRequired without a valid one."""
    svc = services(request)
    codec: SessionCodec = request.app.state.ui_sessions
    found = codec.read(svc.store.context.catalog, request.cookies.get(COOKIE))
    if found is None:
        raise SignInRequired()
    request.state.ui_session = found
    request.state.tenant = found.tenant  # for the request's log line
    return found


async def checked_session(request: Request) -> Session:
    """The session of a form that changes something: its CSRF token must match."""
    found = await session(request)
    form = await request.form()  # Starlette caches it for the route's own Form fields
    if not csrf_matches(found, form.get("csrf_token")):
        raise PageError(
            403,
            "Forbidden",
            "The form's security token is missing or stale; reload the page and try again.",
        )
    return found


SessionDep = Annotated[Session, Depends(session)]
CheckedSessionDep = Annotated[Session, Depends(checked_session)]
