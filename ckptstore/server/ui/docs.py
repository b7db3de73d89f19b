"""``/docs`` without internet access: Swagger UI's files from the swagger-ui-bundle-v2
package, served by the server itself instead of FastAPI's default CDN."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from ckptstore.server.openapi import finish

ASSETS = "/docs-assets"
REDIRECT = "/docs/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` from local files, and declare the bearer scheme in
    the OpenAPI so "Try it out" can send an API key."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=REDIRECT,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> RedirectResponse:
        # ReDoc's script is not shipped here; the one documentation page is /docs
        return RedirectResponse("/docs", 307)

    # add_route (not app.get) so HEAD is answered as for FastAPI's own pages
    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route(REDIRECT, oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearerAuth"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: ck_<id>_<secret>",
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/v2/") or path == "/metrics":
                    for operation in operations.values():
                        operation["security"] = [{"bearerAuth": []}]
            app.openapi_schema = finish(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
