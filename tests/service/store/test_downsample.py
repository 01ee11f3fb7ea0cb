"""Downsampled history against an independent NumPy computation of the same buckets.

The store chooses bucket boundaries (aligned to its rollup blocks); these tests take the
boundaries it returns and recompute every bucket's min/max/mean/last from the raw values with
NumPy, and check that the buckets tile the requested range exactly.
"""

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from service.api.encode import finite
from service.api.routes.history import points_json
from service.store import Store
from service.store import buckets as buckets
from service.store import rollup as rollup

PARAMS = ["w1", "b1"]
HISTORY = ("loss", "lr", "grad_norm", "val_loss", "val_accuracy")
STATS = ("norm", "mean", "std", "min", "max", "nonfinite")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store("sqlite:///" + str(tmp_path_factory.mktemp("ds") / "ds.db"))
    yield s
    s.close()


def _values(rng, n, special_rate):
    """Random values with NaN, +inf and -inf sprinkled in at ``special_rate``."""
    v = rng.standard_normal(n) * 10
    special = rng.random(n) < special_rate
    v[special] = rng.choice([np.nan, np.inf, -np.inf], size=special.sum())
    return v


def _write_job(store, steps, batches, rng, special_rate):
    job = store.create_job("ds", {"kind": "test"})
    w = store.writer(job, PARAMS)
    n = len(steps)
    raw = {s: _values(rng, n, special_rate) for s in ("loss", "lr", "grad_norm")}
    raw["val_loss"] = np.where(rng.random(n) < 0.3, np.nan, _values(rng, n, special_rate))
    raw["val_accuracy"] = rng.random(n)
    present = rng.random(n) < 0.7  # validation recorded at some steps only
    stats = np.stack([_values(rng, n * len(PARAMS), special_rate) for _ in STATS], axis=-1)
    stats = stats.reshape(n, len(PARAMS), len(STATS))
    stats[..., -1] = rng.integers(0, 5, size=(n, len(PARAMS)))
    cuts = set(np.cumsum(batches).tolist())
    for i, step in enumerate(steps):
        w.add_step(
            int(step),
            raw["loss"][i],
            raw["lr"][i],
            raw["grad_norm"][i],
            stats[i],
            val_loss=raw["val_loss"][i] if present[i] else None,
            val_accuracy=raw["val_accuracy"][i] if present[i] else None,
        )
        if i + 1 in cuts:
            w.flush()
    w.flush()
    raw["val_loss"] = np.where(present, raw["val_loss"], np.nan)
    raw["val_accuracy"] = np.where(present, raw["val_accuracy"], np.nan)
    raw["present"] = present
    return job, raw, stats


def _expected_agg(values: np.ndarray):
    finite_or_inf = values[~np.isnan(values)]
    if finite_or_inf.size == 0:
        return None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf inside the mean
        return finite_or_inf.min(), finite_or_inf.max(), finite_or_inf.mean()


def _same(got, want):
    if want is None:
        return got is None
    if got is None:
        return False
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want):
        return got == want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def _last_recorded(raw: dict, present: np.ndarray):
    """``last_value(name, rows)``: a series' value at the last of ``rows`` (indices, ascending) that
    recorded it: validation metrics only where ``present``, None when no row did."""
    def last_value(name, rows):
        if name.startswith("val_"):
            rows = [i for i in rows if present[i]]
        return raw[name][rows[-1]] if len(rows) else None

    return last_value


def _at_last_row(series: dict):
    """``last_value`` of series recorded at every step."""
    return lambda name, rows: series[name][rows[-1]]


