"""The book of a job over a range of steps: loss history and per-parameter gradient statistics.

Ranges are inclusive at both ends. A range of at most ``max_points`` steps comes back raw, one point
per step; a longer one as at most ``max_points`` buckets with min/max/mean/last of each series,
computed in SQL from the store's rollups (spikes survive downsampling).
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import Annotated

from fastapi import Query, Request

from service.api.cache import cached_json, job_version
from service.api.deps import End, JobId, Start, StoreDep, check_range, guarded_router, load_job
from service.api.encode import dumps
from service.api.schemas import INVALID, NOT_FOUND, Gradients, History
from service.store.read import Points

router = guarded_router(prefix="/jobs", tags=["history"])

MAX_POINTS = 10_000
MaxPoints = Annotated[int, Query(ge=1, le=MAX_POINTS, description="Longer ranges come back as this many "
                                                                   "buckets at most.")]


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
    check_range(start, end, max_points)
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
    check_range(start, end, max_points)
    job = load_job(store, job_id)

    def compute() -> bytes:
        points = store.gradients_points(job_id, param, start=start, end=end, max_points=max_points)
        head = {"job_id": job_id, "param": param, "start": start, "end": end, "max_points": max_points}
        return _range_json(head, points)

    key = ("gradients", job_id, job_version(job), param, start, end, max_points)
    return cached_json(request, key, compute)
