"""Downsampled reads: a step range as at most ``max_points`` buckets, computed in SQL over the
rollup pyramid (service/store/rollup.py) and the raw rows.

A downsampled query picks the coarsest level that still has at least ``max_points`` blocks in the
range, so it scans fewer than ``4 * max_points`` block rows however long the range is (fewer than
``16 * max_points`` raw rows when no stored level has that many blocks). Buckets are
aligned to multiples of their width ``w`` (a multiple of that level's block size), which keeps
buckets stable while a live job grows; the range's ragged edges are covered by finer levels down
to raw rows. Bucket min/max/mean are therefore exact, and each bucket's ``last`` values are read
from the raw row at its last step, or for a series recorded at some steps only (validation), at
the last step in the bucket that recorded it (null when none did).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from sqlalchemy import Float, Integer, and_, bindparam, case, cast, select, true, union_all
from sqlalchemy.engine import Connection

from service.store import rollup as rollup
from service.store.rollup import LEVELS, SeriesTable, block_size, level_above, level_below


@dataclass(frozen=True)
class Plan:
    """How a range is downsampled: rollup ``level``, bucket ``width`` and the scanned segments."""

    level: int
    width: int
    segments: tuple[tuple[int, int, int], ...]  # (level, lo, hi): blocks/steps starting in [lo, hi]


def _bucket_count(start: int, end: int, width: int) -> int:
    return end // width - start // width + 1


def plan(start: int, end: int, max_points: int) -> Plan:
    """Choose the level and bucket width for [start, end] (more than ``max_points`` steps).

    ``L`` is the coarsest stored level with at least ``max_points`` blocks in the range, or 0 (raw
    rows) when there is none. The width is the smallest multiple ``k * 4**L`` that gives at most
    ``max_points`` buckets (k is 1 to 4, so buckets stay close to ``max_points``; 1 to 16 over raw
    rows, below the first stored level). The scan then reads the coarsest level whose blocks tile the
    width (k = 4 is one block of level L + 1), at most ``k`` rows per bucket.
    """
    level = 0
    for candidate in reversed(LEVELS):
        if _bucket_count(start, end, block_size(candidate)) >= max_points:
            level = candidate
            break
    size = block_size(level)
    k = -(-_bucket_count(start, end, size) // max_points)
    while _bucket_count(start, end, k * size) > max_points:
        k += 1
    width = k * size
    while level_above(level) in LEVELS and width % block_size(level_above(level)) == 0:
        level = level_above(level)
    return Plan(level, width, tuple(_segments(start, end, level)))


def _segments(start: int, end: int, level: int):
    """Cover [start, end] with whole aligned blocks of ``level``, and its edges with finer levels."""
    if start > end:
        return
    if level == 0:
        yield (0, start, end)
        return
    size = block_size(level)
    first = -(-start // size) * size  # first block starting at or after start
    stop = (end + 1) // size * size  # one past the last whole block
    finer = level_below(level)
    if first >= stop:
        yield from _segments(start, end, finer)
        return
    yield from _segments(start, first - 1, finer)
    yield (level, first, stop - size)
    yield from _segments(stop, end, finer)


def _nan_bits(flags) -> object:
    """An integer whose bit i is set when ``flags[i]`` (a SQL condition) holds."""
    return functools.reduce(operator.add, [case((flag, 1 << i), else_=0) for i, flag in enumerate(flags)])


def raw_columns(st: SeriesTable) -> list:
    """step, the series, and a NaN bit mask (bit i: series i is NaN; a NULL without the bit is a
    value that was not recorded): what a raw point is decoded from."""
    t = st.raw
    if "nan_mask" in t.c:
        nan = t.c.nan_mask
    else:  # every statistic is always recorded: NULL is a stored NaN
        nan = _nan_bits([t.c[s].is_(None) for s in st.series])
    return [t.c.step, *[t.c[s] for s in st.series], nan.label("nan")]


@functools.cache
def raw_statement(st: SeriesTable):
    """Raw rows (:func:`raw_columns`) in steps [:lo, :hi], ordered by step."""
    t = st.raw
    where = [t.c.job_id == bindparam("job_id"), t.c.step.between(bindparam("lo"), bindparam("hi"))]
    where += [t.c[k].in_(bindparam(f"{k}s", expanding=True)) for k in st.keys]
    return select(*raw_columns(st)).where(*where).order_by(t.c.step)


def _bucket_columns(st: SeriesTable, b, last_rows: dict) -> list:
    """A bucket row as the API writes it: s0, s1, n, per series min, max, mean, last (from its raw
    row in ``last_rows``), then a NaN bit mask (bit i: series i's mean is NaN, bit n + i: its last
    value is NaN)."""
    cols = [b.c.s0, b.c.s1, b.c.n]
    mean_nan, last_nan = [], []
    for i, s in enumerate(st.series):
        raw = last_rows[s]
        lo, hi, total, count = (b.c[f"{s}_{a}"] for a in ("min", "max", "sum", "cnt"))
        if s == "nonfinite":  # a count: aggregated as REAL in the pyramid, read back as an integer
            lo, hi = cast(lo, Integer), cast(hi, Integer)
        # IEEE division of the sum by the count, as Python's total / count (a plain "/": SQLAlchemy's
        # true division would add 0.0); a NULL sum is NaN.
        mean = case((count > 0, total.op("/")(cast(count, Float))), else_=None)
        cols += [lo, hi, mean, raw.c[s]]
        mean_nan.append(and_(count > 0, total.is_(None)))
        recorded_nan = raw.c.nan_mask.op("&")(1 << i) != 0 if "nan_mask" in raw.c else true()
        last_nan.append(and_(raw.c[s].is_(None), recorded_nan))
    return cols + [_nan_bits(mean_nan + last_nan).label("nan")]


@functools.cache
def bucket_statement(st: SeriesTable, levels: tuple[int, ...], whole: int | None = None):
    """The bucket query over segments of these levels (bounds lo_i/hi_i, bucket width :width),
    joined to the raw row at each bucket's last step for its ``last`` values (for a sparse series,
    the row at the bucket's last step that recorded it); rows laid out as :func:`_bucket_columns`.
    Built once per shape so that SQLAlchemy reuses the compiled SQL.

    ``whole``: the index of a segment whose blocks are each one whole bucket. Its rows are then
    buckets as they are, and only the segments before and after it (the range's ragged edges, a
    bucket each) are aggregated: no GROUP BY over the bulk of the rows.
    """
    parts = [rollup.source(st, level, f"lo_{i}", f"hi_{i}") for i, level in enumerate(levels)]

    def grouped(segments):
        src = (segments[0] if len(segments) == 1 else union_all(*segments)).subquery()
        return select(*rollup.aggregates(st, src)).group_by(src.c.s0 // bindparam("width"))

    if whole is None:
        buckets = grouped(parts).subquery("b")
    else:
        blocks = parts[whole].subquery()
        as_buckets = select(*[c for c in blocks.c if c.name not in st.keys])
        edges = [grouped(p) for p in (parts[:whole], parts[whole + 1 :]) if p]
        buckets = union_all(as_buckets, *edges).subquery("b")
    # LEFT JOINs make SQLite loop over the few buckets and look each last row up by primary key.
    joined = buckets
    last_rows = {}
    for at, series in [("s1", [s for s in st.series if s not in st.sparse])] + [
            (f"{s}_last_step", [s]) for s in st.sparse]:
        raw = st.raw.alias(f"at_{at}")
        on = [raw.c.job_id == bindparam("job_id"), raw.c.step == buckets.c[at]]
        on += [raw.c[k].in_(bindparam(f"{k}s", expanding=True)) for k in st.keys]
        joined = joined.outerjoin(raw, and_(*on))
        last_rows.update(dict.fromkeys(series, raw))
    return select(*_bucket_columns(st, buckets, last_rows)).select_from(joined).order_by(buckets.c.s0)


def bucket_rows(conn: Connection, st: SeriesTable, job_id: int, key_in: dict, p: Plan) -> list:
    """One row per non-empty bucket, ordered by step, laid out as :func:`_bucket_columns`."""
    params = {"job_id": job_id, "width": p.width, **{f"{k}s": list(v) for k, v in key_in.items()}}
    for i, (_level, lo, hi) in enumerate(p.segments):
        params[f"lo_{i}"], params[f"hi_{i}"] = lo, hi
    levels = tuple(level for level, _, _ in p.segments)
    whole = None
    if p.level and p.width == block_size(p.level) and p.level in levels:
        whole = levels.index(p.level)
    return conn.execute(bucket_statement(st, levels, whole), params).all()
