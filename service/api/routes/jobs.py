"""Jobs: submit (idempotently), list, show, cancel, resume, delete, and the stored state changes.

States: queued -> running -> succeeded | failed | cancelled | interrupted (resumable: interrupted ->
queued -> running). ``service.domain`` says what may be done to a job in each state (and why not),
the store enforces the transitions and records each with its time and reason, and the executor only
starts and stops work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service import domain
from service.api.body import read_json
from service.api.deps import (
    ExecutorDep,
    JobId,
    SettingsDep,
    StoreDep,
    guarded_router,
    job_out,
    load_job,
)
from service.api.errors import ApiError, field_error
from service.api.schemas import (
    CONFLICT,
    INVALID,
    NOT_FOUND,
    TOO_LARGE,
    WRONG_TYPE,
    JobList,
    JobOut,
    Status,
    TransitionList,
)
from service.jobs.plan import make_plan
from service.jobs.spec import CsvData, JobSpec, parse_spec
from service.runtime.datasets import dataset_resolver

router = guarded_router(prefix="/jobs", tags=["jobs"])


# --- submit --------------------------------------------------------------------------------------------


def _spec_request_body() -> dict:
    schema = {"$ref": "#/components/schemas/JobSpec"}
    return {"required": True, "content": {"application/json": {"schema": schema}},
            "description": "A job spec, as `gradbook train` reads it; data may be {\"dataset_id\": ID} of an "
                           "uploaded dataset (CSV paths are refused over HTTP)."}


def validate_spec(store, doc) -> tuple[JobSpec, int]:
    """The parsed spec and its total steps, or a 422 naming each bad field (data included)."""
    try:
        spec = parse_spec(doc)
    except (TypeError, KeyError, AttributeError) as e:
        # A shape of document the spec's validators did not foresee: still the client's error.
        raise field_error(422, ["body"], f"not a valid job spec ({type(e).__name__}: {e})") from None
    if isinstance(spec.data, CsvData):
        raise field_error(422, ["body", "data", "csv"], "CSV paths are not read over HTTP; upload the file "
                          "with POST /datasets and give {\"dataset_id\": ID}")
    plan = make_plan(spec, dataset_resolver(store))  # uploaded data is checked now, not when the job runs
    return spec, plan.total_steps


@router.post(
    "", status_code=201, response_model=JobOut, openapi_extra={"requestBody": _spec_request_body()},
    responses={200: {"model": JobOut, "description": "Replayed: this Idempotency-Key already made this job."},
               **CONFLICT, **INVALID, **TOO_LARGE, **WRONG_TYPE},
    summary="Submit a job",
)
async def submit_job(
    request: Request, response: Response, store: StoreDep, executor: ExecutorDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200, description=(
        "Makes retries safe: the same key with the same spec returns the job made the first time; "
        "with another spec, 409."))] = None,
):
    """Validate the spec (a 422 names each bad field), store the job as queued and hand it to a worker."""
    doc = await read_json(request)

    def create() -> tuple[dict, bool]:
        spec, total = validate_spec(store, doc)
        before = datetime.now(UTC)
        job_id = store.create_job(spec.name, spec.model_dump(mode="json"), idempotency_key=idempotency_key,
                                  total_steps=total)
        job = store.get_job(job_id)
        replayed = datetime.fromisoformat(job["created_at"]) < before
        if job["status"] == "queued":
            executor.submit(job_id)  # a replay of a job still queued is already there: a no-op
        return job, replayed

    job, replayed = await run_in_threadpool(create)
    response.headers["Location"] = f"/jobs/{job['id']}"
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return job_out(job)


# --- read ----------------------------------------------------------------------------------------------


@router.get("", response_model=JobList, responses=INVALID, summary="List jobs")
def list_jobs(
    store: StoreDep,
    status: Annotated[Status | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    include_spec: Annotated[bool, Query(description="Include each job's spec.")] = False,
):
    """Jobs newest first, optionally filtered by status, one page at a time."""
    # Without include_spec the specs are not even read: one can be tens of megabytes.
    jobs = store.list_jobs(status=status, limit=limit, offset=offset, include_spec=include_spec)
    return {"jobs": [job_out(j, include_spec) for j in jobs],
            "total": store.count_jobs(status), "limit": limit, "offset": offset}


@router.get("/{job_id}", response_model=JobOut, responses={**NOT_FOUND, **INVALID}, summary="Show a job")
def get_job(job_id: JobId, store: StoreDep):
    """Status, steps done, last loss, timestamps, error message and spec."""
    return job_out(load_job(store, job_id))


@router.get("/{job_id}/transitions", response_model=TransitionList, responses={**NOT_FOUND, **INVALID},
            summary="A job's state changes")
def transitions(job_id: JobId, store: StoreDep):
    """Every state change of the job, oldest first, with its time and reason."""
    return {"transitions": store.job_events(job_id)}


# --- change --------------------------------------------------------------------------------------------


@router.post("/{job_id}/cancel", response_model=JobOut, responses={**NOT_FOUND, **CONFLICT, **INVALID},
             summary="Cancel a job")
def cancel_job(job_id: JobId, store: StoreDep, executor: ExecutorDep, settings: SettingsDep):
    """A queued, running or interrupted job becomes cancelled at once; a running one stops within a
    training step (the answer waits for that, briefly). Its history up to then is kept."""
    job = load_job(store, job_id)
    if not domain.can_cancel(job["status"]):
        raise ApiError(409, domain.refusal("cancel", job_id, job["status"]))
    store.transition(job_id, "cancelled", reason="cancelled by request")  # a race: JobStateError, 409
    executor.cancel(job_id, timeout=settings.cancel_wait_seconds)
    return job_out(load_job(store, job_id))


@router.post("/{job_id}/resume", response_model=JobOut, responses={**NOT_FOUND, **CONFLICT, **INVALID},
             summary="Resume an interrupted job")
def resume_job(job_id: JobId, store: StoreDep, executor: ExecutorDep):
    """An interrupted job is queued again and continues from its last checkpoint; the history after
    that checkpoint is recomputed, bit for bit what an uninterrupted run records."""
    job = load_job(store, job_id)
    if not domain.can_resume(job["status"]):
        raise ApiError(409, domain.refusal("resume", job_id, job["status"]))
    store.transition(job_id, "queued", reason="resume requested")
    executor.submit(job_id, resume=True)
    return job_out(load_job(store, job_id))


@router.delete("/{job_id}", status_code=204, response_class=Response,
               responses={**NOT_FOUND, **CONFLICT, **INVALID}, summary="Delete a finished job")
def delete_job(job_id: JobId, store: StoreDep):
    """Remove a succeeded, failed or cancelled job and everything it recorded."""
    job = load_job(store, job_id)
    if not domain.can_delete(job["status"]):
        raise ApiError(409, domain.refusal("delete", job_id, job["status"]))
    store.delete_job(job_id)
    store.reclaim_space()  # the deleted rows' pages go back to the file system (SQLite)
    return Response(status_code=204)
