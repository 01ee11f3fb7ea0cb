"""Buffered writing of a job's per-step history.

The training loop adds steps and snapshots to a :class:`HistoryWriter` and flushes every so often;
each flush is one write transaction: ``executemany`` of the buffered rows, the optional checkpoint,
the rollup blocks the batch touched, and the job's progress (steps_done, last_loss, heartbeat).
A writer made with ``background_after`` hands its batches to a writer process once it has been
open that long (see service.store.writer_process), so a long run stops waiting on the database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from service.config import settings
from service.domain import HISTORY_SERIES, STAT_SERIES, Checkpoint, SnapshotBudget
from service.store import rollup as rollup
from service.store.arrays import encode_array
from service.store.engine import reader
from service.store.schema import SPARSE_SERIES, CheckpointRow, History, Job, ParamStat, StepArray
from service.store.sql import executemany, rows
from service.store.times import now
from service.store.writer_process import WriterProcess, WriterProcessError

log = logging.getLogger("gradbook.store")

# Beyond this many buffered steps the writer flushes by itself, to bound memory.
AUTOFLUSH_STEPS = 50_000
# Where a writer with an owner still writes (see HistoryWriter): only a running job. A cancel takes
# effect at the last step committed before it, so its transition, the job's steps_done and the
# stored history name the same step; batches computed after it are rolled back.
WRITABLE_STATUSES = ("running",)
SNAPSHOT_KINDS = ("gradient", "param")  # step_arrays kinds of a snapshot (the rest are checkpoints')


def _step_number(step, what: str = "step") -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"{what}: expected a non-negative integer, got {step!r}")
    if step > rollup.MAX_STEP:
        raise ValueError(f"{what}: {step} is beyond the largest storable step {rollup.MAX_STEP}")
    return int(step)


def _scalar(name: str, value, optional: bool) -> float | None:
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: expected a number, got None")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None


def _array_rows(job_id: int, step: int, kind: str, arrays: dict) -> list[tuple]:
    """step_arrays rows (tuples in column order, for :func:`executemany`) of ``arrays``."""
    if not isinstance(arrays, dict):
        raise ValueError(f"{kind} arrays: expected a dict of name -> array, got {type(arrays).__name__}")
    rows = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind} arrays: names must be non-empty strings, got {name!r}")
        dtype, shape, data = encode_array(name, value)
        rows.append((job_id, step, kind, name, dtype, shape, data))
    return rows


def checkpoint_rows(job_id: int, checkpoint: Checkpoint) -> tuple[int, str, list[tuple]]:
    """The checkpoint's step, JSON meta and step_arrays rows; ValueError naming what is wrong."""
    if not isinstance(checkpoint, Checkpoint):
        raise ValueError(f"checkpoint: expected a Checkpoint, got {type(checkpoint).__name__}")
    step = _step_number(checkpoint.step, "checkpoint.step")
    try:
        meta = json.dumps(checkpoint.meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint.meta: must be JSON-able without NaN/Infinity ({exc})") from None
    return step, meta, _array_rows(job_id, step, "checkpoint", checkpoint.arrays)


def write_checkpoint(conn: Connection, job_id: int, checkpoint: Checkpoint,
                     spacing: int | None = None) -> None:
    """Store ``checkpoint``, replacing one at the same step, and prune the job's older checkpoints
    (see :func:`prune_checkpoints`)."""
    step, meta, array_rows = checkpoint_rows(job_id, checkpoint)
    a, c = StepArray, CheckpointRow
    conn.execute(delete(a).where(a.job_id == job_id, a.step == step, a.kind == "checkpoint"))
    conn.execute(delete(c).where(c.job_id == job_id, c.step == step))
    conn.execute(insert(c), [dict(job_id=job_id, step=step, meta=meta, created_at=now())])
    executemany(conn, a.__table__, array_rows)
    prune_checkpoints(conn, job_id, spacing, step)


def prune_checkpoints(conn: Connection, job_id: int, spacing: int | None, keep: int | None = None) -> None:
    """Keep the job's newest GRADBOOK_KEEP_CHECKPOINTS checkpoints (a resume needs only the newest)
    and, given the snapshot ``spacing``, the first of each block of that many steps: the points a
    step without a snapshot is replayed from (see domain.SnapshotBudget). Each holds the parameters
    and the optimizer state, so keeping every one would grow the database without bound."""
    c, a = CheckpointRow, StepArray
    newest = select(c.step).where(c.job_id == job_id).order_by(c.step.desc())
    kept = conn.execute(newest.limit(settings().keep_checkpoints)).scalars().all()
    if not kept:
        return
    older = [c.job_id == job_id, c.step < kept[-1]]
    if keep is not None:
        older.append(c.step != keep)
    if spacing is not None:
        firsts = select(func.min(c.step)).where(c.job_id == job_id).group_by(c.step - c.step % spacing)
        older.append(c.step.not_in(firsts))
    # Arrays by exact (job, step, kind) keys, from a subquery (a job written before pruning may hold
    # more old checkpoints than a statement takes parameters); a range over the job's steps would
    # scan its snapshots too.
    conn.execute(delete(a).where(a.job_id == job_id, a.kind == "checkpoint",
                                 a.step.in_(select(c.step).where(*older))))
    conn.execute(delete(c).where(*older))


def thin_snapshots(conn: Connection, job_id: int, spacing: int) -> None:
    """Drop the job's snapshots off the grid of ``spacing`` steps, and the checkpoints that are no
    longer replay points: the budget's spacing grew."""
    a = StepArray
    conn.execute(delete(a).where(a.job_id == job_id, a.kind.in_(SNAPSHOT_KINDS), a.step % spacing != 0))
    prune_checkpoints(conn, job_id, spacing)


@dataclass
class _Batch:
    """Buffered steps handed to one flush: rows ordered by step, stats of shape (steps, P, 6)."""

    steps: list[int]
    scalars: list[tuple]
    stats: np.ndarray
    arrays: list[tuple]
    spacing: int | None = None  # the snapshot budget's spacing after these steps (None: no budget)

    def then(self, later: _Batch) -> _Batch:
        """This batch followed by ``later``."""
        return _Batch(self.steps + later.steps, self.scalars + later.scalars,
                      np.concatenate([self.stats, later.stats]), self.arrays + later.arrays, later.spacing)


class _NotOurs(Exception):
    """Raised inside a write transaction to roll it back: the job left its owner."""


class HistoryWriter:
    """Buffers steps of one job and writes them in batches through ``engine`` (the database at
    ``url``, which a writer process opens too). Not thread-safe; one per running job.

    ``owner`` ("pid@host"): write only while the job is running under that owner; otherwise a flush
    writes nothing and returns the job's status. So a cancelled job's history ends at the step its
    cancel names, and a writer process, which may outlive the process that feeds it by one write,
    never writes after a newer run took the job over.
    ``background_after`` (seconds, None: never): from then on, batches go to a writer process; call
    :meth:`close` at the end to wait for its last write.
    ``snapshots`` (a domain.SnapshotBudget): each write keeps the job's snapshots and replay
    checkpoints to the budget's spacing; without it only the newest checkpoints are kept.
    """

    def __init__(self, engine: Engine, url: str, job_id: int, param_names: list[str], last_step: int | None,
                 *, owner: str | None = None, background_after: float | None = None,
                 snapshots: SnapshotBudget | None = None):
        self.engine = engine
        self.url = url
        self.owner = owner
        self._background_after = background_after
        self._opened = time.monotonic()
        self._process: WriterProcess | None = None
        self._unverified: tuple | None = None  # (batch, checkpoint) a failed writer process had
        self.job_id = job_id
        self.param_names = list(param_names)
        self._last_step = -1 if last_step is None else last_step  # steps must increase past this
        self._steps: list[int] = []
        self._scalars: list[tuple] = []
        self._stats = np.empty((64, len(self.param_names), len(STAT_SERIES)))  # grows by doubling
        self._arrays: list[tuple] = []
        self._tails: tuple[int, dict] | None = None  # (steps_done, last rollup blocks) as last committed
        self.snapshots = snapshots
        self._thinned_to = 0  # the spacing this writer last thinned to (0: not yet, so its first write does)

    @property
    def pending(self) -> int:
        """Number of buffered steps not yet handed to a flush."""
        return len(self._steps)

    @property
    def empty(self) -> bool:
        """Nothing buffered: no steps and no snapshot arrays (add_step may have flushed the steps
        on its own before the step's snapshot came)."""
        return not self._steps and not self._arrays

    def add_step(self, step, loss, lr, grad_norm, param_stats, val_loss=None, val_accuracy=None) -> None:
        """Buffer one step. ``param_stats``: shape (P, 6), rows in ``param_names`` order, columns
        norm, mean, std, min, max, nonfinite. Values may be NaN or infinite; they are kept as such."""
        step = _step_number(step)
        if step <= self._last_step:
            raise ValueError(f"step: {step} is not after the previous step {self._last_step}")
        values = (loss, lr, grad_norm, val_loss, val_accuracy)  # in HISTORY_SERIES order
        scalars = tuple(_scalar(name, value, name in SPARSE_SERIES)
                        for name, value in zip(HISTORY_SERIES, values, strict=True))
        expected, shape = self._stats.shape[1:], np.shape(param_stats)
        if shape != expected:
            raise ValueError(f"param_stats: expected shape {expected} (params x {STAT_SERIES}), got {shape}")
        n = len(self._steps)
        if n == len(self._stats):
            self._stats = np.concatenate([self._stats, np.empty_like(self._stats)])
        try:
            self._stats[n] = param_stats  # a copy: the caller may reuse its array
        except (TypeError, ValueError):
            raise ValueError(f"param_stats: expected numbers, got {param_stats!r}") from None
        self._steps.append(step)
        self._scalars.append(scalars)
        self._last_step = step
        if len(self._steps) >= AUTOFLUSH_STEPS:
            self.flush()

    def add_snapshot(self, step, grads: dict, params: dict) -> None:
        """Buffer full gradient and parameter arrays of ``step`` (stored raw, little-endian)."""
        step = _step_number(step)
        self._arrays += _array_rows(self.job_id, step, "gradient", grads)
        self._arrays += _array_rows(self.job_id, step, "param", params)

    def flush(self, checkpoint: Checkpoint | None = None) -> str:
        """Write everything buffered (and ``checkpoint``) in one transaction.

        Returns the job's status after the write, so a training loop can notice a cancellation
        (with a writer process: after its previous write, one flush late).
        """
        batch = self._take()
        try:
            process = self.writer_process()
            if process is not None:
                if checkpoint is not None:
                    checkpoint_rows(self.job_id, checkpoint)  # a bad one raises here, not a flush later
                try:
                    return process.write(batch, checkpoint)
                except WriterProcessError as e:  # written here from now on
                    self._lost(e)
            batch, checkpoint = self._with_unverified(batch, checkpoint)
            return self.write(batch, checkpoint)
        except BaseException:
            self._restore(batch)  # rolled back: the rows stay buffered, as if never taken
            raise

    def close(self) -> str | None:
        """Wait for the writer process's last write and end it; the job's status after that write
        (None without a writer process). What it did not write is written here; an error doing so
        propagates, and so does an interruption, once what it was given is written here."""
        process = self._process
        self._background_after = None  # whatever comes after is written here
        if process is None:
            return None
        try:
            status = process.finish()
        except WriterProcessError as e:
            self._lost(e)
        except BaseException:  # interrupted while it wrote, and then killed: write its batch here
            with contextlib.suppress(Exception):
                try:
                    process.finish()
                except WriterProcessError as e:
                    self._lost(e)
                self.flush()
            raise
        else:
            self._process = None
            return status
        finally:
            if self._process is process:
                process.kill()
                self._process = None
        return self.flush()

    def writer_process(self) -> WriterProcess | None:
        """The writer process the next flush hands its batch to, once it is ready; started when the
        writer has been open for ``background_after`` seconds. None until it is ready (it takes a
        moment to import), and for good if it cannot start or failed: flushes write here. Never waits."""
        if self._background_after is None:
            return None
        if self._process is None:
            if time.monotonic() - self._opened < self._background_after:
                return None
            try:
                self._process = WriterProcess(self.url, self.job_id, self.param_names, self.owner)
            except Exception as e:  # noqa: BLE001 - e.g. no fd passing on this OS: the loop writes, as before
                log.warning("job %s: no writer process (%s); writing in the training process", self.job_id, e)
                self._background_after = None
                return None
        try:
            return self._process if self._process.ready() else None
        except WriterProcessError as e:
            self._lost(e)
            return None

    def _lost(self, error: WriterProcessError) -> None:
        """Stop using the failed writer process; keep what it was given and may not have written."""
        log.warning("job %s: the writer process failed (%s); writing in the training process from now on",
                    self.job_id, error)
        if self._process is not None:
            self._process.kill()
        self._process = None
        self._background_after = None
        if error.batch is not None or error.checkpoint is not None:
            self._unverified = (error.batch, error.checkpoint)

    def _with_unverified(self, batch: _Batch, checkpoint: Checkpoint | None) -> tuple:
        """``batch`` and ``checkpoint`` preceded by what a failed writer process was given and did
        not commit. It may have committed and died before it could say so: a batch is one
        transaction, and the job's progress (or, for a batch of arrays alone, its first array)
        shows whether it is in. Kept for the next flush if this check fails."""
        if self._unverified is None:
            return batch, checkpoint
        lost, lost_checkpoint = self._unverified
        if lost is not None and self._committed(lost):
            lost, lost_checkpoint = None, None
        self._unverified = None
        return (batch if lost is None else lost.then(batch)), checkpoint or lost_checkpoint

    def _committed(self, batch: _Batch) -> bool:
        with reader(self.engine).begin() as conn:
            if batch.steps:
                job = Job.__table__
                done = conn.execute(select(job.c.steps_done).where(job.c.id == self.job_id)).scalar_one()
                return batch.steps[-1] < done
            if batch.arrays:
                a, key = StepArray, batch.arrays[0][:4]  # (job_id, step, kind, name)
                first = select(a.step).where(a.job_id == key[0], a.step == key[1], a.kind == key[2],
                                             a.name == key[3])
                return conn.execute(first).first() is not None
        return False  # empty, or a checkpoint alone: writing it again replaces it

    def _take(self) -> _Batch:
        """The buffered rows as a batch (checked first: a bad count raises and keeps them buffered);
        the buffers start empty."""
        self._check_counts()
        n = len(self._steps)
        spacing = None if self.snapshots is None else self.snapshots.spacing(self._last_step + 1)
        batch = _Batch(self._steps, self._scalars, self._stats[:n].copy(), self._arrays, spacing)
        self._steps, self._scalars, self._arrays = [], [], []
        return batch

    def _restore(self, batch: _Batch) -> None:
        """Put a batch whose write failed back in front of the buffer."""
        n = len(self._steps)
        stats = np.concatenate([batch.stats, self._stats[:n]])
        self._stats = np.concatenate([stats, np.empty((max(64, len(stats)), *stats.shape[1:]))])
        self._steps = batch.steps + self._steps
        self._scalars = batch.scalars + self._scalars
        self._arrays = batch.arrays + self._arrays

    def write(self, batch: _Batch, checkpoint: Checkpoint | None) -> str:
        """One transaction: the batch's rows, arrays and rollups, ``checkpoint``, the job's progress;
        the job's status after it. Nothing is written when the job left ``owner``."""
        try:
            return self._write(batch, checkpoint)
        except _NotOurs:
            job = Job.__table__
            with reader(self.engine).begin() as conn:
                return conn.execute(select(job.c.status).where(job.c.id == self.job_id)).scalar_one()

    def _write(self, batch: _Batch, checkpoint: Checkpoint | None) -> str:
        job = Job.__table__
        with self.engine.begin() as conn:
            tails = self._tails_if_current(conn)
            if batch.steps:
                tails = self._write_rows(conn, batch, tails)
            executemany(conn, StepArray.__table__, batch.arrays)
            thin = batch.spacing is not None and batch.spacing > self._thinned_to
            if thin:  # after the inserts: a batch's first snapshots may be off the grid its end brought
                thin_snapshots(conn, self.job_id, batch.spacing)
            if checkpoint is not None:
                write_checkpoint(conn, self.job_id, checkpoint, batch.spacing)
            progress = {"heartbeat_at": now(), "updated_at": now()}
            if batch.steps:
                last_loss = batch.scalars[-1][0]
                progress["steps_done"] = batch.steps[-1] + 1
                progress["last_loss"] = last_loss if math.isfinite(last_loss) else None
            ours = [job.c.id == self.job_id]
            if self.owner is not None:
                ours += [job.c.owner == self.owner, job.c.status.in_(WRITABLE_STATUSES)]
            progressed = update(job).where(*ours).values(**progress)
            if conn.dialect.update_returning:
                row = conn.execute(progressed.returning(job.c.status, job.c.steps_done)).first()
            else:  # SQLite before 3.35
                if conn.execute(progressed).rowcount == 0:
                    raise _NotOurs
                current = select(job.c.status, job.c.steps_done).where(job.c.id == self.job_id)
                row = conn.execute(current).one()
            if row is None:
                raise _NotOurs  # rolls the whole batch back
            status, steps_done = row
        self._tails = (steps_done, tails)  # committed: the rollups' last blocks are these
        if thin:
            self._thinned_to = batch.spacing
        return status

    def _tails_if_current(self, conn: Connection) -> dict:
        """The last rollup blocks this writer stored, unless the job's history changed since
        (truncated, or written by someone else): then {} and the blocks are read back."""
        if self._tails is None:
            return {}
        job = Job.__table__
        steps_done = conn.execute(select(job.c.steps_done).where(job.c.id == self.job_id)).scalar_one()
        return self._tails[1] if steps_done == self._tails[0] else {}

    def _check_counts(self) -> None:
        counts = self._stats[: len(self._steps), :, -1]
        bad = ~((counts >= 0) & (counts <= 2**53) & (counts == np.floor(counts)))  # True for NaN
        if bad.any():
            i, p = np.argwhere(bad)[0]
            raise ValueError(
                f"param_stats: at step {self._steps[i]}, parameter {self.param_names[p]!r}: the nonfinite "
                f"column must hold a count, got {counts[i, p]!r} (nothing of this batch was written)"
            )

    def _write_rows(self, conn: Connection, batch: _Batch, tails: dict) -> dict:
        """Raw rows and rollups of the batch; returns the rollups' new last blocks (see append)."""
        steps = np.array(batch.steps, dtype=np.int64)
        scalars = np.array(
            [[math.nan if v is None else v for v in row] for row in batch.scalars], dtype=np.float64
        )
        given = np.array([[v is not None for v in row] for row in batch.scalars], dtype=bool)
        bits = 1 << np.arange(len(HISTORY_SERIES))
        nan_mask = ((np.isnan(scalars) & given) * bits).sum(axis=1)
        history_rows = rows(self.job_id, steps, scalars, nan_mask)
        executemany(conn, History.__table__, history_rows)

        n_params = len(self.param_names)
        if n_params:
            # (steps, P, 6) -> rows ordered (param, step), the primary key's order.
            stats = batch.stats.transpose(1, 0, 2).reshape(-1, len(STAT_SERIES))
            param_col = np.repeat(np.arange(n_params), len(steps))
            step_col = np.tile(steps, n_params)
            stat_rows = rows(
                self.job_id,
                param_col,
                step_col,
                stats[:, :-1],
                stats[:, -1].astype(np.int64),
            )
            executemany(conn, ParamStat.__table__, stat_rows)

        new = {"history": rollup.append(conn, rollup.HISTORY, self.job_id, {}, None, steps, scalars,
                                        given[:, rollup.HISTORY.sparse_index], tails.get("history"))}
        if n_params:
            keys = {"param": list(range(n_params))}
            new["param_stats"] = rollup.append(conn, rollup.PARAM_STATS, self.job_id, keys, param_col,
                                               step_col, stats, tail=tails.get("param_stats"))
        return new

