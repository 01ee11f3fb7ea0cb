"""Exact per-block aggregates of every per-step series: the rollup pyramid, kept in step with the raw rows.

Level 0 is the raw table; each stored level L (2 to 9, see schema.ROLLUP_FIRST_LEVEL) holds one row
per aligned block of ``4**L`` steps with the min, max, sum and count (of non-NaN values) of every
series, plus the first/last step present and the row count. The blocks a batch touches are
computed with NumPy (:func:`append`) in the batch's own transaction, so the pyramid always agrees
with the raw rows; every level's sum is the sequential sum of the block's raw values in step order,
so the pyramid is bit for bit the same however the rows were batched. :func:`truncate` recomputes
the blocks a truncation cuts; :func:`rebuild` recomputes levels in SQL (an independent check).
Downsampled queries over the pyramid are service/store/buckets.py's.

NaN is stored as NULL (see schema.py), so min, max and mean skip NaN like ``np.nanmin``; a sum of
+inf and -inf is NaN, kept as NULL in ``<series>_sum``, and makes the bucket's mean NaN.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import (
    Integer,
    SmallInteger,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.engine import Connection

from service.domain import HISTORY_SERIES, STAT_SERIES
from service.store.schema import (
    ROLLUP_BASE,
    ROLLUP_FIRST_LEVEL,
    ROLLUP_LEVELS,
    SPARSE_SERIES,
    History,
    ParamStat,
    history_rollup,
    param_stats_rollup,
)
from service.store.sql import executemany
from service.store.sql import rows as _rows

MAX_STEP = 2**31 - 1  # steps are INTEGER columns


@dataclass(frozen=True)
class SeriesTable:
    """A raw per-step table, its rollup pyramid, its value series and extra key columns; ``sparse``:
    the series a step may leave unrecorded (the raw table then has a ``nan_mask``), whose blocks also
    keep the last step that recorded them."""

    raw: Table
    rollup: Table
    series: tuple[str, ...]
    keys: tuple[str, ...]
    sparse: tuple[str, ...] = ()

    @property
    def sparse_index(self) -> list[int]:
        """The columns of the sparse series among ``series``."""
        return [self.series.index(s) for s in self.sparse]


HISTORY = SeriesTable(History.__table__, history_rollup, HISTORY_SERIES, (), SPARSE_SERIES)
PARAM_STATS = SeriesTable(ParamStat.__table__, param_stats_rollup, STAT_SERIES, ("param",))


LEVELS = range(ROLLUP_FIRST_LEVEL, ROLLUP_LEVELS + 1)  # the stored levels


def block_size(level: int) -> int:
    return ROLLUP_BASE**level


def level_below(level: int) -> int:
    """The next finer level that exists: a stored level, or 0 (the raw rows)."""
    return level - 1 if level > ROLLUP_FIRST_LEVEL else 0


def level_above(level: int) -> int:
    """The next coarser stored level (beyond ROLLUP_LEVELS when there is none)."""
    return max(level + 1, ROLLUP_FIRST_LEVEL)


def recorded(raw, st: SeriesTable, series: str):
    """SQL: the raw row recorded ``series``, as a value or as a NaN (NULL with its nan_mask bit)."""
    bit = 1 << st.series.index(series)
    return raw.c[series].is_not(None) | (raw.c.nan_mask.op("&")(bit) != 0)


def source(st: SeriesTable, level: int, lo: str = "lo", hi: str = "hi"):
    """Rows of ``level`` whose step (level 0) or block start is in [:lo, :hi], in the common shape:
    keys, s0, s1, n, per series min, max, sum (NULL only when NaN) and cnt, then per sparse series
    its last recorded step (NULL: none). Other parameters:
    job_id, and for each key column a list ``<key>s`` (an IN list lets SQLite seek each key's range
    instead of scanning the whole job)."""
    if level == 0:
        t = st.raw
        cols = [t.c[k] for k in st.keys] + [t.c.step.label("s0"), t.c.step.label("s1"), literal(1).label("n")]
        for s in st.series:
            x = t.c[s]
            cols += [
                x.label(f"{s}_min"),
                x.label(f"{s}_max"),
                func.coalesce(x, 0.0).label(f"{s}_sum"),
                case((x.is_(None), 0), else_=1).label(f"{s}_cnt"),
            ]
        cols += [case((recorded(t, st, s), t.c.step), else_=None).label(f"{s}_last_step") for s in st.sparse]
        where = [t.c.step.between(bindparam(lo), bindparam(hi))]
    else:
        t = st.rollup
        cols = [t.c[k] for k in st.keys] + [t.c.step_first.label("s0"), t.c.step_last.label("s1"), t.c.n]
        for s in st.series:
            cols += [t.c[f"{s}_{a}"] for a in ("min", "max", "sum", "cnt")]
        cols += [t.c[f"{s}_last_step"] for s in st.sparse]
        where = [t.c.level == level, t.c.block.between(bindparam(lo), bindparam(hi))]
    where += [t.c.job_id == bindparam("job_id")]
    where += [t.c[k].in_(bindparam(f"{k}s", expanding=True)) for k in st.keys]
    return select(*cols).where(and_(*where))


def aggregates(st: SeriesTable, src) -> list:
    c = src.c
    cols = [func.min(c.s0).label("s0"), func.max(c.s1).label("s1"), func.sum(c.n).label("n")]
    for s in st.series:
        total = c[f"{s}_sum"]
        cols += [
            func.min(c[f"{s}_min"]).label(f"{s}_min"),
            func.max(c[f"{s}_max"]).label(f"{s}_max"),
            # SUM skips NULLs, but a NULL block sum is a NaN that must poison the total.
            case((func.count(total) == func.count(), func.sum(total)), else_=None).label(f"{s}_sum"),
            func.sum(c[f"{s}_cnt"]).label(f"{s}_cnt"),
        ]
    return cols + [func.max(c[f"{s}_last_step"]).label(f"{s}_last_step") for s in st.sparse]


@functools.cache
def rebuild_statements(st: SeriesTable, level: int):
    """DELETE and INSERT ... SELECT recomputing ``level``'s blocks in [:lo, :hi] from the level below
    (:func:`level_below`).
    Built once: SQLAlchemy then reuses the compiled SQL on every flush."""
    r = st.rollup
    size = block_size(level)
    keys = [r.c[k].in_(bindparam(f"{k}s", expanding=True)) for k in st.keys]
    remove = delete(r).where(
        r.c.job_id == bindparam("job_id"),
        *keys,
        r.c.level == level,
        r.c.block.between(bindparam("lo"), bindparam("hi")),
    )
    src = source(st, level_below(level)).subquery()
    # Inline integers, so PostgreSQL sees the selected block expression built on the grouped one.
    size_sql = literal_column(str(size), Integer)
    block = (src.c.s0 // size_sql) * size_sql
    agg = select(
        bindparam("job_id", type_=Integer),
        *[src.c[k] for k in st.keys],
        literal(level, SmallInteger),
        block,
        *aggregates(st, src),
    ).group_by(*[src.c[k] for k in st.keys], block)
    names = ["job_id", *st.keys, "level", "block", "step_first", "step_last", "n"]
    for s in st.series:
        names += [f"{s}_{a}" for a in ("min", "max", "sum", "cnt")]
    names += [f"{s}_last_step" for s in st.sparse]
    return remove, r.insert().from_select(names, agg)


def truncate(conn: Connection, st: SeriesTable, job_id: int, key_in: dict, from_step: int):
    """After the raw rows at steps >= ``from_step`` were deleted: drop the rollup blocks over them
    and recompute the ones partly kept, from the raw rows since the coarsest such block began,
    with :func:`append` (so their sums are the same as a run that never went past ``from_step``
    would have; SQL's SUM order is not ours). ``key_in``: every key value, as in append."""
    keys = {f"{k}s": list(v) for k, v in key_in.items()}
    for level in LEVELS:
        size = block_size(level)
        remove, _ = rebuild_statements(st, level)
        conn.execute(remove, {"job_id": job_id, "lo": from_step // size * size, "hi": MAX_STEP, **keys})
    start = from_step // block_size(LEVELS[-1]) * block_size(LEVELS[-1])
    raw = st.raw
    key_cols = [raw.c[k] for k in st.keys]
    flags = [case((recorded(raw, st, s), 1), else_=0) for s in st.sparse]
    query = (select(*key_cols, raw.c.step, *[raw.c[s] for s in st.series], *flags)
             .where(raw.c.job_id == job_id, raw.c.step >= start, raw.c.step < from_step,
                    *[raw.c[k].in_(list(v)) for k, v in key_in.items()])
             .order_by(*key_cols, raw.c.step))
    rows = conn.execute(query).all()
    if not rows:
        return
    table = np.array([[math.nan if v is None else v for v in row] for row in rows], dtype=np.float64)
    n_keys = len(st.keys)
    key_col = table[:, 0].astype(np.int64) if n_keys else None
    values_end = n_keys + 1 + len(st.series)
    append(conn, st, job_id, key_in, key_col, table[:, n_keys].astype(np.int64),
           table[:, n_keys + 1:values_end], table[:, values_end:] == 1)


def rebuild(conn: Connection, st: SeriesTable, job_id: int, key_in: dict, lo: int, hi: int = MAX_STEP):
    """Recompute every rollup block that overlaps steps [lo, hi] from the level below, in SQL: an
    independent check of :func:`append` (sums agree up to rounding, in SQL's order).
    """
    keys = {f"{k}s": list(v) for k, v in key_in.items()}
    for level in LEVELS:
        size = block_size(level)
        params = {"job_id": job_id, "lo": lo // size * size, "hi": hi, **keys}
        remove, add = rebuild_statements(st, level)
        conn.execute(remove, params)
        conn.execute(add, params)


def append(conn: Connection, st: SeriesTable, job_id: int, key_in: dict, keys, steps, values,
           recorded=None, tail: dict | None = None) -> dict:
    """Update the rollups after a batch's raw rows were inserted (the fast path of :func:`rebuild`).

    ``steps`` (int array) and ``values`` (float array, a column per series, NaN where not recorded
    or NaN) are the batch's rows ordered by (key, step); ``keys`` is the key column, or None;
    ``recorded`` (bool array, a column per sparse series; None when there are none) whether each
    row recorded it.
    The first stored level's blocks are aggregated from the batch with NumPy, the coarser levels'
    from those (as the SQL rebuild does), except sums: every level's is summed from the raw values
    in step order (:func:`_sequential_sums`). A block that starts before the batch already has a
    stored row aggregating exactly the earlier rows in it; it is read, merged (min of mins, the
    stored sum continued, ...) and replaced. All levels then go in with one executemany that
    replaces rows with the same key.

    Returns the last block of every (key, level) as now stored. A writer that passes that back as
    ``tail`` with its next batch saves reading the blocks the two batches share; it must be what
    is stored (nobody else wrote or truncated this job's series since).
    """
    lo = int(steps.min())
    key = keys if keys is not None else np.zeros(len(steps), dtype=np.int64)
    # The first stored level from the raw rows ...
    size = block_size(LEVELS[0])
    block = steps // size * size
    starts = _runs(key, block)
    ends = np.append(starts[1:], len(steps)) - 1
    valid = ~np.isnan(values)
    if recorded is None:
        recorded = np.ones((len(steps), len(st.sparse)), dtype=bool)
    recorded_at = np.where(recorded, steps[:, None].astype(np.float64), math.nan)  # NaN: none
    with np.errstate(invalid="ignore"):  # an all-NaN block gives NaN, stored as NULL
        first_level = {
            "key": key[starts],
            "level": np.full(len(starts), LEVELS[0]),
            "block": block[starts],
            "first": steps[starts],
            "last": steps[ends],
            "n": ends - starts + 1,
            "min": np.fmin.reduceat(values, starts, axis=0),
            "max": np.fmax.reduceat(values, starts, axis=0),
            "sum": np.zeros((len(starts), values.shape[1])),  # seeds; see _sequential_sums
            "cnt": np.add.reduceat(valid, starts, axis=0, dtype=np.int64),
            "last_step": np.fmax.reduceat(recorded_at, starts, axis=0),
        }
        # ... and every coarser level from those blocks, all at once: the blocks repeated once per
        # level, each copy grouped into that level's blocks, as the SQL rebuild groups level L - 1.
        coarser = np.repeat(np.asarray(LEVELS[1:], dtype=np.int64), len(starts))
        copies = len(LEVELS) - 1
        rep = {name: np.tile(a, (copies,) + (1,) * (a.ndim - 1)) for name, a in first_level.items()}
        sizes = ROLLUP_BASE**coarser
        block = rep["block"] // sizes * sizes
        starts = _runs(rep["key"] * (ROLLUP_LEVELS + 1) + coarser, block)
        ends = np.append(starts[1:], len(block)) - 1
        upper = {
            "key": rep["key"][starts],
            "level": coarser[starts],
            "block": block[starts],
            "first": rep["first"][starts],
            "last": rep["last"][ends],
            "n": np.add.reduceat(rep["n"], starts),
            "min": np.fmin.reduceat(rep["min"], starts, axis=0),
            "max": np.fmax.reduceat(rep["max"], starts, axis=0),
            "sum": np.zeros((len(starts), values.shape[1])),
            "cnt": np.add.reduceat(rep["cnt"], starts, axis=0),
            "last_step": np.fmax.reduceat(rep["last_step"], starts, axis=0),
        }
    new = {name: np.concatenate([first_level[name], upper[name]]) for name in first_level}
    _merge_earlier_rows(conn, st, job_id, key_in, new, lo, tail or {})  # earlier sums become seeds
    addends = np.where(valid, values, 0.0)
    for level in LEVELS:
        size = block_size(level)
        rows = np.flatnonzero(new["level"] == level)  # in the order of the runs below
        new["sum"][rows] = _sequential_sums(addends, _runs(key, steps // size * size), new["sum"][rows])
    columns = [job_id] + ([new["key"]] if keys is not None else [])
    columns += [new["level"], new["block"], new["first"], new["last"], new["n"]]
    for i in range(len(st.series)):
        columns += [new["min"][:, i], new["max"][:, i], new["sum"][:, i], new["cnt"][:, i]]
    columns += [_steps_or_null(new["last_step"][:, j]) for j in range(len(st.sparse))]
    executemany(conn, st.rollup, _rows(*columns), replace=True)  # merged blocks replace their rows
    return _last_blocks(new)


def _sequential_sums(addends: np.ndarray, starts: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Per run of rows (a run starts at each of ``starts``), ``seed + a0 + a1 + ...`` added strictly
    from left to right. A block's sum is thereby the sequential sum of its raw values in step order,
    and a sum continued from a stored partial one is the same as one made at once: blocks come out
    bit for bit the same however the rows were split into batches (NumPy's reductions sum
    pairwise, and adding partial sums would depend on where the flushes fell). A NaN (inf - inf)
    stays NaN."""
    lengths = np.diff(np.append(starts, len(addends)))
    padded = np.zeros((len(starts), int(lengths.max()) + 1, addends.shape[1]))
    padded[:, 0] = seeds
    run = np.repeat(np.arange(len(starts)), lengths)
    padded[run, np.arange(len(addends)) - np.repeat(starts, lengths) + 1] = addends
    with np.errstate(invalid="ignore"):
        return np.cumsum(padded, axis=1)[np.arange(len(starts)), lengths]  # accumulate is sequential


def _steps_or_null(steps: np.ndarray) -> np.ndarray:
    """Float steps (NaN: none) as Python ints and None, the way the drivers bind an INTEGER column."""
    out = np.full(len(steps), None, dtype=object)
    present = ~np.isnan(steps)
    out[present] = steps[present].astype(np.int64).tolist()
    return out


def _runs(group: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Where each run of equal (group, block) starts, in rows ordered by (group, step)."""
    change = np.empty(len(block), dtype=bool)
    change[0] = True
    np.not_equal(block[1:], block[:-1], out=change[1:])
    change[1:] |= group[1:] != group[:-1]
    return np.flatnonzero(change)


def _last_blocks(new: dict) -> dict:
    """{(key, level): the row of its last block}, rows laid out as _merge_earlier_rows reads them."""
    group = new["key"] * (ROLLUP_LEVELS + 1) + new["level"]
    last = np.flatnonzero(np.append(group[1:] != group[:-1], True))  # rows are grouped by (level, key)
    series = np.stack([new["min"], new["max"], new["sum"], new["cnt"]], axis=-1)[last]
    cols = [new[name][last][:, None] for name in ("key", "level", "block", "first", "n")]
    rows = np.hstack([*cols, series.reshape(len(last), -1), new["last_step"][last]]).astype(np.float64)
    return {(int(row[0]), int(row[1])): row for row in rows}


def _merge_earlier_rows(conn, st: SeriesTable, job_id: int, key_in: dict, new: dict, lo: int,
                        tail: dict) -> None:
    """Fold stored rows of blocks that started before the batch into ``new`` (whose rows then
    replace them). Rows found in ``tail`` (see :func:`append`) are not read again."""
    straddling = np.flatnonzero(new["block"] < lo)
    if not len(straddling):
        return
    at, old, wanted = [], [], {}
    for i in straddling:
        key, level, block = int(new["key"][i]), int(new["level"][i]), int(new["block"][i])
        known = tail.get((key, level))
        if known is not None and known[2] == block:
            at.append(i)
            old.append(known)
        else:
            wanted[key, level, block] = i
    if wanted:
        r = st.rollup
        levels = sorted({level for _, level, _ in wanted})
        blocks = sorted({block for _, _, block in wanted})
        # IN lists on each primary-key column let SQLite seek; a row-value IN would scan the job.
        where = [
            r.c.job_id == job_id,
            *[r.c[k].in_(list(v)) for k, v in key_in.items()],
            r.c.level.in_(levels),
            r.c.block.in_(blocks),
        ]
        key = r.c[st.keys[0]] if st.keys else literal(0)
        values = [r.c[f"{s}_{a}"] for s in st.series for a in ("min", "max", "sum", "cnt")]
        values += [r.c[f"{s}_last_step"] for s in st.sparse]
        query = select(key, r.c.level, r.c.block, r.c.step_first, r.c.n, *values).where(*where)
        for row in conn.execute(query):
            i = wanted.get((row[0], row[1], row[2]))
            if i is not None:  # not a (level, block) pair of the cross product that does not straddle
                at.append(i)
                old.append([math.nan if v is None else v for v in row])
    if not at:
        return
    at, old = np.array(at), np.array(old, dtype=np.float64)
    new["first"][at] = old[:, 3]
    new["n"][at] += old[:, 4].astype(np.int64)
    series_end = 5 + 4 * len(st.series)
    series = old[:, 5:series_end].reshape(len(at), len(st.series), 4)
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN, as in SQL
        new["min"][at] = np.fmin(new["min"][at], series[..., 0])
        new["max"][at] = np.fmax(new["max"][at], series[..., 1])
        new["sum"][at] = series[..., 2]  # the seed its sum continues from (NULL: NaN, which stays NaN)
    new["cnt"][at] += series[..., 3].astype(np.int64)
    new["last_step"][at] = np.fmax(new["last_step"][at], old[:, series_end:])
