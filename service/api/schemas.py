"""Response bodies as pydantic models: they make the OpenAPI schema that clients and the contract
test read. Floats are nullable wherever the book may hold NaN or infinity (written as null)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.domain import JOB_STATUSES

Status = Literal[JOB_STATUSES]


class JobView(BaseModel):
    """A job as the CLI's --json and the REST API show it (``service.domain.job_view`` makes it)."""

    id: int
    name: str
    status: Status
    steps_done: int
    total_steps: int | None = None
    last_loss: float | None = Field(None, description="Loss of the last recorded step; null if not finite.")
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    param_names: list[str] | None = None
    spec: dict


class JobOut(JobView):
    """A job as the API and the CLI's --json show it."""

    total_steps: int | None = Field(None, description="Updates the job makes in all (from steps or epochs).")
    spec: dict | None = Field(None, description="The job spec, defaults filled in (listings leave it out "
                                                "unless include_spec=true).")
    updated_at: datetime | None = None
    owner: str | None = Field(None, description="pid@host of the process that runs (or last ran) the job.")


class JobList(BaseModel):
    jobs: list[JobOut]
    total: int = Field(description="Jobs matching the filter, over all pages.")
    limit: int
    offset: int


class Transition(BaseModel):
    id: int
    job_id: int
    at: datetime
    from_status: Status | None = Field(description="null for the job's creation.")
    to_status: Status
    reason: str | None = None
    owner: str | None = Field(None, description="pid@host of the process that took the job, when it started.")
    steps_done: int | None = Field(None, description="Steps the job had done at the change (null for "
                                   "changes recorded before gradbook stored it).")


class TransitionList(BaseModel):
    transitions: list[Transition]


# --- history -----------------------------------------------------------------------------------------


class Bucket(BaseModel):
    """min/max/mean over a bucket's finite-or-infinite values (NaN skipped) and the last value."""

    min: float | None
    max: float | None
    mean: float | None
    last: float | None


class HistoryPoint(BaseModel):
    """One recorded step (raw) or one bucket of steps (downsampled: ``step``..``step_end``, ``count``
    steps, every series a Bucket)."""

    model_config = ConfigDict(extra="allow")
    step: int
    step_end: int | None = Field(None, description="Last step in the bucket (downsampled only).")
    count: int | None = Field(None, description="Recorded steps in the bucket (downsampled only).")
    loss: float | Bucket | None
    lr: float | Bucket | None
    grad_norm: float | Bucket | None
    val_loss: float | Bucket | None = None
    val_accuracy: float | Bucket | None = None


class History(BaseModel):
    job_id: int
    start: int | None
    end: int | None
    max_points: int
    downsampled: bool = Field(description="True when points are buckets (the range spans more than "
                                          "max_points steps).")
    points: list[HistoryPoint]


class GradientPoint(BaseModel):
    step: int
    step_end: int | None = None
    count: int | None = None
    norm: float | Bucket | None
    mean: float | Bucket | None
    std: float | Bucket | None
    min: float | Bucket | None
    max: float | Bucket | None
    nonfinite: int | Bucket | None = Field(description="Entries of the gradient that were NaN or infinite.")


class Gradients(BaseModel):
    job_id: int
    param: str
    start: int | None
    end: int | None
    max_points: int
    downsampled: bool
    points: list[GradientPoint]


class ParamStats(BaseModel):
    norm: float | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    nonfinite: int | None


class Replayed(BaseModel):
    from_step: int = Field(description="The stored state the replay started from (a checkpoint, or 0).")
    steps: int = Field(description="Training steps replayed to reach this one.")
    seconds: float
    matches_record: bool = Field(description="The replay reproduced the recorded loss and gradient "
                                             "statistics bit for bit.")


class StepRecord(BaseModel):
    job_id: int
    step: int
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    stats: dict[str, ParamStats] | None = Field(None, description="Per-parameter gradient statistics.")
    gradients: dict[str, list[Any]] | None = Field(
        None, description="Parameter name -> gradient as nested lists.")
    params: dict[str, list[Any]] | None = Field(
        None, description="Parameter name -> value before the update, nested lists.")
    replayed: Replayed | None = Field(
        None, description="How the arrays were recomputed, when the step's snapshot was not kept (null: read "
                          "from its snapshot).")


class VerifyOut(BaseModel):
    job_id: int
    step: int
    n_params: int
    eps: float
    max_rel_error: float | None = Field(description="max |backprop - numerical| / max(|b|, |n|, 1e-8).")
    worst_param: str
    per_param: dict[str, float | None]
    backprop_seconds: float
    numerical_seconds: float
    forward_passes: int
    recorded_vs_replayed: float | None
    replayed: Replayed | None = Field(None, description="How the step's parameters were recomputed, when its "
                                                        "snapshot was not kept (null: from its snapshot).")


class GraphNode(BaseModel):
    index: int
    name: str
    op: str
    inputs: list[int]
    shape: list[int]
    value: Any = Field(None, description="Forward value (nested lists or a number).")
    grad: Any = Field(None, description="dJ/d(node), same shape as value; null where none flows.")


class GraphOut(BaseModel):
    job_id: int
    step: int
    output: str
    nodes: list[GraphNode]


# --- catalogs ----------------------------------------------------------------------------------------


class DatasetOut(BaseModel):
    id: int
    name: str
    sha256: str
    meta: dict = Field(description="rows, features, targets and column names.")
    created_at: datetime | None


class DatasetList(BaseModel):
    datasets: list[DatasetOut]


class OptimizerList(BaseModel):
    optimizers: list[dict] = Field(description="name, class, summary, hyperparameters (name, type, default, "
                                                "allowed range) and the options every optimizer takes.")
    schedules: list[dict] = Field(default_factory=list, description="Learning-rate schedules.")


class Preset(BaseModel):
    name: str
    description: str
    spec: dict


class PresetList(BaseModel):
    presets: list[Preset]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    executor: dict
    version: str


class ErrorOut(BaseModel):
    detail: str | list[dict] = Field(description="A message, or field errors [{loc, msg, type}].")


# --- the error answers the routes document ---------------------------------------------------------------

UNAUTHORIZED = {401: {"model": ErrorOut, "description": "Missing or wrong bearer token."}}
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such job."}}
CONFLICT = {409: {"model": ErrorOut, "description": "The job's state does not allow this."}}
INVALID = {422: {"model": ErrorOut, "description": "A malformed field, named in loc."}}
TOO_LARGE = {413: {"model": ErrorOut, "description": "Body over the size limit."}}
WRONG_TYPE = {415: {"model": ErrorOut, "description": "Body not declared as a type this endpoint reads "
                                                      "(Content-Type)."}}
