"""What the routes share: the store, the executor, the settings, the bearer token, the path and query
parameters, and a job loaded and shown. Routers import this module, never each other."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import ApiError, field_error, not_found
from service.api.schemas import UNAUTHORIZED
from service.config import ServerSettings
from service.domain import MAX_ID, job_view, timestamp
from service.jobs.spec import SpecError, make_plan, parse_spec
from service.runtime.datasets import dataset_resolver
from service.runtime.executor import Executor
from service.store import Store
from service.store.rollup import MAX_STEP

# Ids and steps are SQL INTEGERs; larger numbers are refused as input errors before any query.


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
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="Job id.")]
StepNumber = Annotated[int, Path(ge=0, le=MAX_STEP, description="Step number (from 0).")]
Start = Annotated[int | None, Query(ge=0, le=MAX_STEP, description="First step, inclusive.")]
End = Annotated[int | None, Query(ge=0, le=MAX_STEP, description="Last step, inclusive.")]


def check_range(start: int | None, end: int | None) -> None:
    if start is not None and end is not None and start > end:
        raise field_error(422, ["query", "start"], f"start {start} is after end {end}")


def load_job(store, job_id: int) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise not_found(f"job {job_id} not found")
    return job


class TotalSteps:
    """Total steps of a job, derived from its spec once and remembered (epochs need the data size)."""

    def __init__(self, size: int = 10_000):
        self._known: OrderedDict[int, int | None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def remember(self, job_id: int, total: int) -> None:
        with self._lock:
            self._known[job_id] = total
            while len(self._known) > self._size:
                self._known.popitem(last=False)

    def __call__(self, store, job: dict) -> int | None:
        spec = job.get("spec") or {}
        if isinstance(spec.get("steps"), int):
            return spec["steps"]
        with self._lock:
            if job["id"] in self._known:
                return self._known[job["id"]]
        try:
            total = make_plan(parse_spec(spec), dataset_resolver(store)).total_steps
        except (SpecError, ValueError, TypeError, KeyError):
            total = None  # e.g. its uploaded dataset was removed; the job's own state says more
        self.remember(job["id"], total)
        return total


def total_steps_of(request: Request) -> TotalSteps:
    return request.app.state.total_steps


def job_out(store, totals: TotalSteps, job: dict, include_spec: bool = True) -> dict:
    view = job_view(job)
    view["total_steps"] = totals(store, job)
    view["updated_at"] = timestamp(job.get("updated_at"))
    view["owner"] = job.get("owner")
    if not include_spec:
        view["spec"] = None
    return view
