"""Validation metrics recorded every K steps: raw points carry them where they were computed, and
every bucket (from raw rows or from the rollup pyramid, through a truncation, after a migration)
aggregates the steps that recorded them, computed here independently with plain Python."""

import math

import numpy as np
import pytest
from alembic import command

from service.store import Store
from service.store import buckets as buckets
from service.store import engine as db

PARAMS = ["w"]
VALIDATION = ("val_loss", "val_accuracy")


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'v.db'}")
    yield s
    s.close()


def _validation(step: int, every: int) -> dict:
    """What a training loop records at ``step``: a validation loss and accuracy every ``every``
    steps, one of them NaN (a diverged evaluation is recorded too)."""
    if step % every:
        return {}
    loss = math.nan if step == 3 * every else 1.0 / (step + 1)
    return {"val_loss": loss, "val_accuracy": (step // every % 7) / 7}


def _write(store, steps: int, every: int, flush_every: int = 997, job=None, first: int = 0) -> int:
    """Steps [first, steps) of ``job`` (a new one by default), flushed every ``flush_every``."""
    job = job or store.create_job("validated", {"kind": "test"})
    w = store.writer(job, PARAMS)
    for step in range(first, steps):
        w.add_step(step, 2.0 / (step + 1), 0.1, 1.0, np.ones((1, 6)), **_validation(step, every))
        if step % flush_every == 0:
            w.flush()
    w.flush()
    return job


def _expected(lo: int, hi: int, every: int, name: str) -> dict:
    """A bucket's aggregates of ``name`` over steps [lo, hi], from the recorded values alone."""
    recorded = [(s, _validation(s, every)[name]) for s in range(lo, hi + 1) if s % every == 0]
    if not recorded:
        return {"min": None, "max": None, "mean": None, "last": None}
    numbers = [v for _, v in recorded if not math.isnan(v)]
    return {
        "min": min(numbers, default=None),
        "max": max(numbers, default=None),
        "mean": math.fsum(numbers) / len(numbers) if numbers else None,
        "last": recorded[-1][1],
    }


def _same(got, want) -> bool:
    if want is None or got is None:
        return got is want
    if math.isnan(want):
        return math.isnan(got)
    return math.isclose(got, want, rel_tol=1e-12)


def _check(points: list[dict], every: int) -> None:
    assert points and all("step_end" in p for p in points)
    for p in points:
        for name in VALIDATION:
            want = _expected(p["step"], p["step_end"], every, name)
            got = p[name]
            assert all(_same(got[a], want[a]) for a in want), (name, p["step"], p["step_end"], got, want)


def test_raw_points_carry_validation_where_it_was_computed(store):
    job = _write(store, 400, every=10)
    points = store.history(job, 0, 45)
    for p in points:
        want = _validation(p["step"], 10)
        for name in VALIDATION:
            assert _same(p[name], want.get(name)), (p["step"], name, p[name])
    assert [p["step"] for p in points if p["val_loss"] is not None] == [0, 10, 20, 30, 40]
    assert math.isnan(points[30]["val_loss"])  # recorded as NaN, not missing


@pytest.mark.parametrize("start, end, max_points", [
    (None, None, 2),  # the dashboard's repro: last was null in every bucket
    (None, None, 100),  # buckets of 4 raw rows: most without a validation step
    (3, 398, 7),
])
def test_buckets_of_a_short_job_aggregate_the_recorded_steps(store, start, end, max_points):
    job = _write(store, 400, every=10)
    points = store.history(job, start, end, max_points)
    _check(points, every=10)
    assert any(p["val_loss"]["last"] is None for p in points) == (max_points == 100)


@pytest.mark.parametrize("every", [10, 1000])
@pytest.mark.parametrize("start, end, max_points", [(None, None, 10), (37, 19_993, 50), (5_003, 9_000, 100)])
def test_buckets_from_the_rollup_pyramid_aggregate_the_recorded_steps(store, every, start, end, max_points):
    job = _write(store, 20_000, every=every)
    lo, hi = start or 0, 19_999 if end is None else end
    assert buckets.plan(lo, hi, max_points).level > 0  # read from stored blocks, not raw rows
    _check(store.history(job, start, end, max_points), every)


def test_a_resumed_history_keeps_its_validation_buckets(store):
    """Truncated (as a resume does) and written again: the rollups' last recorded steps are recomputed."""
    job = _write(store, 3_000, every=10, flush_every=333)
    store.truncate_history(job, 1_234)
    _check(store.history(job, max_points=10), every=10)
    _write(store, 3_000, every=10, job=job, first=1_234)
    _check(store.history(job, max_points=10), every=10)
    _check(store.history(job, 1_000, 2_999, max_points=20), every=10)


def test_revision_0006_backfills_the_last_recorded_steps_as_the_writer_stores_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with Store(url) as store:
        job = _write(store, 5_000, every=7, flush_every=1_000)
        with store.engine.connect() as conn:
            written = conn.exec_driver_sql("SELECT * FROM history_rollup ORDER BY level, block").all()
    assert any(row[-1] is not None for row in written)
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            config = db.alembic_config(url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")
    finally:
        engine.dispose()
    assert db.upgrade(url) == db.head_revision()
    with Store(url) as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT * FROM history_rollup ORDER BY level, block").all() == written
        _check(store.history(job, max_points=10), every=7)
