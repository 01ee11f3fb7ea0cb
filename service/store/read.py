"""Reading a job's history: step ranges raw or downsampled, one step in full, and export.

Every function takes an open connection (the Store gives it a read transaction, so several
queries see one snapshot). Ranges come back as :class:`Points` (the rows as SQL returned them,
decoded to dicts on demand); the rest as plain dicts ready for JSON, except that NaN and
infinities stay Python floats (JSON has no spelling for them; the caller decides).

A point of a downsampled range describes one bucket: ``step`` and ``step_end`` are the first and
last recorded steps in it, ``count`` the number of recorded steps, and every series is an object
``{"min", "max", "mean", "last"}``: min/max/mean skip NaN (None when the bucket has no non-NaN
value), ``last`` is the value at ``step_end``, or for a validation metric (recorded every K steps)
at the bucket's last step that recorded it (None when none did).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.engine import Connection

from service.domain import HISTORY_SERIES, STAT_SERIES, Checkpoint
from service.store import buckets as buckets
from service.store import rollup as rollup
from service.store.arrays import decode_array
from service.store.schema import CheckpointRow, History, ParamStat, StepArray

NAN = math.nan
_H_COLUMNS = (*HISTORY_SERIES, "nan_mask")


def check_range(start, end, max_points=None) -> None:
    """The one check of a step range: ``start`` and ``end`` (inclusive) non-negative integers or
    None, ``start`` not after ``end``, and ``max_points`` a positive integer (None: a range without a
    point budget, e.g. an export). ValueError whose message begins with the field at fault."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name}: expected a non-negative integer or None, got {value!r}")
    if start is not None and end is not None and start > end:
        raise ValueError(f"start: {start} is after end {end}")
    if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, int)
                                   or max_points < 1):
        raise ValueError(f"max_points: expected a positive integer, got {max_points!r}")


def _stat_value(name: str, value):
    if value is None:  # stats are always recorded: NULL is a stored NaN
        return NAN
    return int(value) if name == "nonfinite" else value


class Points:
    """A range's points as the rows SQL returned (tuples: cheap to fetch, cache and share).

    Raw: ``(step, *series, nan)``. Downsampled: ``(step, step_end, count, *(min, max, mean, last)
    per series, nan)``. SQL returns NaN as NULL; ``nan`` is a bit mask that tells them apart (raw:
    bit i, series i is NaN; buckets: bit i, series i's mean is NaN, bit n + i, its last value is).
    :meth:`dicts` decodes them; a JSON writer that spells NaN as null can use the rows as they are.
    """

    __slots__ = ("series", "downsampled", "rows", "_shared")

    def __init__(self, series: tuple[str, ...], downsampled: bool, rows: list[tuple]):
        self.series, self.downsampled, self.rows = series, downsampled, rows
        self._shared: list[dict] | None = None

    def dicts(self, copy: bool = True) -> list[dict]:
        """The points as dicts (see the module docstring), NaN restored from the bit mask: fresh ones,
        or with ``copy=False`` one list decoded once and shared by every such caller (read only)."""
        if copy or self._shared is None:
            decode = _bucket_dicts if self.downsampled else _raw_dicts
            points = decode(self.series, self.rows)
            if copy:
                return points
            self._shared = points
        return self._shared


def _raw_dicts(series: tuple[str, ...], rows) -> list[dict]:
    keys = ("step", *series)
    out = []
    for row in rows:
        point = dict(zip(keys, row, strict=False))  # stops before the trailing mask
        nan = row[-1]
        if nan:
            for i, s in enumerate(series):
                if nan >> i & 1:
                    point[s] = NAN
        out.append(point)
    return out


_AGGREGATES = ("min", "max", "mean", "last")


def _bucket_dicts(series: tuple[str, ...], rows) -> list[dict]:
    n = len(series)
    spans = [(s, 3 + 4 * i, 7 + 4 * i) for i, s in enumerate(series)]
    out = []
    for row in rows:
        point = {"step": row[0], "step_end": row[1], "count": row[2]}
        for s, a, b in spans:
            point[s] = dict(zip(_AGGREGATES, row[a:b], strict=True))
        nan = row[-1]
        if nan:
            for i, s in enumerate(series):
                if nan >> i & 1:
                    point[s]["mean"] = NAN
                if nan >> (n + i) & 1:
                    point[s]["last"] = NAN
        out.append(point)
    return out


def raw_point(st: rollup.SeriesTable, row) -> dict:
    """A raw point from a row of ``buckets.raw_columns(st)``."""
    return _raw_dicts(st.series, (row,))[0]


def _extent(conn: Connection, table, where: list) -> tuple[int | None, int | None]:
    # Two scalar subqueries: SQLite answers a lone MIN or MAX from the index without scanning.
    first = select(table.c.step).where(*where).order_by(table.c.step).limit(1).scalar_subquery()
    last = select(table.c.step).where(*where).order_by(table.c.step.desc()).limit(1).scalar_subquery()
    return tuple(conn.execute(select(first, last)).one())


