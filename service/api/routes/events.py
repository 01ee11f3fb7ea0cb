"""Live events of a job as Server-Sent Events, resumable with Last-Event-ID.

    event: status   data: the job (on connect), then each state change {from_status, to_status, ...}
    id: 41
    event: step     data: {"step": 41, "loss": ..., "lr": ..., "grad_norm": ...}   (the id is the step)
    event: end      data: the job as it ended

The stream ends when the job ends (succeeded, failed, cancelled, or interrupted: resuming starts a
new run, watched by a new stream). A client that reconnects with ``Last-Event-ID: 41`` gets every
step after 41, so nothing is lost across a dropped connection; without it the stream starts at the
job's latest recorded step. Steps reach the client one poll (GRADBOOK_EVENTS_POLL_SECONDS, 0.1 s)
after the trainer commits them; the database is the only channel, so any process that writes the
job - a worker, `gradbook train` on the same database - is seen the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.api.deps import JobId, SettingsDep, StoreDep, guarded_router, job_out, load_job
from service.api.encode import dumps
from service.api.errors import field_error
from service.api.schemas import INVALID, NOT_FOUND
from service.domain import ENDED
from service.store.rollup import MAX_STEP

router = guarded_router(prefix="/jobs", tags=["events"])

BATCH = 1000          # steps read per poll; a full batch polls again at once
KEEPALIVE_S = 15.0    # a comment line keeps proxies from closing a quiet stream
LATE_FLUSH_S = 0.25   # a cancelled trainer writes its last steps just after the state change


def sse(event: str, data, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {dumps(data).decode()}\n\n".encode()


LOC = ["header", "Last-Event-ID"]


def _parse_last_event_id(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        step = int(value.strip())
    except ValueError:
        raise field_error(422, LOC, f"expected a step number, got {value[:50]!r}") from None
    if not -1 <= step <= MAX_STEP:
        raise field_error(422, LOC, f"expected a step from -1 to {MAX_STEP}, got {step}")
    return step


def _change(change: dict, job: dict) -> dict:
    """A status event: the change, with the job's steps_done at the change (now, for changes
    recorded before gradbook stored it)."""
    done = change["steps_done"]
    return {**change, "steps_done": job["steps_done"] if done is None else done}


@router.get(
    "/{job_id}/events", response_class=StreamingResponse, summary="Live events of a job (SSE)",
    responses={**NOT_FOUND, **INVALID, 200: {
        "description": "text/event-stream of `status`, `step` (id = step) and a final `end` event.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def events(
    request: Request, job_id: JobId, store: StoreDep, settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=30, description=(
        "Resume after this step (the id of the last step event received).")) ] = None,
    after: Annotated[int | None, Query(ge=-1, le=MAX_STEP, description=(
        "Like Last-Event-ID, for clients that cannot set headers; -1 replays every step and every "
        "status change."))] = None,
):
    resume_after = _parse_last_event_id(last_event_id)
    if resume_after is None:
        resume_after = after
    job = await run_in_threadpool(load_job, store, job_id)
    transitions = await run_in_threadpool(store.job_events, job_id)
    state = {
        "after_step": resume_after if resume_after is not None else job["steps_done"] - 2,
        # a full replay (after=-1) includes the status changes; otherwise only those from now on
        "after_event": transitions[-1]["id"] if transitions and resume_after != -1 else 0,
    }
    first = job_out(job, include_spec=False)

    def poll():
        job = store.get_job(job_id)
        if job is None:
            return None, [], []
        changes = store.job_events(job_id, after_id=state["after_event"])
        lo = max(0, state["after_step"] + 1)
        points = []
        if lo <= MAX_STEP:
            points = store.history(job_id, start=lo, end=min(lo + BATCH - 1, MAX_STEP), max_points=BATCH)
        return job, changes, points

    held: list[dict] = []  # status changes read but not sent yet

    async def stream():
        yield b"retry: 1000\n\n"
        yield sse("status", first)
        quiet_since = time.monotonic()
        ending = False
        while True:
            job, changes, points = await run_in_threadpool(poll)
            if job is None:
                yield sse("end", {"id": job_id, "status": "deleted"})
                return
            # Each change goes out once the steps recorded before it have (its steps_done), in
            # the order the changes happened; once the stream has caught up, all of them.
            held.extend(changes)
            if changes:
                state["after_event"] = changes[-1]["id"]
            more = len(points) == BATCH
            for point in points:
                while held and held[0]["steps_done"] is not None and held[0]["steps_done"] <= point["step"]:
                    yield sse("status", _change(held.pop(0), job))
                yield sse("step", point, point["step"])
            while held and not more:
                yield sse("status", _change(held.pop(0), job))
            if points:
                state["after_step"] = points[-1]["step"]
                quiet_since = time.monotonic()
            if more:
                continue  # more is waiting: read on without sleeping
            if job["status"] in ENDED:
                if not ending and job["status"] == "cancelled":
                    ending = True  # one more look for the steps the stopping trainer writes last
                    await asyncio.sleep(LATE_FLUSH_S)
                    continue
                yield sse("end", job_out(job, include_spec=False))
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(settings.events_poll_seconds)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
