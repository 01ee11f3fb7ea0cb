"""What the routes share: the store, the executor, the settings, the bearer token, the path and query
parameters, and a job loaded and shown. Routers import this module, never each other."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import ApiError, field_error, not_found
from service.api.schemas import UNAUTHORIZED
from service.config import ServerSettings
from service.domain import MAX_ID, job_view, timestamp
from service.runtime.executor import Executor
from service.store import Store
from service.store import check_range as store_check_range
from service.store.rollup import MAX_STEP

# The routes anyone may fetch, token or not: the health check, and what a browser needs to show the
# dashboard and the API docs (none of them holds a job's data; the dashboard asks for the token when
# the API answers 401). Every other route needs the token when one is set: see guarded_router.
PUBLIC_PATHS = ("/health", "/", "/ui/{relative:path}", "/docs", "/redoc", "/openapi.json")

_bearer = HTTPBearer(auto_error=False, description="Required when the server has GRADBOOK_API_TOKEN set.")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_executor(request: Request) -> Executor:
    return request.app.state.executor


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> None:
    """With a token configured, the request must carry ``Authorization: Bearer <token>``; compared in
    constant time so the answer's timing tells nothing about the token."""
    expected = request.app.state.settings.api_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    # Digests first, so that not even the token's length shows in the comparison's time.
    if not hmac.compare_digest(_digest(given), _digest(expected)):
        raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <GRADBOOK_API_TOKEN>)",
                       headers={"WWW-Authenticate": "Bearer"})


def guarded_router(**options) -> APIRouter:
    """A router whose every route needs the bearer token (when one is configured)."""
    return APIRouter(dependencies=[Depends(require_token)], responses={**UNAUTHORIZED}, **options)


StoreDep = Annotated[Store, Depends(get_store)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
# Ids and steps are SQL INTEGERs; larger numbers are refused as input errors before any query.
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="Job id.")]
StepNumber = Annotated[int, Path(ge=0, le=MAX_STEP, description="Step number (from 0).")]
Start = Annotated[int | None, Query(ge=0, le=MAX_STEP, description="First step, inclusive.")]
End = Annotated[int | None, Query(ge=0, le=MAX_STEP, description="Last step, inclusive.")]


def check_range(start: int | None, end: int | None, max_points: int | None = None) -> None:
    """The store's rule for a step range, its complaint as a 422 on the query parameter at fault."""
    try:
        store_check_range(start, end, max_points)
    except ValueError as e:  # "start: 5 is after end 2" -> loc ["query", "start"], "start 5 is after end 2"
        name, _, reason = str(e).partition(": ")
        raise field_error(422, ["query", name], f"{name} {reason}") from None


def load_job(store, job_id: int) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise not_found(f"job {job_id} not found")
    return job


def job_out(job: dict, include_spec: bool = True) -> dict:
    """A job as the API answers with it: the view every front end shows, plus when its row last
    changed and which process owns it."""
    view = job_view(job)
    view["updated_at"] = timestamp(job.get("updated_at"))
    view["owner"] = job.get("owner")
    if not include_spec:
        view["spec"] = None
    return view
