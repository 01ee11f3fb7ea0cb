"""The web dashboard: one HTML page at ``/`` and its static files under ``/ui``.

The pages are plain ES modules that call the REST API from the browser, so this module only serves
files; nothing here imports the API. Assets are vendored (no CDN) so the dashboard works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

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
