"""Job records and their lifecycle: creation, reading and listing, status changes (checked
against service.domain's TRANSITIONS) with their events, heartbeats, the orphan sweep, and
removing what a job recorded (truncation before a resume, deletion).

:class:`Jobs` writes through the store's engine (IMMEDIATE transactions) and reads through its
read-only view of it; the functions below it work inside a transaction the caller holds.
"""

from __future__ import annotations

import json

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from service.domain import JOB_STATUSES, TERMINAL, TRANSITIONS, can_delete, refusal
from service.store import rollup as rollup
from service.store.errors import IdempotencyConflict, JobNotFound, JobStateError
from service.store.owner import current_owner, parse_owner, process_gone
from service.store.schema import (
    CheckpointRow,
    History,
    Job,
    JobEvent,
    ParamStat,
    StepArray,
    history_rollup,
    param_stats_rollup,
)
from service.store.times import aware, iso, now

# Steps per transaction when deleting a job's history, so other writers never wait long.
DELETE_CHUNK_ROWS = 200_000


class Jobs:
    """The job queries of one store: ``engine`` for writes, ``reader`` (the same engine, read-only
    transactions) for reads."""

    def __init__(self, engine: Engine, reader: Engine):
        self.engine = engine
        self.reader = reader

    def create(self, name: str, spec: dict, param_names: list[str] | None, status: str,
               idempotency_key: str | None, total_steps: int | None) -> int:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError(f"name: expected a non-empty string of at most 200 characters, got {name!r}")
        spec_text = _spec_json(spec)
        names = None if param_names is None else json.dumps(check_names(param_names))
        if status not in ("queued", "running"):
            raise ValueError(f"status: a new job is 'queued' or 'running', got {status!r}")
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key):
            raise ValueError(f"idempotency_key: expected a non-empty string, got {idempotency_key!r}")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 1):
            raise ValueError(f"total_steps: expected a positive integer or None, got {total_steps!r}")
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if idempotency_key is not None:
                        found = conn.execute(
                            select(Job.id, Job.spec).where(Job.idempotency_key == idempotency_key)
                        ).first()
                        if found is not None:
                            if json.loads(found.spec) != json.loads(spec_text):
                                raise IdempotencyConflict(idempotency_key, found.id)
                            return found.id
                    at = now()
                    running = status == "running"
                    owner = current_owner() if running else None
                    job_id = conn.execute(
                        insert(Job).values(
                            name=name, status=status, spec=spec_text, param_names=names, steps_done=0,
                            total_steps=total_steps, idempotency_key=idempotency_key, created_at=at,
                            updated_at=at, started_at=at if running else None,
                            heartbeat_at=at if running else None, owner=owner,
                        )
                    ).inserted_primary_key[0]
                    record_event(conn, job_id, None, status, "created", owner)
                    return job_id
            except IntegrityError:
                # Two processes raced with the same key (PostgreSQL); the loser finds the winner's job.
                if idempotency_key is None or attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, job_id: int) -> dict | None:
        with self.reader.begin() as conn:
            row = conn.execute(select(Job.__table__).where(Job.id == job_id)).first()
        return None if row is None else job_dict(row)

    def list(self, status: str | None, limit: int, offset: int, include_spec: bool) -> list[dict]:
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"status: expected one of {list(JOB_STATUSES)}, got {status!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected an integer from 1 to 10000, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset: expected a non-negative integer, got {offset!r}")
        # Not even selected unless asked for: one job's spec can be tens of megabytes.
        columns = [c for c in Job.__table__.c if include_spec or c.name != "spec"]
        q = select(*columns).order_by(Job.id.desc()).limit(limit).offset(offset)
        if status is not None:
            q = q.where(Job.status == status)
        with self.reader.begin() as conn:
            return [job_dict(r, include_spec) for r in conn.execute(q)]

    def count(self, status: str | None) -> int:
        q = select(func.count()).select_from(Job)
        if status is not None:
            q = q.where(Job.status == status)
        with self.reader.begin() as conn:
            return conn.execute(q).scalar_one()

    def events(self, job_id: int, after_id: int) -> list[dict]:
        e = JobEvent
        with self.reader.begin() as conn:
            job_row(conn, job_id)
            rows = conn.execute(
                select(e.__table__).where(e.job_id == job_id, e.id > after_id).order_by(e.id)
            ).all()
        return [
            {"id": r.id, "job_id": r.job_id, "at": iso(r.at), "from_status": r.from_status,
             "to_status": r.to_status, "reason": r.reason, "owner": r.owner, "steps_done": r.steps_done}
            for r in rows
        ]

    def set_param_names(self, job_id: int, names: list[str]) -> None:
        names = check_names(names)
        with self.engine.begin() as conn:
            set_param_names(conn, job_row(conn, job_id, for_update=True), names)

    def transition(self, job_id: int, to_status: str, reason: str | None, error: str | None,
                   owner: str | None, from_status: str | None) -> None:
        if to_status not in JOB_STATUSES:
            raise ValueError(f"to_status: expected one of {list(JOB_STATUSES)}, got {to_status!r}")
        with self.engine.begin() as conn:
            job = job_row(conn, job_id, for_update=True)
            if from_status is not None and job.status != from_status:
                raise JobStateError(f"job {job_id} is {job.status}, not {from_status}; left as it is")
            apply_transition(conn, job, to_status, reason, error, owner)

    def claim_next(self, owner: str | None, reason: str) -> int | None:
        with self.engine.begin() as conn:
            job = conn.execute(
                select(Job.__table__).where(Job.status == "queued").order_by(Job.id).limit(1)
                .with_for_update()
            ).first()
            if job is None:
                return None
            apply_transition(conn, job, "running", reason, None, owner)
            return job.id

    def heartbeat(self, job_id: int) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=now())).rowcount
        if not done:
            raise JobNotFound(job_id)

    def recover_orphans(self, stale_after: float | None) -> list[int]:
        host = current_owner().partition("@")[2]
        with self.reader.begin() as conn:
            running = conn.execute(
                select(Job.id, Job.owner, Job.heartbeat_at).where(Job.status == "running")
            ).all()
        at = now()
        orphans = []
        for job_id, owner, heartbeat in running:
            heartbeat = aware(heartbeat)
            parsed = parse_owner(owner)
            if parsed is not None and parsed[1] == host:
                gone = process_gone(parsed[0], heartbeat)
                why = f"owner process {owner} is gone"
            else:
                age = None if heartbeat is None else (at - heartbeat).total_seconds()
                gone = stale_after is not None and (age is None or age > stale_after)
                why = f"no heartbeat from {owner} for {age if age is None else round(age, 1)} s"
            if gone and self._interrupt_if_unchanged(job_id, owner, why):
                orphans.append(job_id)
        return orphans

    def _interrupt_if_unchanged(self, job_id: int, owner: str | None, reason: str) -> bool:
        with self.engine.begin() as conn:
            job = conn.execute(select(Job.__table__).where(Job.id == job_id).with_for_update()).first()
            if job is None or job.status != "running" or job.owner != owner:
                return False  # finished or taken over meanwhile
            apply_transition(conn, job, "interrupted", reason, None, None)
            return True

    def truncate_history(self, job_id: int, from_step: int) -> None:
        if isinstance(from_step, bool) or not isinstance(from_step, int) or from_step < 0:
            raise ValueError(f"from_step: expected a non-negative integer, got {from_step!r}")
        with self.engine.begin() as conn:
            job = job_row(conn, job_id, for_update=True)
            n_params = len(param_names(job))
            delete_steps(conn, job_id, n_params, from_step)
            c, a = CheckpointRow, StepArray
            conn.execute(delete(c).where(c.job_id == job_id, c.step > from_step))
            conn.execute(delete(a).where(a.job_id == job_id, a.step >= from_step,
                                         (a.kind != "checkpoint") | (a.step > from_step)))
            rollup.truncate(conn, rollup.HISTORY, job_id, {}, from_step)
            if n_params:
                rollup.truncate(conn, rollup.PARAM_STATS, job_id, {"param": list(range(n_params))}, from_step)
            last_loss = conn.execute(
                select(History.loss).where(History.job_id == job_id, History.step < from_step)
                .order_by(History.step.desc()).limit(1)
            ).scalar()
            values = {"updated_at": now()}  # also tells readers' caches that history changed
            if job.steps_done > from_step:
                values.update(steps_done=from_step, last_loss=last_loss)
            conn.execute(update(Job).where(Job.id == job_id).values(**values))

    def delete(self, job_id: int) -> None:
        with self.reader.begin() as conn:
            job = job_row(conn, job_id)
            top = max_step(conn, job_id)
        if not can_delete(job.status):
            raise JobStateError(refusal("delete", job_id, job.status))
        n_params = len(param_names(job))
        span = max(1_000, DELETE_CHUNK_ROWS // (1 + n_params))
        hi = top if top is not None else -1
        while hi >= 0:  # newest first, so that an interrupted delete leaves a shorter history
            lo = max(0, hi - span + 1)
            with self.engine.begin() as conn:
                delete_steps(conn, job_id, n_params, lo, hi)
                conn.execute(update(Job).where(Job.id == job_id).values(updated_at=now()))
                levels = list(rollup.LEVELS)
                r = history_rollup
                conn.execute(delete(r).where(r.c.job_id == job_id, r.c.level.in_(levels), r.c.block >= lo))
                if n_params:
                    r = param_stats_rollup
                    conn.execute(delete(r).where(r.c.job_id == job_id, r.c.param.in_(list(range(n_params))),
                                                 r.c.level.in_(levels), r.c.block >= lo))
            hi = lo - 1
        with self.engine.begin() as conn:
            conn.execute(delete(Job).where(Job.id == job_id))  # the rest goes by ON DELETE CASCADE


# --- inside a transaction ----------------------------------------------------------------------------


def job_row(conn: Connection, job_id: int, for_update: bool = False):
    """The job's row; JobNotFound when there is none."""
    q = select(Job.__table__).where(Job.id == job_id)
    row = conn.execute(q.with_for_update() if for_update else q).first()
    if row is None:
        raise JobNotFound(job_id)
    return row


def param_names(job) -> list[str]:
    """A job row's parameter names (index i names param_stats.param i); [] before they are set."""
    return [] if job.param_names is None else json.loads(job.param_names)


def job_dict(row, include_spec: bool = True) -> dict:
    """A job row as plain JSON-able data (a non-finite last loss is stored as NULL: None)."""
    job = {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "steps_done": row.steps_done,
        "total_steps": row.total_steps,
        "last_loss": row.last_loss,
        "error": row.error,
        "owner": row.owner,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "heartbeat_at": iso(row.heartbeat_at),
        "param_names": None if row.param_names is None else json.loads(row.param_names),
    }
    if include_spec:
        job["spec"] = json.loads(row.spec)
    return job


def check_names(names) -> list[str]:
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"param_names: expected a list of non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"param_names: names must be unique, got {list(names)}")
    return list(names)


def _spec_json(spec) -> str:
    if not isinstance(spec, dict):
        raise ValueError(f"spec: expected a JSON object (dict), got {type(spec).__name__}")
    try:
        return json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"spec: must be JSON-able without NaN/Infinity ({exc})") from None