def _check_buckets(points, steps, series: dict, start, end, max_points, last_value):
    """``points`` tile the recorded steps in [start, end]; each aggregate matches NumPy (``last``:
    ``last_value(name, rows)`` of the bucket's rows)."""
    in_range = steps[(steps >= start) & (steps <= end)]
    n_steps = end - start + 1
    if n_steps <= max_points:
        assert [p["step"] for p in points] == in_range.tolist()
        assert all("step_end" not in p for p in points)
        return
    assert 0 < len(points) <= max_points
    assert len(points) >= min(len(in_range), max_points // 8)
    covered = []
    for p in points:
        assert p["step"] <= p["step_end"]
        mask = (steps >= p["step"]) & (steps <= p["step_end"])
        rows = np.flatnonzero(mask)
        covered += steps[rows].tolist()
        assert p["count"] == len(rows)
        assert steps[rows[0]] == p["step"] and steps[rows[-1]] == p["step_end"]
        for name, values in series.items():
            lo, hi, mean = _expected_agg(values[rows])
            agg = p[name]
            assert _same(agg["min"], lo), (name, p["step"], agg, lo)
            assert _same(agg["max"], hi), (name, p["step"], agg, hi)
            assert _same(agg["mean"], mean), (name, p["step"], agg, mean)
            assert _same(agg["last"], last_value(name, rows)), (name, p["step"], agg)
    assert covered == in_range.tolist()  # contiguous, in order, nothing missing or repeated
    spans = [p["step_end"] - p["step"] + 1 for p in points[1:-1]]
    if len(steps) == steps[-1] - steps[0] + 1 and spans:  # contiguous history: equal interior widths
        assert len(set(spans)) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    n=st.integers(1, 3000),
    gappy=st.booleans(),
    special_rate=st.sampled_from([0.0, 0.02, 0.3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_buckets_match_numpy(store, data, n, gappy, special_rate, seed):
    rng = np.random.default_rng(seed)
    first = data.draw(st.integers(0, 5000), label="first step")
    gaps = rng.integers(1, 4, size=n) if gappy else np.ones(n, dtype=np.int64)
    steps = first + np.concatenate([[0], np.cumsum(gaps[1:])]).astype(np.int64)
    batches = data.draw(st.lists(st.integers(1, 700), min_size=1, max_size=10), label="batches")
    job, raw, stats = _write_job(store, steps, batches, rng, special_rate)

    start = data.draw(st.one_of(st.none(), st.integers(0, int(steps[-1]) + 10)), label="start")
    end = data.draw(st.one_of(st.none(), st.integers(start or 0, int(steps[-1]) + 10)), label="end")
    max_points = data.draw(st.sampled_from([1, 2, 3, 10, 57, 1000]), label="max_points")
    lo = int(steps[0]) if start is None else max(start, int(steps[0]))
    hi = int(steps[-1]) if end is None else min(end, int(steps[-1]))

    points = store.history(job, start, end, max_points)
    if lo > hi:
        assert points == []
        return

    last_value = _last_recorded(raw, raw.pop("present"))
    _check_buckets(points, steps, raw, lo, hi, max_points, last_value)
    if hi - lo + 1 <= max_points:
        for p in points:  # validation metrics not recorded at a step read back as None
            i = int(np.flatnonzero(steps == p["step"])[0])
            for name in HISTORY:
                assert _same(p[name], last_value(name, [i])), (name, p)

    param = data.draw(st.sampled_from(PARAMS), label="param")
    k = PARAMS.index(param)
    series = {s: stats[:, k, j] for j, s in enumerate(STATS)}
    grads = store.gradients(job, param, start, end, max_points)
    _check_buckets(grads, steps, series, lo, hi, max_points, _at_last_row(series))
    for p in grads:
        if "step_end" in p:
            assert isinstance(p["nonfinite"]["last"], int) and isinstance(p["nonfinite"]["max"], int)
        else:
            assert isinstance(p["nonfinite"], int)

    # The REST answer is written from the same rows without building dicts: it must say the same,
    # with every non-finite value as null.
    for rows in (
        store.history_points(job, start, end, max_points),
        store.gradients_points(job, param, start, end, max_points),
    ):
        assert json.loads(points_json(rows)) == finite(rows.dicts())


def test_buckets_of_one_block_each_match_numpy(store):
    """Widths of exactly one block (4**L) read the blocks as buckets and aggregate only the edges."""
    rng = np.random.default_rng(7)
    steps = np.arange(3, 9000, dtype=np.int64)
    job, raw, stats = _write_job(store, steps, [2500, 4000, 5000], rng, 0.02)
    last_value = _last_recorded(raw, raw.pop("present"))
    series = {s: stats[:, 1, j] for j, s in enumerate(STATS)}
    cases = [(5, 8000, 520), (0, 8995, 10), (17, 4113, 20), (5, 8000, 126), (40, 9100, 3)]
    for start, end, max_points in cases:
        plan = buckets.plan(max(start, 3), min(end, 8999), max_points)
        assert plan.width == rollup.block_size(plan.level)  # the one-block-per-bucket path
        points = store.history(job, start, end, max_points)
        _check_buckets(points, steps, raw, start, end, max_points, last_value)
        grads = store.gradients(job, "b1", start, end, max_points)
        _check_buckets(grads, steps, series, start, end, max_points, _at_last_row(series))


def _rollup_rows(store, job):
    out = {}
    with store.engine.connect() as conn:
        for table in (rollup.history_rollup, rollup.param_stats_rollup):
            rows = conn.execute(select(table).where(table.c.job_id == job)).mappings().all()
            key = [c for c in ("param", "level", "block") if c in table.c]
            out[table.name] = sorted((dict(r) for r in rows), key=lambda r: [r[c] for c in key])
    return out


def _rows_equal(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert len(a[name]) == len(b[name]), name
        for x, y in zip(a[name], b[name], strict=True):
            for column in x:
                vx, vy = x[column], y[column]
                if isinstance(vx, float) and isinstance(vy, float):
                    assert _same(vx, vy), (name, column, x, y)
                else:
                    assert vx == vy, (name, column, x, y)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 2500),
    batches=st.lists(st.integers(1, 400), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_incremental_rollups_equal_a_full_sql_rebuild(store, n, batches, seed):
    """The writer's NumPy-merged blocks equal the pure-SQL recomputation from raw rows."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 3, size=n)).astype(np.int64)
    job, _, _ = _write_job(store, steps, batches, rng, 0.05)
    incremental = _rollup_rows(store, job)
    with store.engine.begin() as conn:
        rollup.rebuild(conn, rollup.HISTORY, job, {}, 0)
        rollup.rebuild(conn, rollup.PARAM_STATS, job, {"param": [0, 1]}, 0)
    _rows_equal(incremental, _rollup_rows(store, job))


def test_plan_covers_the_range_with_aligned_segments():
    for start, end, m in [(0, 999_999, 1000), (5, 123_456, 1000), (3, 70, 2), (0, 10**7, 10)]:
        plan = buckets.plan(start, end, m)
        assert plan.width % rollup.block_size(plan.level) == 0
        assert end // plan.width - start // plan.width + 1 <= m
        covered = []
        for level, lo, hi in plan.segments:
            size = rollup.block_size(level)
            assert level == 0 or (lo % size == 0 and hi % size == 0)
            covered.append((lo, hi + size - 1 if level else hi))
        covered.sort()
        assert covered[0][0] == start and covered[-1][1] == end
        assert all(a[1] + 1 == b[0] for a, b in zip(covered, covered[1:], strict=False))
    # the headline case reads one block row per bucket (level 5 = 1024 steps), not a million steps
    plan = buckets.plan(0, 999_999, 1000)
    assert (plan.level, plan.width) == (5, 1024)


@pytest.mark.parametrize("span", [1_001, 2_345, 9_999, 123_457, 999_999, 3_000_001])
@pytest.mark.parametrize("max_points", [10, 1000])
def test_plan_reads_at_most_three_block_rows_per_bucket(span, max_points):
    """The scan reads the coarsest level that tiles the bucket width: k * 4**L with k <= 3 rows a
    bucket (k = 4 is one block of level L + 1), plus the ragged edges from finer levels; below the
    first stored level it reads at most 15 raw rows a bucket."""
    for start in (0, 7, 1_000_003):
        end = start + span - 1
        plan = buckets.plan(start, end, max_points)
        assert plan.level == 0 or plan.level in rollup.LEVELS
        per_bucket = plan.width // rollup.block_size(plan.level)
        assert per_bucket in ((1, 2, 3) if plan.level else range(1, 16))
        coarser = rollup.level_above(plan.level)
        assert coarser not in rollup.LEVELS or plan.width % rollup.block_size(coarser)
        count = end // plan.width - start // plan.width + 1
        assert max_points / 4 < count <= max_points


def test_rollups_stay_exact_when_the_history_is_truncated_between_two_flushes(store):
    """The writer keeps the last rollup blocks it stored, to merge the next batch without reading
    them back; a truncation from outside meanwhile must make it read them back instead."""
    rng = np.random.default_rng(7)
    job = store.create_job("ds", {"kind": "test"})
    w = store.writer(job, PARAMS)
    for steps in (range(0, 100), range(100, 130)):
        for s in steps:
            w.add_step(s, rng.standard_normal(), 0.1, 1.0, np.abs(rng.standard_normal((2, 6))).round())
        w.flush()
        if steps.start == 0:
            store.truncate_history(job, 50)  # drops steps 50..99 and the blocks over them
    incremental = _rollup_rows(store, job)
    with store.engine.begin() as conn:
        rollup.rebuild(conn, rollup.HISTORY, job, {}, 0)
        rollup.rebuild(conn, rollup.PARAM_STATS, job, {"param": [0, 1]}, 0)
    _rows_equal(incremental, _rollup_rows(store, job))


def _exact_rollups(store, job):
    """The job's rollup rows without job_id, floats by their bits (NaN equal to NaN)."""
    def exact(v):
        return ("float", np.float64(v).tobytes()) if isinstance(v, float) else v

    return {name: [{k: exact(v) for k, v in row.items() if k != "job_id"} for row in rows]
            for name, rows in _rollup_rows(store, job).items()}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 2500),
    batches=st.lists(st.integers(1, 400), min_size=1, max_size=8),
    other=st.lists(st.integers(1, 400), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_rollups_are_bit_identical_however_the_rows_were_batched(store, n, batches, other, seed):
    """Sums too: each block's is the sequential sum of its raw values in step order, whichever
    flushes the rows came in (a flush's timing differs between two runs of one spec)."""
    steps = np.cumsum(np.random.default_rng(seed).integers(1, 3, size=n)).astype(np.int64)
    a, _, _ = _write_job(store, steps, batches, np.random.default_rng(seed), 0.05)
    b, _, _ = _write_job(store, steps, other, np.random.default_rng(seed), 0.05)
    assert _exact_rollups(store, a) == _exact_rollups(store, b)


@pytest.mark.parametrize("cut", [1, 1234, 2048, 2999])
def test_a_truncated_history_written_again_has_the_rollups_of_one_never_truncated(store, cut):
    """As a resume does: truncate at the checkpoint, write the same steps again."""
    steps = np.arange(3000, dtype=np.int64)
    straight, raw, stats = _write_job(store, steps, [700, 900], np.random.default_rng(3), 0.05)
    resumed, _, _ = _write_job(store, steps, [333], np.random.default_rng(3), 0.05)
    store.truncate_history(resumed, cut)
    w = store.writer(resumed, PARAMS)
    for i in range(cut, len(steps)):
        present = raw["present"][i]
        w.add_step(i, raw["loss"][i], raw["lr"][i], raw["grad_norm"][i], stats[i],
                   val_loss=raw["val_loss"][i] if present else None,
                   val_accuracy=raw["val_accuracy"][i] if present else None)
        if i % 500 == 0:
            w.flush()
    w.flush()
    assert _exact_rollups(store, resumed) == _exact_rollups(store, straight)
