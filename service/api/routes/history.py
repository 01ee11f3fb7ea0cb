"""The book of a job: loss history, per-parameter gradient statistics, one step in full, the
numerical check of a step, the computation graph at a step, and the streamed export.

Ranges are inclusive at both ends. A range of at most ``max_points`` steps comes back raw, one point
per step; a longer one as at most ``max_points`` buckets with min/max/mean/last of each series,
computed in SQL from the store's rollups (spikes survive downsampling).
"""

from __future__ import annotations

import functools
import itertools
import json
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from service.api.cache import cached_json, job_version
from service.api.deps import JobId, StepNumber, StoreDep, require_token
from service.api.encode import array_list, csv_chunks, dumps, finite, ndjson_chunks
from service.api.errors import ApiError, SafeJSONResponse, field_error, not_found
from service.api.routes.jobs import INVALID, NOT_FOUND, load_job
from service.api.schemas import ErrorOut, Gradients, GraphOut, History, StepRecord, VerifyOut
from service.jobs.replay import GraphError, VerifyError, job_graph, verify_step
from service.runtime.datasets import dataset_resolver
from service.store.read import Points
from service.store.rollup import MAX_STEP

router = APIRouter(prefix="/jobs", tags=["history"], dependencies=[Depends(require_token)],
                   responses={401: {"model": ErrorOut, "description": "Missing or wrong bearer token."}})

MAX_POINTS = 10_000
Start = Annotated[int | None, Query(ge=0, le=MAX_STEP, description="First step, inclusive.")]
End = Annotated[int | None, Query(ge=0, le=MAX_STEP, description="Last step, inclusive.")]
MaxPoints = Annotated[int, Query(ge=1, le=MAX_POINTS, description="Longer ranges come back as this many "
                                                                   "buckets at most.")]


def check_range(start: int | None, end: int | None) -> None:
    if start is not None and end is not None and start > end:
        raise field_error(422, ["query", "start"], f"start {start} is after end {end}")


# --- range answers, written straight from the store's rows ---------------------------------------------
#
# A 1,000-bucket answer holds some 20,000 numbers. Building a dict per point and per series and then
# encoding those dicts costs more than the query; instead json.dumps writes every number of the rows
# as one flat list (its C encoder, with float repr: exact, shortest) and a %-template per point puts
# those tokens into the answer's shape. NaN arrives from SQL as NULL, already null; the rare
# infinity is rewritten to null like everywhere else in the API.

_NON_FINITE = frozenset({"Infinity", "-Infinity", "NaN"})


@functools.cache
def _point_template(series: tuple[str, ...], downsampled: bool) -> str:
    """A %-template for one point: %s per value of its row, and %.0s to swallow the NaN mask."""
    if downsampled:
        values = ",".join(f'"{s}":{{"min":%s,"max":%s,"mean":%s,"last":%s}}' for s in series)
        return '{"step":%s,"step_end":%s,"count":%s,' + values + "}%.0s"
    return '{"step":%s,' + ",".join(f'"{s}":%s' for s in series) + "}%.0s"


def points_json(points: Points) -> str:
    """The JSON array of ``points`` (what ``finite(points.dicts())`` would encode to)."""
    rows = points.rows
    if not rows:
        return "[]"
    text = json.dumps(list(itertools.chain.from_iterable(rows)), separators=(",", ":"))
    tokens = text[1:-1].split(",")  # numbers and null: no commas inside
    if "Infinity" in text or "NaN" in text:
        tokens = ["null" if t in _NON_FINITE else t for t in tokens]
    template = _point_template(points.series, points.downsampled)
    return "[" + ",".join([template] * len(rows)) % tuple(tokens) + "]"


def _range_json(head: dict, points: Points) -> bytes:
    head = {**head, "downsampled": points.downsampled}
    return (dumps(head)[:-1].decode() + ',"points":' + points_json(points) + "}").encode()


@router.get("/{job_id}/history", response_model=History, responses={**NOT_FOUND, **INVALID},
            summary="Loss, learning rate and gradient norm per step")