def set_param_names(conn: Connection, job, names: list[str]) -> None:
    """Give the job ``names``; refused once statistics were recorded under other names."""
    current = None if job.param_names is None else json.loads(job.param_names)
    if current == names:
        return
    if current is not None:
        has_stats = conn.execute(select(ParamStat.step).where(ParamStat.job_id == job.id).limit(1)).first()
        if has_stats is not None:
            raise JobStateError(
                f"param_names: job {job.id} already recorded statistics for {current}; got {names}")
    conn.execute(update(Job).where(Job.id == job.id).values(param_names=json.dumps(names)))


def apply_transition(conn: Connection, job, to_status: str, reason, error, owner) -> None:
    """Move the (locked) job row to ``to_status`` if TRANSITIONS allow it, and record the event."""
    if to_status not in TRANSITIONS.get(job.status, ()):
        if job.status in TERMINAL:
            raise JobStateError(f"job {job.id} is {job.status}, a final state; it cannot become {to_status}")
        raise JobStateError(f"job {job.id} cannot go from {job.status} to {to_status}")
    at = now()
    values = {"status": to_status, "updated_at": at}
    if to_status == "running":
        owner = owner or current_owner()
        values.update(owner=owner, heartbeat_at=at, started_at=job.started_at or at)
    if to_status in TERMINAL:
        values["finished_at"] = at
    if error is not None:
        values["error"] = error
    conn.execute(update(Job).where(Job.id == job.id).values(**values))
    record_event(conn, job.id, job.status, to_status, reason, owner if to_status == "running" else None,
                 job.steps_done)


def record_event(conn: Connection, job_id: int, from_status, to_status, reason, owner=None,
                 steps_done=0) -> None:
    conn.execute(insert(JobEvent), [dict(job_id=job_id, at=now(), from_status=from_status,
                                         to_status=to_status, reason=reason, owner=owner,
                                         steps_done=steps_done)])


def max_step(conn: Connection, job_id: int) -> int | None:
    return conn.execute(select(func.max(History.step)).where(History.job_id == job_id)).scalar()


def delete_steps(conn: Connection, job_id: int, n_params: int, lo: int, hi: int = rollup.MAX_STEP) -> None:
    """Raw history and statistics rows in steps [lo, hi] (rollups are the caller's business)."""
    conn.execute(delete(History).where(History.job_id == job_id, History.step.between(lo, hi)))
    if n_params:
        ps = ParamStat
        conn.execute(delete(ps).where(ps.job_id == job_id, ps.param.in_(list(range(n_params))),
                                      ps.step.between(lo, hi)))