def _series_range(conn, st: rollup.SeriesTable, job_id: int, key_in: dict, start, end, max_points) -> Points:
    table = st.raw
    where = [table.c.job_id == job_id] + [table.c[k].in_(v) for k, v in key_in.items()]
    first, last = _extent(conn, table, where)
    lo = None if first is None else first if start is None else max(start, first)
    hi = None if last is None else last if end is None else min(end, last)
    if lo is None or lo > hi:
        return Points(st.series, False, [])
    if hi - lo + 1 <= max_points:
        params = {"job_id": job_id, "lo": lo, "hi": hi, **{f"{k}s": list(v) for k, v in key_in.items()}}
        return Points(st.series, False, conn.execute(buckets.raw_statement(st), params).all())
    rows = buckets.bucket_rows(conn, st, job_id, key_in, buckets.plan(lo, hi, max_points))
    return Points(st.series, True, rows)


def history(conn: Connection, job_id: int, start, end, max_points: int) -> Points:
    return _series_range(conn, rollup.HISTORY, job_id, {}, start, end, max_points)


def gradients(conn: Connection, job_id: int, param_index: int, start, end, max_points: int) -> Points:
    return _series_range(conn, rollup.PARAM_STATS, job_id, {"param": [param_index]}, start, end, max_points)


def step(conn: Connection, job_id: int, step_number: int, param_names: list[str]) -> dict | None:
    h, ps, a = History, ParamStat, StepArray
    row = conn.execute(select(h).where(h.job_id == job_id, h.step == step_number)).first()
    arrays = conn.execute(
        select(a).where(a.job_id == job_id, a.step == step_number, a.kind.in_(("gradient", "param")))
    ).all()
    if row is None and not arrays:
        return None
    result = {"step": step_number}
    if row is not None:
        point = raw_point(rollup.HISTORY, [step_number, *[getattr(row, c) for c in _H_COLUMNS]])
        result.update((s, point[s]) for s in HISTORY_SERIES)
    if param_names:
        stats = conn.execute(
            select(ps).where(
                ps.job_id == job_id, ps.param.in_(list(range(len(param_names)))), ps.step == step_number
            )
        )
        result["stats"] = {
            param_names[r.param]: {s: _stat_value(s, getattr(r, s)) for s in STAT_SERIES} for r in stats
        }
    for kind, key in (("gradient", "gradients"), ("param", "params")):
        found = {r.name: decode_array(r.name, r.dtype, r.shape, r.data) for r in arrays if r.kind == kind}
        if found:
            result[key] = found
    return result


def snapshot_steps(conn: Connection, job_id: int, start: int, end: int | None, limit: int) -> list[int]:
    """Steps in [start, end] that have a parameter snapshot, ascending."""
    a = StepArray
    q = select(a.step).distinct().where(a.job_id == job_id, a.kind == "param", a.step >= start)
    if end is not None:
        q = q.where(a.step <= end)
    return list(conn.execute(q.order_by(a.step).limit(limit)).scalars())


def last_checkpoint(conn: Connection, job_id: int, at_or_before: int | None = None) -> Checkpoint | None:
    """The job's newest checkpoint (at or before step ``at_or_before``), or None."""
    c, a = CheckpointRow, StepArray
    q = select(c.step, c.meta).where(c.job_id == job_id)
    if at_or_before is not None:
        q = q.where(c.step <= at_or_before)
    row = conn.execute(q.order_by(c.step.desc()).limit(1)).first()
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


def export_columns(param_names: list[str]) -> list[str]:
    return ["step", *HISTORY_SERIES] + [f"{p}_{s}" for p in param_names for s in STAT_SERIES]


def export_chunk(conn: Connection, job_id: int, lo: int, hi: int, limit: int, param_names: list[str]):
    """Up to ``limit`` full rows (history plus every parameter's statistics) from step ``lo`` on."""
    h, ps = History, ParamStat
    rows = conn.execute(
        select(*buckets.raw_columns(rollup.HISTORY))
        .where(h.job_id == job_id, h.step.between(lo, hi))
        .order_by(h.step)
        .limit(limit)
    ).all()
    if not rows:
        return []
    out = {r[0]: raw_point(rollup.HISTORY, r) for r in rows}
    if param_names:
        stats = conn.execute(
            select(ps).where(
                ps.job_id == job_id,
                ps.param.in_(list(range(len(param_names)))),
                ps.step.between(rows[0][0], rows[-1][0]),
            )
        )
        for r in stats:
            point = out.get(r.step)
            if point is not None:
                name = param_names[r.param]
                for s in STAT_SERIES:
                    point[f"{name}_{s}"] = _stat_value(s, getattr(r, s))
    return list(out.values())


class ResultCache:
    """A small thread-safe LRU of query results (many clients polling one chart ask the same).

    Single-flight: when several threads miss the same key at once, one computes and the others
    wait for its result instead of running the same query side by side.
    """

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._pending: dict = {}
        self._lock = threading.Lock()

    def get_or_compute(self, key, compute):
        if self.size <= 0:
            return compute()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            done = self._pending.get(key)
            mine = done is None
            if mine:
                done = self._pending[key] = threading.Event()
        if not mine:
            done.wait()
            with self._lock:
                if key in self._items:
                    return self._items[key]
            return compute()  # the computing thread failed; try ourselves
        try:
            value = compute()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return value
        finally:
            with self._lock:
                del self._pending[key]
            done.set()
