"""The store: jobs and their lifecycle, per-step history, snapshots and checkpoints, uploaded
datasets, behind one interface.

One object per process (it owns an engine and its connection pool; safe to share between
threads). Opening it brings the schema up to date (see service.store.engine.upgrade). Writes are short
IMMEDIATE transactions; reads run in DEFERRED read transactions and never wait for writers.

The queries live beside it: job records and their lifecycle in service.store.jobs, history written
by service.store.write and read by service.store.read; database plumbing in service.store.engine.

Non-finite numbers come back as Python floats (``nan``, ``inf``) everywhere except in job
dicts, whose ``last_loss`` is None when the last loss was not finite so that job dicts are
always plain JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from sqlalchemy import insert, make_url, select

from service.domain import Checkpoint, SnapshotBudget
from service.store import jobs as jobs
from service.store import read as query
from service.store import rollup as rollup
from service.store.engine import database_url, is_file_sqlite, open_engine, reader, upgrade
from service.store.errors import UnknownParam
from service.store.schema import Dataset
from service.store.times import aware, iso, now
from service.store.write import HistoryWriter

EXPORT_CHUNK_STEPS = 2_000


class Store:
    def __init__(self, url: str | None = None, *, migrate: bool = True, cache_size: int = 64):
        """``cache_size``: how many recent history/gradients results to keep (0: none)."""
        self.url = database_url(url)
        self.engine, self._checkpointer = open_engine(self.url)
        self._reader = reader(self.engine)
        self._results = query.ResultCache(cache_size)
        self._jobs = jobs.Jobs(self.engine, self._reader)
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

    # -- jobs (service.store.jobs) ------------------------------------------------------------

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
        return self._jobs.create(name, spec, param_names, status, idempotency_key, total_steps)

    def get_job(self, job_id: int) -> dict | None:
        return self._jobs.get(job_id)

    def list_jobs(
        self, status: str | None = None, limit: int = 100, offset: int = 0, include_spec: bool = True
    ) -> list[dict]:
        """Jobs newest first, optionally only those in ``status``. Without ``include_spec`` the spec
        column is not even read: one job's spec can be tens of megabytes."""
        return self._jobs.list(status, limit, offset, include_spec)

    def count_jobs(self, status: str | None = None) -> int:
        return self._jobs.count(status)

    def job_events(self, job_id: int, after_id: int = 0) -> list[dict]:
        """The job's status changes with id > ``after_id``, oldest first."""
        return self._jobs.events(job_id, after_id)

    def set_param_names(self, job_id: int, names: list[str]) -> None:
        self._jobs.set_param_names(job_id, names)

    def transition(
        self,
        job_id: int,
        to_status: str,
        reason: str | None = None,
        error: str | None = None,
        owner: str | None = None,
        from_status: str | None = None,
    ) -> None:
        """Change the job's status (see service.domain.TRANSITIONS) and record the change in job_events.

        ``owner`` ("pid@hostname", default this process) is recorded when the job starts running.
        ``from_status`` makes it a compare-and-set: JobStateError unless the job is in that state
        (a runner ending its job must not overwrite a cancel or an interruption made meanwhile).
        """
        self._jobs.transition(job_id, to_status, reason, error, owner, from_status)

    def claim_next(self, owner: str | None = None, reason: str = "picked up by a worker") -> int | None:
        """Atomically move the oldest queued job to running; its id, or None when none is queued."""
        return self._jobs.claim_next(owner, reason)

    def heartbeat(self, job_id: int) -> None:
        self._jobs.heartbeat(job_id)

    def recover_orphans(self, stale_after: float | None = None) -> list[int]:
        """Mark running jobs whose owner process is gone as interrupted; return their ids.

        On this host a job is orphaned when its owner pid is dead (or a zombie, or reused by a newer
        process). Jobs owned on other hosts are only judged by ``stale_after``: seconds without a
        heartbeat (None: never).
        """
        return self._jobs.recover_orphans(stale_after)

    def truncate_history(self, job_id: int, from_step: int) -> None:
        """Delete history, statistics and snapshots at steps >= ``from_step``, and checkpoints after it.

        The checkpoint *at* ``from_step`` is kept: it is the state a resume restarts from, so a crash
        during the resume can restart from it again (writing a checkpoint at an existing step
        replaces it). ``steps_done`` becomes ``from_step`` when it was larger.
        """
        self._jobs.truncate_history(job_id, from_step)

    def delete_job(self, job_id: int) -> None:
        """Remove a finished job and all it recorded, in chunks so other writers are never held up
        for long (if interrupted, the job is still there with a shorter history; delete it again)."""
        self._jobs.delete(job_id)

    # -- writing history (service.store.write) ------------------------------------------------

    def writer(self, job_id: int, param_names: list[str], *,
               background_after: float | None = None,
               snapshots: SnapshotBudget | None = None) -> HistoryWriter:
        """A buffered writer for the job's steps; sets the job's param_names if it has none.

        ``snapshots``: the job's snapshot budget; each write then thins the job's snapshots and replay
        checkpoints to its spacing (without it, only the newest checkpoints are kept).

        ``background_after`` (seconds): from then on a writer process writes the batches (see
        service.store.writer_process), on a database another process can open; call the writer's close()
        at the end. It writes only while the job runs under the owner it has now: once it is cancelled,
        nothing more is written, so its history ends at the step its cancellation names."""
        names = jobs.check_names(param_names)
        with self.engine.begin() as conn:
            job = jobs.job_row(conn, job_id, for_update=True)
            jobs.set_param_names(conn, job, names)
            last = jobs.max_step(conn, job_id)
        # A running job's writer writes under its owner: a write after the job stopped running
        # (cancelled, taken over) is rolled back, from this process or from its writer process.
        owner = job.owner if job.status == "running" else None
        if not self.shareable:
            background_after = None  # a database only this process can open
        return HistoryWriter(self.engine, self.url, job_id, names, last, owner=owner,
                             background_after=background_after, snapshots=snapshots)

    def last_checkpoint(self, job_id: int, at_or_before: int | None = None) -> Checkpoint | None:
        """The job's newest checkpoint (at or before step ``at_or_before``), or None."""
        with self._reader.begin() as conn:
            jobs.job_row(conn, job_id)
            return query.last_checkpoint(conn, job_id, at_or_before)

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
            names = jobs.param_names(job)
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
            job = jobs.job_row(conn, job_id)
            what, compute = request(conn, job)
            return self._cached(job, (*what, start, end, max_points), compute)

    def _cached(self, job, request: tuple, compute) -> query.Points:
        """Range results are cached per job version: every change to a job's history (flush,
        truncate, delete) also sets its updated_at in the same transaction, and the job row is
        read in the same read transaction as the history. The query runs outside the cache's lock."""
        key = (job.id, aware(job.updated_at), job.steps_done, *request)
        return self._results.get_or_compute(key, compute)

    def step(self, job_id: int, step: int) -> dict | None:
        """Everything recorded at ``step``: scalars, ``stats`` per parameter, and ``gradients`` and
        ``params`` (name -> ndarray) when a snapshot was taken; None when nothing was recorded."""
        with self._reader.begin() as conn:
            return query.step(conn, job_id, step, jobs.param_names(jobs.job_row(conn, job_id)))

    def snapshot_steps(
        self, job_id: int, start: int = 0, end: int | None = None, limit: int = 1000
    ) -> list[int]:
        """Steps in [start, end] that have a parameter snapshot, ascending."""
        with self._reader.begin() as conn:
            jobs.job_row(conn, job_id)
            return query.snapshot_steps(conn, job_id, start, end, limit)

    def export_columns(self, job_id: int) -> list[str]:
        """Column names of :meth:`export_rows` rows, in order (for a CSV header)."""
        with self._reader.begin() as conn:
            return query.export_columns(jobs.param_names(jobs.job_row(conn, job_id)))

    def export_rows(self, job_id: int, start: int | None = None, end: int | None = None) -> Iterator[dict]:
        """Every recorded step in [start, end] with every parameter's statistics, never downsampled.

        Read in chunks by step (each chunk its own short read transaction), so a slow consumer holds
        nothing open. Raises JobNotFound here, before the first row is asked for.
        """
        query.check_range(start, end)
        with self._reader.begin() as conn:
            names = jobs.param_names(jobs.job_row(conn, job_id))
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
                    created_at=now(),
                )
            ).inserted_primary_key[0]

    @staticmethod
    def _dataset_dict(row, with_content: bool) -> dict:
        out = {
            "id": row.id,
            "name": row.name,
            "sha256": row.sha256,
            "meta": json.loads(row.meta),
            "created_at": iso(row.created_at),
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

    # -- space (service.store.maintenance) -----------------------------------------------------

    def reclaim_space(self) -> int | None:
        """Return the pages deleted jobs freed to the file system (SQLite in incremental auto-vacuum
        mode); the bytes returned, or None when this database keeps them until :meth:`vacuum`."""
        from service.store import maintenance

        return maintenance.reclaim(self.engine)

    def vacuum(self) -> dict:
        """A full VACUUM (on SQLite also switching to incremental auto-vacuum); sizes before and after."""
        from service.store import maintenance

        return maintenance.vacuum(self.engine)

    def storage_stats(self) -> dict:
        """Bytes per job and kind of data, totals, table and database sizes (see maintenance)."""
        from service.store import maintenance

        return maintenance.storage_stats(self.engine)
