"""The pages a browser opens: the dashboard at ``/``, the API docs at ``/docs`` (Swagger UI) and
``/redoc``, and their static files under ``/ui``.

The dashboard is plain ES modules that call the REST API from the browser, and the docs pages read
``/openapi.json``, so this module only serves files; nothing here imports the API. Every asset is
vendored (no CDN) so the pages work offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).parent / "static"

# Explicit types: the platform's mimetypes table may lack .mjs or map .js to text/plain.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


def _file(relative: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    path = (root / relative).resolve()
    # resolve() collapses "..": anything that lands outside the static folder is not ours to serve
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no dashboard file {relative!r}")
    media = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})


@router.get("/")
def index() -> FileResponse:
    return _file("index.html")


@router.get("/ui/{relative:path}")
def static_file(relative: str) -> FileResponse:
    return _file(relative)


FAVICON = "/ui/favicon.svg"
# The docs pages may load nothing from another host: ReDoc's sidebar asks a CDN for its logo, which
# this leaves out (the page works without it). Inline scripts and styles are the pages' own setup.
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; worker-src 'self' blob:; font-src 'self' data:")


def _docs_page(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return _docs_page(get_swagger_ui_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title}: REST API",
        swagger_js_url="/ui/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/ui/vendor/swagger-ui/swagger-ui.css", swagger_favicon_url=FAVICON))


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return _docs_page(get_redoc_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title}: REST API",
        redoc_js_url="/ui/vendor/redoc/redoc.standalone.js", redoc_favicon_url=FAVICON,
        with_google_fonts=False))
