"""Liveness and readiness: the one endpoint of the API proper that is public (deps.PUBLIC_PATHS)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request

from service.api.errors import SafeJSONResponse
from service.api.schemas import Health

router = APIRouter(tags=["health"])

try:
    VERSION = version("gradbook")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "unknown"


@router.get("/health", response_model=Health, summary="Is the server up",
            responses={503: {"model": Health, "description": "The database cannot be reached."}})
def health(request: Request):
    """``ok`` when the database answers; the executor's workers and what they run."""
    store = request.app.state.store
    try:
        store.count_jobs("running")  # a read transaction on an index: cheap, and proves the schema is there
        database = "ok"
    except Exception as e:  # noqa: BLE001 - health reports any failure instead of raising it
        database = f"error: {type(e).__name__}: {e}"
    body = {"status": "ok" if database == "ok" else "degraded", "database": database,
            "executor": request.app.state.executor.info(), "version": VERSION}
    return SafeJSONResponse(body, status_code=200 if database == "ok" else 503)
