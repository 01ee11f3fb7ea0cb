"""A job's full history as a download: CSV or NDJSON, every recorded step, never downsampled."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Query
from fastapi.responses import StreamingResponse

from service.api.deps import End, JobId, Start, StoreDep, check_range, guarded_router
from service.api.encode import csv_chunks, ndjson_chunks
from service.api.schemas import INVALID, NOT_FOUND

router = guarded_router(prefix="/jobs", tags=["history"])


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
