"""The API docs, `/docs` (Swagger UI) and `/redoc` (ReDoc), rendered with no network.

FastAPI's own pages load their scripts and styles from a CDN, so offline they are blank. These pages
load them from this server instead, under `/docs-assets/`: the copy of Swagger UI's bundle and CSS and
of ReDoc's standalone bundle that the `fastapi-offline` package ships (a dependency of this plugin; we
use its files only, not its app factory). Swagger UI's validator badge, which calls an outside
service, is turned off; ReDoc is told not to load Google Fonts, and its bundle is served with the one
outside URL it always loads (the Redocly logo in its menu) pointing at a local image instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

DOCS_ASSETS = "/docs-assets"
#: The image ReDoc's menu footer loads from a CDN whatever its options say.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def assets_dir() -> Path:
    """The folder holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the API docs need the fastapi-offline package (pip install fastapi-offline)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install_docs(app: FastAPI, title: str) -> None:
    """Serve `/docs`, `/redoc` and their assets (call before anything is mounted at `/`)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse, Response
    from starlette.staticfiles import StaticFiles

    folder = assets_dir()
    redoc_js: list[bytes] = []  # read and patched once, on first use

    @app.get(f"{DOCS_ASSETS}/redoc.js", include_in_schema=False)
    def redoc_bundle() -> Response:
        if not redoc_js:
            text = (folder / "redoc.standalone.js").read_text(encoding="utf-8")
            redoc_js.append(text.replace(REDOC_LOGO, f"{DOCS_ASSETS}/favicon.png").encode())
        return Response(redoc_js[0], media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    app.mount(DOCS_ASSETS, StaticFiles(directory=folder), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            oauth2_redirect_url=redirect_url,
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
