"""Uploaded datasets: a CSV body checked as training data, stored, and served to jobs by id.

A job spec refers to one with ``"data": {"dataset_id": ID}``; ``service.runtime.datasets`` loads it
for the API (checking a spec at submission) and for the workers (training).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from service.api.body import require_media_type
from service.api.deps import StoreDep, guarded_router
from service.api.errors import field_error, not_found
from service.api.schemas import TOO_LARGE, WRONG_TYPE, DatasetList, DatasetOut, ErrorOut
from service.domain import MAX_ID
from service.jobs.data import DataError, check_upload

router = guarded_router(prefix="/datasets", tags=["datasets"])

CSV_TYPES = ("text/csv", "text/plain", "application/octet-stream")


def check_csv(raw: bytes, targets: int) -> dict:
    """An uploaded CSV's meta, or a 422 naming the body and the offending row and column."""
    if not raw.strip():
        raise field_error(422, ["body"], "the CSV body is empty", "missing")
    try:
        return check_upload(raw, targets, ("body",))
    except DataError as e:
        raise field_error(422, list(e.loc), e.msg) from None


@router.post(
    "", status_code=201, response_model=DatasetOut, summary="Upload a CSV dataset",
    responses={422: {"model": ErrorOut, "description": "Not a CSV of finite numbers (row and column named)."},
               **TOO_LARGE, **WRONG_TYPE},
    openapi_extra={"requestBody": {
        "required": True, "content": {t: {"schema": {"type": "string"}} for t in CSV_TYPES},
        "description": "CSV text: rows of numbers, an optional header row; the last `targets` columns "
                       "are the targets."}},
)
async def upload(
    request: Request, store: StoreDep,
    name: Annotated[str, Query(min_length=1, max_length=200, description="A name to know it by.")]
    = "dataset",
    targets: Annotated[int, Query(ge=1, le=10_000, description="How many trailing columns are targets.")] = 1,
):
    """Store a CSV of training data after checking it; jobs then use ``{"dataset_id": ID}``."""
    require_media_type(request, CSV_TYPES)
    raw = await request.body()

    def save() -> dict:
        meta = check_csv(raw, targets)
        return _public(store.get_dataset(store.create_dataset(name, raw, meta)))

    return await run_in_threadpool(save)


@router.get("", response_model=DatasetList, summary="List datasets")
def list_datasets(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=2**62)] = 0):
    return {"datasets": store.list_datasets(limit=limit, offset=offset)}


@router.get("/{dataset_id}", response_model=DatasetOut, summary="Show a dataset",
            responses={404: {"model": ErrorOut, "description": "No such dataset."}})
def get_dataset(store: StoreDep, dataset_id: Annotated[int, Path(ge=1, le=MAX_ID)]):
    if (row := store.get_dataset(dataset_id)) is None:
        raise not_found(f"dataset {dataset_id} not found")
    return _public(row)


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "content"}
