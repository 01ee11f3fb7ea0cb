"""One step of a job's book: everything recorded at it, the numerical check of its gradient, and the
computation graph the model built on its batch. A step whose snapshot was not kept is replayed from
the nearest stored state before it; the answer says so."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Query
from fastapi.responses import PlainTextResponse

from service.api.deps import JobId, StepNumber, StoreDep, guarded_router, load_job
from service.api.encode import array_list, finite
from service.api.errors import ApiError, SafeJSONResponse, not_found
from service.api.schemas import INVALID, NOT_FOUND, ErrorOut, GraphOut, StepRecord, VerifyOut
from service.jobs.replay import GraphError, ReplayError, VerifyError, job_graph, step_record, verify_step
from service.runtime.datasets import dataset_resolver
from service.store.rollup import MAX_STEP

router = guarded_router(prefix="/jobs", tags=["history"])


@router.get("/{job_id}/steps/{step}", response_model=StepRecord,
            responses={**NOT_FOUND, **INVALID,
                       409: {"model": ErrorOut, "description": "The step cannot be replayed."}},
            summary="Everything recorded at one step")
def step(job_id: JobId, step: StepNumber, store: StoreDep):
    """Loss and scalars, each parameter's gradient statistics, and the full ``gradients`` and
    ``params`` (name -> nested lists; non-finite entries as null): from the step's snapshot, or
    replayed from the nearest stored state before it (``replayed`` then says from which step and how
    many steps it took)."""
    _recorded_step(store, job_id, step)
    try:
        record = step_record(store, job_id, step, resolve_dataset=dataset_resolver(store))
    except ReplayError as e:
        raise ApiError(409, str(e)) from None
    arrays = ("gradients", "params", "replayed")
    out = {"job_id": job_id, **{k: v for k, v in record.items() if k not in arrays}}
    for key in ("gradients", "params"):
        if key in record:
            out[key] = {name: array_list(a) for name, a in record[key].items()}
    out["replayed"] = record["replayed"]
    return SafeJSONResponse(out)


def _recorded_step(store, job_id: int, step: int) -> None:
    load_job(store, job_id)
    if not store.history(job_id, start=step, end=step, max_points=1):
        raise not_found(f"job {job_id} has no recorded step {step}")


@router.post("/{job_id}/steps/{step}/verify", response_model=VerifyOut,
             responses={**NOT_FOUND, **INVALID, 409: {"model": ErrorOut, "description": (
                 "The step cannot be replayed, or the model is over the verify limit.")}},
             summary="Check a step's gradient numerically")
def verify(job_id: JobId, step: StepNumber, store: StoreDep,
           eps: Annotated[float, Query(gt=0, le=1, description="Bump size.")] = 1e-6):
    """Recompute the step's gradient by bumping each parameter of its snapshot and compare with the
    recorded backprop gradient: the largest relative error and the time each method took."""
    _recorded_step(store, job_id, step)
    try:
        report = verify_step(store, job_id, step, eps=eps, resolve_dataset=dataset_resolver(store))
    except VerifyError as e:
        raise ApiError(409, str(e)) from None
    return SafeJSONResponse(finite(report.to_dict()))


class GraphFormat(StrEnum):
    json = "json"
    dot = "dot"


@router.get("/{job_id}/graph", response_model=GraphOut,
            responses={**NOT_FOUND, **INVALID,
                       409: {"model": ErrorOut,
                             "description": "The step cannot be replayed, or the graph is too large."},
                       200: {"content": {"text/vnd.graphviz": {"schema": {"type": "string"}}},
                             "description": "The graph (JSON, or DOT with format=dot)."}},
            summary="The computation graph at a step")
def graph(job_id: JobId, store: StoreDep,
          step: Annotated[int, Query(ge=0, le=MAX_STEP, description="A recorded step.")] = 0,
          format: Annotated[GraphFormat, Query(description="json or dot (Graphviz).")] = GraphFormat.json):
    """Every node of the model's graph on that step's batch with its forward value and dJ/d(node)."""
    _recorded_step(store, job_id, step)
    try:
        g = job_graph(store, job_id, step, resolve_dataset=dataset_resolver(store))
    except GraphError as e:
        raise ApiError(409, str(e)) from None
    if format is GraphFormat.dot:
        return PlainTextResponse(g.dot(), media_type="text/vnd.graphviz")
    return SafeJSONResponse({"job_id": job_id, "step": step, **finite(g.to_dict())})
