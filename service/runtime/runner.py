"""Running a stored job: its status changes, its history writer, its heartbeat and its end.

    outcome = run_job(store, job_id)                 # what the CLI and the executors call
    outcome = run_job(store, job_id, resume=True)    # continue an interrupted job from its checkpoint
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.config import settings
from service.jobs.errors import SpecError
from service.jobs.plan import make_plan
from service.jobs.spec import parse_spec
from service.jobs.trainer import Outcome, Progress, Trainer
from service.store.errors import JobStateError
from service.store.owner import current_owner


@dataclass
class Restoring(Progress):
    """A resume's first report: the job continues from ``steps_done`` (its last checkpoint, or 0)
    once the history after it is removed; training has not continued yet."""


def run_job(store, job_id: int, *, resume: bool = False, should_stop: Callable[[], bool] | None = None,
            progress: Callable[[Progress], None] | None = None, resolve_dataset=None) -> Outcome:
    """Run (or with ``resume=True`` continue) a stored job to its end and record its final state.

    The job goes running (owner "pid@host") -> succeeded | failed | cancelled | interrupted.
    ``should_stop()`` is polled every step (cancellation); ``progress(Progress)`` is called after
    each flush and up to ten times a second, and first, on a resume, with ``Restoring`` as soon as
    the step it continues from is known; ``resolve_dataset(id) -> (x, y)`` serves uploaded
    datasets. KeyboardInterrupt marks the job interrupted (resumable) and is re-raised.
    """
    job = store.get_job(job_id)
    if job is None:
        raise KeyError(f"no job {job_id}")
    store.transition(job_id, "running", reason="resumed" if resume else "started", owner=current_owner())
    try:
        plan = make_plan(parse_spec(job["spec"]), resolve_dataset)
        trainer = Trainer(plan)
    except (SpecError, ValueError, TypeError) as e:
        store.transition(job_id, "failed", reason="invalid spec", error=str(e))
        return Outcome("failed", 0, error=str(e))
    store.set_param_names(job_id, trainer.names)
    start, checkpoint = 0, None
    if resume:
        checkpoint = store.last_checkpoint(job_id)
        if progress is not None:  # removing the history after the checkpoint can take seconds
            progress(Restoring(job_id, 0 if checkpoint is None else int(checkpoint.step), plan.total_steps,
                               None))
        if checkpoint is not None:
            start = trainer.restore(checkpoint)
    store.truncate_history(job_id, start)  # what a killed run wrote after its last checkpoint
    writer = store.writer(job_id, trainer.names, background_after=settings().writer_process_after,
                          snapshots=trainer.recorder.snapshots)
    if checkpoint is not None:
        writer.flush(checkpoint)  # truncating removed it; keep it until a later one replaces it

    last_beat = time.monotonic()
    beat_every = settings().heartbeat_seconds

    def heartbeat():
        nonlocal last_beat
        now = time.monotonic()
        if now - last_beat >= beat_every:
            store.heartbeat(job_id)
            last_beat = now

    def on_flush(done, loss):
        nonlocal last_beat
        last_beat = time.monotonic()  # each flush writes the heartbeat in its own transaction
        if progress is not None:
            progress(Progress(job_id, done, plan.total_steps, loss))

    def on_tick(done, loss):
        heartbeat()
        if progress is not None:
            progress(Progress(job_id, done, plan.total_steps, loss))

    try:
        try:
            outcome = trainer.run(writer, start, should_stop=should_stop, on_flush=on_flush, on_tick=on_tick)
        except BaseException:
            with contextlib.suppress(Exception):  # the original error matters more
                writer.close()
            raise
        final = writer.close()  # the writer process's last write is in before the job's final state
        if final not in (None, "running") and outcome.status == "succeeded":  # ended from outside meanwhile
            done = outcome.steps_done
            outcome = Outcome("cancelled", done, reason=f"cancelled at step {done}")
    # Every final transition is conditional on the job still running here: a cancel or an
    # interruption recorded from outside meanwhile stands (JobStateError is then expected).
    except KeyboardInterrupt:
        with contextlib.suppress(JobStateError):
            store.transition(job_id, "interrupted", reason="interrupted by the user (SIGINT/SIGTERM)",
                             from_status="running")
        raise
    except Exception as e:
        message = f"{type(e).__name__}: {e}"
        with contextlib.suppress(JobStateError):
            store.transition(job_id, "failed", reason="error", error=message, from_status="running")
        return Outcome("failed", store.get_job(job_id)["steps_done"], error=message)
    with contextlib.suppress(JobStateError):
        store.transition(job_id, outcome.status, reason=outcome.reason or outcome.error or outcome.status,
                         error=outcome.error, from_status="running")
    if outcome.status == "cancelled":  # the steps a cancel leaves are those stored when it took effect
        done = store.get_job(job_id)["steps_done"]
        outcome = Outcome("cancelled", done, reason=f"cancelled at step {done}")
    return outcome