def history(request: Request, job_id: JobId, store: StoreDep, start: Start = None, end: End = None,
            max_points: MaxPoints = 1000):
    check_range(start, end)
    job = load_job(store, job_id)

    def compute() -> bytes:
        points = store.history_points(job_id, start=start, end=end, max_points=max_points)
        return _range_json({"job_id": job_id, "start": start, "end": end, "max_points": max_points}, points)

    return cached_json(request, ("history", job_id, job_version(job), start, end, max_points), compute)


@router.get("/{job_id}/gradients", response_model=Gradients, responses={**NOT_FOUND, **INVALID},
            summary="One parameter's gradient statistics per step")
def gradients(
    request: Request, job_id: JobId, store: StoreDep,
    param: Annotated[str, Query(min_length=1, max_length=200, description="Parameter name: w1, b1, ...")],
    start: Start = None, end: End = None, max_points: MaxPoints = 1000,
):
    """L2 norm, mean, std, min, max and the count of non-finite entries of the parameter's gradient."""
    check_range(start, end)
    job = load_job(store, job_id)

    def compute() -> bytes:
        points = store.gradients_points(job_id, param, start=start, end=end, max_points=max_points)
        head = {"job_id": job_id, "param": param, "start": start, "end": end, "max_points": max_points}
        return _range_json(head, points)

    key = ("gradients", job_id, job_version(job), param, start, end, max_points)
    return cached_json(request, key, compute)


@router.get("/{job_id}/steps/{step}", response_model=StepRecord, responses={**NOT_FOUND, **INVALID},
            summary="Everything recorded at one step")
def step(job_id: JobId, step: StepNumber, store: StoreDep):
    """Loss and scalars, each parameter's gradient statistics, and at snapshot steps the full
    ``gradients`` and ``params`` (name -> nested lists; non-finite entries as null)."""
    load_job(store, job_id)
    record = store.step(job_id, step)
    if record is None:
        raise not_found(f"job {job_id} has no recorded step {step}")
    out = {"job_id": job_id, **{k: v for k, v in record.items() if k not in ("gradients", "params")}}
    for key in ("gradients", "params"):
        if key in record:
            out[key] = {name: array_list(a) for name, a in record[key].items()}
    return SafeJSONResponse(out)


def _recorded_step(store, job_id: int, step: int) -> None:
    load_job(store, job_id)
    if not store.history(job_id, start=step, end=step, max_points=1):
        raise not_found(f"job {job_id} has no recorded step {step}")


@router.post("/{job_id}/steps/{step}/verify", response_model=VerifyOut,
             responses={**NOT_FOUND, **INVALID, 409: {"model": ErrorOut, "description": (
                 "No parameter snapshot at that step, or the model is over the verify limit.")}},
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
                             "description": "No snapshot there, or the graph is too large."},
                       200: {"content": {"text/vnd.graphviz": {"schema": {"type": "string"}}},
                             "description": "The graph (JSON, or DOT with format=dot)."}},
            summary="The computation graph at a step")
def graph(job_id: JobId, store: StoreDep,
          step: Annotated[int, Query(ge=0, le=MAX_STEP, description="A recorded step with a snapshot.")] = 0,
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


# --- export --------------------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"


@router.get("/{job_id}/export", responses={
    **NOT_FOUND, **INVALID,
    200: {"description": "Every recorded step in the range, streamed: CSV with a header row (step, loss, "
                         "lr, grad_norm, val_loss, val_accuracy, then <param>_<stat> columns; nan and inf "
                         "spelled out), or one JSON object per line (non-finite values as null).",
          "content": {"text/csv": {"schema": {"type": "string"}},
                      "application/x-ndjson": {"schema": {"type": "string"}}}}},
    response_class=StreamingResponse, summary="Export the full history")
def export(job_id: JobId, store: StoreDep,
           format: Annotated[ExportFormat, Query(description="csv or ndjson.")] = ExportFormat.csv,
           start: Start = None, end: End = None):
    """Every recorded step, never downsampled, read from the database in chunks as it is sent."""
    check_range(start, end)
    columns = store.export_columns(job_id)  # 404 here, before the response starts
    rows = store.export_rows(job_id, start=start, end=end)
    name = f"job-{job_id}.{format.value}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format is ExportFormat.csv:
        return StreamingResponse(csv_chunks(columns, rows), media_type="text/csv; charset=utf-8",
                                 headers=headers)
    return StreamingResponse(ndjson_chunks(rows), media_type="application/x-ndjson", headers=headers)
