"""The store: jobs and their lifecycle, per-step history, snapshots and checkpoints.

One object per process (it owns an engine and its connection pool; safe to share between
threads). Opening it brings the schema up to date (see service.store.engine.upgrade). Writes are short
IMMEDIATE transactions; reads run in DEFERRED read transactions and never wait for writers.

Non-finite numbers come back as Python floats (``nan``, ``inf``) everywhere except in job
dicts, whose ``last_loss`` is None when the last loss was not finite so that job dicts are
always plain JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, make_url, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service.domain import JOB_STATUSES, TERMINAL, TRANSITIONS, Checkpoint
from service.store import read as query
from service.store import rollup as rollup
from service.store.arrays import decode_array
from service.store.engine import database_url, is_file_sqlite, open_engine, reader, upgrade
from service.store.errors import IdempotencyConflict, JobNotFound, JobStateError, StoreError, UnknownParam
from service.store.owner import current_owner, parse_owner, process_gone
from service.store.schema import (
    CheckpointRow,
    Dataset,
    History,
    Job,
    JobEvent,
    ParamStat,
    StepArray,
    history_rollup,
    param_stats_rollup,
)
from service.store.write import HistoryWriter, max_step, write_checkpoint

__all__ = [
    "Store",
    "Checkpoint",
    "HistoryWriter",
    "StoreError",
    "JobNotFound",
    "JobStateError",
    "UnknownParam",
    "IdempotencyConflict",
    "TERMINAL",
    "current_owner",
]

# Steps per transaction when deleting a job's history, so other writers never wait long.
DELETE_CHUNK_ROWS = 200_000
EXPORT_CHUNK_STEPS = 2_000


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite keeps no time zone; everything is written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    value = _aware(value)
    return None if value is None else value.isoformat()


def _job_dict(row, include_spec: bool = True) -> dict:
    job = {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "steps_done": row.steps_done,
        "total_steps": row.total_steps,
        "last_loss": row.last_loss,
        "error": row.error,
        "owner": row.owner,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "heartbeat_at": _iso(row.heartbeat_at),
        "param_names": None if row.param_names is None else json.loads(row.param_names),
    }
    if include_spec:
        job["spec"] = json.loads(row.spec)
    return job


def _check_names(names) -> list[str]:
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


class Store:
    def __init__(self, url: str | None = None, *, migrate: bool = True, cache_size: int = 64):
        """``cache_size``: how many recent history/gradients results to keep (0: none)."""
        self.url = database_url(url)
        self.engine, self._checkpointer = open_engine(self.url)
        self._reader = reader(self.engine)
        self._results = query.ResultCache(cache_size)
        if migrate:
            try:
                upgrade(self.url, engine=self.engine)
            except BaseException:
                self.close()
                raise

    @property
    def shareable(self) -> bool:
        """Whether another process can open this database (not an in-memory SQLite one)."""
        return make_url(self.url).get_backend_name() != "sqlite" or is_file_sqlite(self.url)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------------

    def _job_row(self, conn: Connection, job_id: int, for_update: bool = False):
        q = select(Job.__table__).where(Job.id == job_id)
        row = conn.execute(q.with_for_update() if for_update else q).first()
        if row is None:
            raise JobNotFound(job_id)
        return row

    def _event(self, conn, job_id, from_status, to_status, reason, owner=None, steps_done=0) -> None:
        conn.execute(
            insert(JobEvent),
            [
                dict(
                    job_id=job_id,
                    at=_now(),
                    from_status=from_status,
                    to_status=to_status,
                    reason=reason,
                    owner=owner,
                    steps_done=steps_done,
                )
            ],
        )

    def create_job(
        self,
        name: str,
        spec: dict,
        param_names: list[str] | None = None,
        status: str = "queued",
        idempotency_key: str | None = None,
        total_steps: int | None = None,
    ) -> int:
        """A new job; with ``idempotency_key``, the job already made with that key and an equal spec
        (a different spec raises IdempotencyConflict). ``total_steps``: the plan's, stored so that
        showing progress never re-plans the job (None: unknown)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError(f"name: expected a non-empty string of at most 200 characters, got {name!r}")
        spec_text = _spec_json(spec)
        names = None if param_names is None else json.dumps(_check_names(param_names))
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
                    now = _now()
                    running = status == "running"
                    owner = current_owner() if running else None
                    job_id = conn.execute(
                        insert(Job).values(
                            name=name,
                            status=status,
                            spec=spec_text,
                            param_names=names,
                            steps_done=0,
                            total_steps=total_steps,
                            idempotency_key=idempotency_key,
                            created_at=now,
                            updated_at=now,
                            started_at=now if running else None,
                            heartbeat_at=now if running else None,
                            owner=owner,
                        )
                    ).inserted_primary_key[0]
                    self._event(conn, job_id, None, status, "created", owner)
                    return job_id
            except IntegrityError:
                # Two processes raced with the same key (PostgreSQL); the loser finds the winner's job.
                if idempotency_key is None or attempt:
                    raise
        raise AssertionError("unreachable")

    def get_job(self, job_id: int) -> dict | None:
        with self._reader.begin() as conn:
            row = conn.execute(select(Job.__table__).where(Job.id == job_id)).first()
        return None if row is None else _job_dict(row)

    def list_jobs(
        self, status: str | None = None, limit: int = 100, offset: int = 0, include_spec: bool = True
    ) -> list[dict]:
        """Jobs newest first, optionally only those in ``status``. Without ``include_spec`` the spec
        column is not even read: one job's spec can be tens of megabytes."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"status: expected one of {list(JOB_STATUSES)}, got {status!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected an integer from 1 to 10000, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset: expected a non-negative integer, got {offset!r}")
        columns = [c for c in Job.__table__.c if include_spec or c.name != "spec"]
        q = select(*columns).order_by(Job.id.desc()).limit(limit).offset(offset)
        if status is not None:
            q = q.where(Job.status == status)
        with self._reader.begin() as conn:
            return [_job_dict(r, include_spec) for r in conn.execute(q)]

    def count_jobs(self, status: str | None = None) -> int:
        q = select(func.count()).select_from(Job)
        if status is not None:
            q = q.where(Job.status == status)
        with self._reader.begin() as conn:
            return conn.execute(q).scalar_one()

    def job_events(self, job_id: int, after_id: int = 0) -> list[dict]:
        """The job's status changes with id > ``after_id``, oldest first."""
        e = JobEvent
        with self._reader.begin() as conn:
            self._job_row(conn, job_id)
            rows = conn.execute(
                select(e.__table__).where(e.job_id == job_id, e.id > after_id).order_by(e.id)
            ).all()
        return [
            {
                "id": r.id,
                "job_id": r.job_id,
                "at": _iso(r.at),
                "from_status": r.from_status,
                "to_status": r.to_status,
                "reason": r.reason,
                "owner": r.owner,
                "steps_done": r.steps_done,
            }
            for r in rows
        ]

    def set_param_names(self, job_id: int, names: list[str]) -> None:
        names = _check_names(names)
        with self.engine.begin() as conn:
            self._set_param_names(conn, self._job_row(conn, job_id, for_update=True), names)

    def _set_param_names(self, conn: Connection, job, names: list[str]) -> None:
        current = None if job.param_names is None else json.loads(job.param_names)
        if current == names:
            return
        if current is not None:
            has_stats = conn.execute(
                select(ParamStat.step).where(ParamStat.job_id == job.id).limit(1)
            ).first()
            if has_stats is not None:
                raise JobStateError(
                    f"param_names: job {job.id} already recorded statistics for {current}; got {names}"
                )
        conn.execute(update(Job).where(Job.id == job.id).values(param_names=json.dumps(names)))

    def transition(
        self,
        job_id: int,
        to_status: str,
        reason: str | None = None,
        error: str | None = None,
        owner: str | None = None,
        from_status: str | None = None,
    ) -> None:
        """Change the job's status (see TRANSITIONS) and record the change in job_events.

        ``owner`` ("pid@hostname", default this process) is recorded when the job starts running.
        ``from_status`` makes it a compare-and-set: JobStateError unless the job is in that state
        (a runner ending its job must not overwrite a cancel or an interruption made meanwhile).
        """
        if to_status not in JOB_STATUSES:
            raise ValueError(f"to_status: expected one of {list(JOB_STATUSES)}, got {to_status!r}")
        with self.engine.begin() as conn:
            job = self._job_row(conn, job_id, for_update=True)
            if from_status is not None and job.status != from_status:
                raise JobStateError(f"job {job_id} is {job.status}, not {from_status}; left as it is")
            self._transition(conn, job, to_status, reason, error, owner)

    def _transition(self, conn, job, to_status, reason, error, owner) -> None:
        if to_status not in TRANSITIONS.get(job.status, ()):
            if job.status in TERMINAL:
                raise JobStateError(
                    f"job {job.id} is {job.status}, a final state; it cannot become {to_status}"
                )
            raise JobStateError(f"job {job.id} cannot go from {job.status} to {to_status}")
        now = _now()
        values = {"status": to_status, "updated_at": now}
        if to_status == "running":
            owner = owner or current_owner()
            values.update(owner=owner, heartbeat_at=now, started_at=job.started_at or now)
        if to_status in TERMINAL:
            values["finished_at"] = now
        if error is not None:
            values["error"] = error
        conn.execute(update(Job).where(Job.id == job.id).values(**values))
        self._event(conn, job.id, job.status, to_status, reason, owner if to_status == "running" else None,
                    job.steps_done)

    def claim_next(self, owner: str | None = None, reason: str = "picked up by a worker") -> int | None:
        """Atomically move the oldest queued job to running; its id, or None when none is queued."""
        with self.engine.begin() as conn:
            job = conn.execute(
                select(Job.__table__)
                .where(Job.status == "queued")
                .order_by(Job.id)
                .limit(1)
                .with_for_update()
            ).first()
            if job is None:
                return None
            self._transition(conn, job, "running", reason, None, owner)
            return job.id

    def heartbeat(self, job_id: int) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=_now())).rowcount
        if not done:
            raise JobNotFound(job_id)

    def recover_orphans(self, stale_after: float | None = None) -> list[int]:
        """Mark running jobs whose owner process is gone as interrupted; return their ids.

        On this host a job is orphaned when its owner pid is dead (or a zombie, or reused by a newer
        process). Jobs owned on other hosts are only judged by ``stale_after``: seconds without a
        heartbeat (None: never).
        """
        host = current_owner().partition("@")[2]
        with self._reader.begin() as conn:
            running = conn.execute(
                select(Job.id, Job.owner, Job.heartbeat_at).where(Job.status == "running")
            ).all()
        now = _now()
        orphans = []
        for job_id, owner, heartbeat in running:
            heartbeat = _aware(heartbeat)
            parsed = parse_owner(owner)
            if parsed is not None and parsed[1] == host:
                gone = process_gone(parsed[0], heartbeat)
                why = f"owner process {owner} is gone"
            else:
                age = None if heartbeat is None else (now - heartbeat).total_seconds()
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
            self._transition(conn, job, "interrupted", reason, None, None)
            return True

    # -- writing history ----------------------------------------------------------------------

    def writer(self, job_id: int, param_names: list[str], *,
               background_after: float | None = None) -> HistoryWriter:
        """A buffered writer for the job's steps; sets the job's param_names if it has none.

        ``background_after`` (seconds): from then on a writer process writes the batches (see
        service.store.writer_process), on a database another process can open; call the writer's close()
        at the end. It writes only while the job runs under the owner it has now."""
        names = _check_names(param_names)
        with self.engine.begin() as conn:
            job = self._job_row(conn, job_id, for_update=True)
            self._set_param_names(conn, job, names)
            last = max_step(conn, job_id)
        if background_after is None or not self.shareable:
            return HistoryWriter(self.engine, self.url, job_id, names, last)
        return HistoryWriter(self.engine, self.url, job_id, names, last, owner=job.owner,
                             background_after=background_after)

    def last_checkpoint(self, job_id: int) -> Checkpoint | None:
        c, a = CheckpointRow, StepArray
        with self._reader.begin() as conn:
            self._job_row(conn, job_id)
            row = conn.execute(
                select(c.step, c.meta).where(c.job_id == job_id).order_by(c.step.desc()).limit(1)
            ).first()
            if row is None:
                return None
            arrays = conn.execute(
                select(a).where(a.job_id == job_id, a.step == row.step, a.kind == "checkpoint")
            ).all()
        return Checkpoint(
            step=row.step,
            arrays={r.name: decode_array(r.name, r.dtype, r.shape, r.data) for r in arrays},
            meta=json.loads(row.meta),
        )

    def save_checkpoint(self, job_id: int, checkpoint: Checkpoint) -> None:
        """Store a checkpoint on its own (the writer's flush can also carry one)."""
        with self.engine.begin() as conn:
            self._job_row(conn, job_id)
            write_checkpoint(conn, job_id, checkpoint)

    def truncate_history(self, job_id: int, from_step: int) -> None:
        """Delete history, statistics and snapshots at steps >= ``from_step``, and checkpoints after it.

        The checkpoint *at* ``from_step`` is kept: it is the state a resume restarts from, so a crash
        during the resume can restart from it again (writing a checkpoint at an existing step
        replaces it). ``steps_done`` becomes ``from_step`` when it was larger.
        """
        if isinstance(from_step, bool) or not isinstance(from_step, int) or from_step < 0:
            raise ValueError(f"from_step: expected a non-negative integer, got {from_step!r}")
        with self.engine.begin() as conn:
            job = self._job_row(conn, job_id, for_update=True)
            n_params = len(_names(job))
            self._delete_steps(conn, job_id, n_params, from_step)
            conn.execute(
                delete(CheckpointRow).where(CheckpointRow.job_id == job_id, CheckpointRow.step > from_step)
            )
            conn.execute(
                delete(StepArray).where(
                    StepArray.job_id == job_id,
                    StepArray.step >= from_step,
                    (StepArray.kind != "checkpoint") | (StepArray.step > from_step),
                )
            )
            rollup.truncate(conn, rollup.HISTORY, job_id, {}, from_step)
            if n_params:
                rollup.truncate(conn, rollup.PARAM_STATS, job_id, {"param": list(range(n_params))}, from_step)
            last_loss = conn.execute(
                select(History.loss)
                .where(History.job_id == job_id, History.step < from_step)
                .order_by(History.step.desc())
                .limit(1)
            ).scalar()
            values = {"updated_at": _now()}  # also tells readers' caches that history changed
            if job.steps_done > from_step:
                values.update(steps_done=from_step, last_loss=last_loss)
            conn.execute(update(Job).where(Job.id == job_id).values(**values))

    @staticmethod
    def _delete_steps(conn: Connection, job_id: int, n_params: int, lo: int, hi: int = rollup.MAX_STEP):
        """Raw history and statistics rows in steps [lo, hi] (rollups are the caller's business)."""
        conn.execute(delete(History).where(History.job_id == job_id, History.step.between(lo, hi)))
        if n_params:
            ps = ParamStat
            conn.execute(
                delete(ps).where(
                    ps.job_id == job_id, ps.param.in_(list(range(n_params))), ps.step.between(lo, hi)
                )
            )

    def delete_job(self, job_id: int) -> None:
        """Remove a finished job and all it recorded, in chunks so other writers are never held up
        for long (if interrupted, the job is still there with a shorter history; delete it again)."""
        with self._reader.begin() as conn:
            job = self._job_row(conn, job_id)
            top = max_step(conn, job_id)
        if job.status not in TERMINAL:
            raise JobStateError(
                f"job {job_id} is {job.status}; only finished jobs ({', '.join(sorted(TERMINAL))}) can be "
                "deleted - cancel it first"
            )
        n_params = len(_names(job))
        span = max(1_000, DELETE_CHUNK_ROWS // (1 + n_params))
        hi = top if top is not None else -1
        while hi >= 0:
            lo = max(0, hi - span + 1)
            with self.engine.begin() as conn:
                self._delete_steps(conn, job_id, n_params, lo, hi)
                conn.execute(update(Job).where(Job.id == job_id).values(updated_at=_now()))
                levels = list(rollup.LEVELS)
                r = history_rollup
                conn.execute(delete(r).where(r.c.job_id == job_id, r.c.level.in_(levels), r.c.block >= lo))
                if n_params:
                    r = param_stats_rollup
                    conn.execute(
                        delete(r).where(
                            r.c.job_id == job_id,
                            r.c.param.in_(list(range(n_params))),
                            r.c.level.in_(levels),
                            r.c.block >= lo,
                        )
                    )
            hi = lo - 1
        with self.engine.begin() as conn:
            conn.execute(delete(Job).where(Job.id == job_id))  # the rest goes by ON DELETE CASCADE

    # -- reading history ----------------------------------------------------------------------

    def history(
        self,
        job_id: int,
        start: int | None = None,
        end: int | None = None,
        max_points: int = 1000,
        *,
        copy: bool = True,
    ) -> list[dict]:
        """Steps in [start, end] (inclusive): raw points when the range spans at most ``max_points``
        steps, else at most ``max_points`` buckets (see service.store.read).

        ``copy=False`` returns the cached objects themselves, shared with other callers: cheaper
        for a caller that only serializes them and never changes them."""
        return self.history_points(job_id, start, end, max_points).dicts(copy)

    def gradients(
        self,
        job_id: int,
        param: str,
        start: int | None = None,
        end: int | None = None,
        max_points: int = 1000,
        *,
        copy: bool = True,
    ) -> list[dict]:
        """One parameter's gradient statistics over [start, end], raw or bucketed like history."""
        return self.gradients_points(job_id, param, start, end, max_points).dicts(copy)

    def history_points(
        self, job_id: int, start: int | None = None, end: int | None = None, max_points: int = 1000
    ) -> query.Points:
        """:meth:`history` as rows (shared with other callers through the cache: read only)."""
        return self._range_points(job_id, start, end, max_points, lambda conn, job: (
            ("history",), lambda: query.history(conn, job_id, start, end, max_points)))

    def gradients_points(
        self,
        job_id: int,
        param: str,
        start: int | None = None,
        end: int | None = None,
        max_points: int = 1000,
    ) -> query.Points:
        """:meth:`gradients` as rows (shared with other callers through the cache: read only)."""
        def request(conn, job):
            names = _names(job)
            if param not in names:
                raise UnknownParam(job_id, param, names)
            index = names.index(param)
            return ("gradients", index), lambda: query.gradients(conn, job_id, index, start, end, max_points)

        return self._range_points(job_id, start, end, max_points, request)

    def _range_points(self, job_id: int, start, end, max_points: int, request) -> query.Points:
        """A range query in one read transaction, cached per job version: ``request(conn, job)``
        gives the query's cache-key prefix and the function computing it."""
        query.check_range(start, end, max_points)
        with self._reader.begin() as conn:
            job = self._job_row(conn, job_id)
            what, compute = request(conn, job)
            return self._cached(job, (*what, start, end, max_points), compute)

    def _cached(self, job, request: tuple, compute) -> query.Points:
        """Range results are cached per job version: every change to a job's history (flush,
        truncate, delete) also sets its updated_at in the same transaction, and the job row is
        read in the same read transaction as the history. The query runs outside the cache's lock."""
        key = (job.id, _aware(job.updated_at), job.steps_done, *request)
        return self._results.get_or_compute(key, compute)

    def _param_names(self, conn: Connection, job_id: int) -> list[str]:
        return _names(self._job_row(conn, job_id))

    def step(self, job_id: int, step: int) -> dict | None:
        """Everything recorded at ``step``: scalars, ``stats`` per parameter, and ``gradients`` and
        ``params`` (name -> ndarray) when a snapshot was taken; None when nothing was recorded."""
        with self._reader.begin() as conn:
            return query.step(conn, job_id, step, self._param_names(conn, job_id))

    def snapshot_steps(
        self, job_id: int, start: int = 0, end: int | None = None, limit: int = 1000
    ) -> list[int]:
        """Steps in [start, end] that have a parameter snapshot, ascending."""
        a = StepArray
        q = select(a.step).distinct().where(a.job_id == job_id, a.kind == "param", a.step >= start)
        if end is not None:
            q = q.where(a.step <= end)
        with self._reader.begin() as conn:
            self._job_row(conn, job_id)
            return list(conn.execute(q.order_by(a.step).limit(limit)).scalars())

    def export_columns(self, job_id: int) -> list[str]:
        """Column names of :meth:`export_rows` rows, in order (for a CSV header)."""
        with self._reader.begin() as conn:
            return query.export_columns(self._param_names(conn, job_id))

    def export_rows(self, job_id: int, start: int | None = None, end: int | None = None) -> Iterator[dict]:
        """Every recorded step in [start, end] with every parameter's statistics, never downsampled.

        Read in chunks by step (each chunk its own short read transaction), so a slow consumer holds
        nothing open. Raises JobNotFound here, before the first row is asked for.
        """
        query.check_range(start, end, 1)
        with self._reader.begin() as conn:
            names = self._param_names(conn, job_id)
        columns = query.export_columns(names)
        return self._export(job_id, start or 0, rollup.MAX_STEP if end is None else end, names, columns)

    def _export(self, job_id, lo, hi, names, columns) -> Iterator[dict]:
        while lo <= hi:
            with self._reader.begin() as conn:
                chunk = query.export_chunk(conn, job_id, lo, hi, EXPORT_CHUNK_STEPS, names)
            if not chunk:
                return
            for point in chunk:
                yield {c: point.get(c) for c in columns}
            lo = chunk[-1]["step"] + 1

    # -- datasets -----------------------------------------------------------------------------

    def create_dataset(self, name: str, content: bytes, meta: dict | None = None) -> int:
        import hashlib

        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError(f"name: expected a non-empty string of at most 200 characters, got {name!r}")
        if not isinstance(content, bytes | bytearray):
            raise ValueError(f"content: expected bytes, got {type(content).__name__}")
        meta_text = json.dumps(meta or {}, allow_nan=False)
        with self.engine.begin() as conn:
            return conn.execute(
                insert(Dataset).values(
                    name=name,
                    content=bytes(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    meta=meta_text,
                    created_at=_now(),
                )
            ).inserted_primary_key[0]

    @staticmethod
    def _dataset_dict(row, with_content: bool) -> dict:
        out = {
            "id": row.id,
            "name": row.name,
            "sha256": row.sha256,
            "meta": json.loads(row.meta),
            "created_at": _iso(row.created_at),
        }
        if with_content:
            out["content"] = row.content
        return out

    def get_dataset(self, dataset_id: int) -> dict | None:
        with self._reader.begin() as conn:
            row = conn.execute(select(Dataset.__table__).where(Dataset.id == dataset_id)).first()
        return None if row is None else self._dataset_dict(row, True)

    def list_datasets(self, limit: int = 100, offset: int = 0) -> list[dict]:
        d = Dataset
        q = (
            select(d.id, d.name, d.sha256, d.meta, d.created_at)
            .order_by(d.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._reader.begin() as conn:
            return [self._dataset_dict(r, False) for r in conn.execute(q)]


def _names(job) -> list[str]:
    """A job row's parameter names (index i names param_stats.param i); [] before they are set."""
    return [] if job.param_names is None else json.loads(job.param_names)
