"""What a job is, independent of where it is kept: its statuses and the changes between them, the
questions every front end asks before acting (can it be cancelled, resumed, deleted?), the series
recorded per step, a checkpoint, and a job as every front end shows it.

The CLI, the REST API and the store all ask this module, so they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# A job's process is finished with it: terminal, or interrupted (resumable).
ENDED = TERMINAL | {"interrupted"}
# Allowed status changes; terminal states have none.
TRANSITIONS = {
    "queued": {"running", "cancelled", "failed"},
    "running": {"succeeded", "failed", "cancelled", "interrupted"},
    "interrupted": {"queued", "running", "cancelled", "failed"},
}

MAX_ID = 2**63 - 1  # job and dataset ids are signed 64-bit integers

# Series kept per step in `history` and per (parameter, step) in `param_stats`, in column order.
HISTORY_SERIES = ("loss", "lr", "grad_norm", "val_loss", "val_accuracy")
STAT_SERIES = ("norm", "mean", "std", "min", "max", "nonfinite")


@dataclass
class Checkpoint:
    """Everything needed to resume at ``step``: arrays (parameters, optimizer state ...) and
    JSON-able ``meta`` (RNG state, counters ...)."""

    step: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotBudget:
    """Which steps of a job keep their stored state, so that a job's storage stays bounded however
    long it runs.

    A snapshot (every parameter and its gradient, in full) is kept every ``every`` steps while the job
    is young. Once that many would exceed ``capacity``, the spacing doubles and the snapshots off
    the wider grid are dropped ("thinning"), so a job never holds more than ``capacity`` of them.
    The checkpoints kept as replay points follow the same spacing (the first of each block of
    ``spacing`` steps, plus the newest ones a resume needs): any step is replayed from the nearest
    stored state before it. The writer thins and the recorder asks :meth:`keeps`; both derive the
    spacing from the step count alone, so a resumed run keeps exactly what an uninterrupted one would.
    """

    every: int      # the spacing while the job is young
    capacity: int   # snapshots (each with a checkpoint's room) the budget holds

    @classmethod
    def of(cls, every: int, budget_bytes: int, bytes_per_snapshot: int) -> SnapshotBudget:
        return cls(every, max(1, budget_bytes // max(1, bytes_per_snapshot)))

    def spacing(self, steps: int) -> int:
        """The spacing once ``steps`` steps are recorded: ``every`` doubled until the grid's points
        among them fit in the capacity."""
        k = self.every
        while -(-steps // k) > self.capacity:
            k *= 2
        return k

    def keeps(self, step: int) -> bool:
        """Whether step ``step`` stores a snapshot (while the run is at that step)."""
        return step % self.spacing(step + 1) == 0


# --- what may be done to a job, by status ---------------------------------------------------------------
# A queued job is waiting for its server's executor (which starts it when the server starts), so it is
# not resumable: a resume would run it twice. Only an interrupted job continues from its checkpoint.

CANCELLABLE = frozenset({"queued", "running", "interrupted"})
RESUMABLE = frozenset({"interrupted"})
DELETABLE = TERMINAL


def can_cancel(status: str) -> bool:
    return status in CANCELLABLE


def can_resume(status: str) -> bool:
    return status in RESUMABLE


def can_delete(status: str) -> bool:
    return status in DELETABLE


def refusal(action: str, job_id: int, status: str) -> str:
    """Why ``action`` ("cancel", "resume" or "delete") is refused for a job in ``status``: the one
    message every front end shows."""
    if action == "cancel":
        return (f"job {job_id} is {status}, a final state; only queued, running or interrupted jobs "
                "can be cancelled")
    if action == "resume":
        hint = " (it starts when its server does)" if status == "queued" else ""
        return f"job {job_id} is {status}{hint}; only interrupted jobs can be resumed"
    if action == "delete":
        return (f"job {job_id} is {status}; only finished jobs (succeeded, failed, cancelled) can be "
                "deleted - cancel it first")
    raise ValueError(f"action: expected cancel, resume or delete, got {action!r}")


# --- a job as the CLI's --json and the REST API show it ---------------------------------------------------


def job_view(job: dict) -> dict:
    """A store job dict as JSON-ready data: ISO timestamps (UTC written "Z"), a non-finite last loss as
    null, the total steps stored at submission, and the spec if it was read (None otherwise)."""
    last = job.get("last_loss")
    return {
        "id": job["id"],
        "name": job["name"],
        "status": job["status"],
        "steps_done": job.get("steps_done") or 0,
        "total_steps": job.get("total_steps"),
        "last_loss": float(last) if last is not None and math.isfinite(last) else None,
        "created_at": timestamp(job.get("created_at")),
        "started_at": timestamp(job.get("started_at")),
        "finished_at": timestamp(job.get("finished_at")),
        "error": job.get("error"),
        "param_names": job.get("param_names"),
        "spec": job.get("spec"),
    }


def timestamp(value: datetime | str | None) -> str | None:
    """A stored time (a datetime or its ISO text) as JSON shows it: ISO 8601, UTC spelled "Z"."""
    text = value.isoformat() if isinstance(value, datetime) else value
    return text[:-6] + "Z" if text and text.endswith("+00:00") else text
