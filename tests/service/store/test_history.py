"""Writing and reading a job's steps: round trips of values, snapshots and checkpoints,
truncation for resume, export."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sqlalchemy import event

from service.domain import Checkpoint
from service.store import JobStateError, Store, check_range
from service.store import rollup as rollup

NAMES = ["w1", "b1"]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'h.db'}")
    yield s
    s.close()


def _stats(step: int) -> np.ndarray:
    rows = np.arange(12, dtype=float).reshape(2, 6) + step
    rows[:, 5] = step % 3
    return rows


def save_checkpoint(store, job_id, checkpoint):
    """A checkpoint on its own, as a training loop's last flush writes one."""
    store.writer(job_id, NAMES).flush(checkpoint)


def _run(store, steps, job_id=None, checkpoints=(), flush_every=7):
    job_id = job_id or store.create_job("seed", {"steps": 100})
    w = store.writer(job_id, NAMES)
    for s in steps:
        w.add_step(s, 1.0 / (s + 1), 0.1, 2.0 * s, _stats(s), val_loss=0.5 * s if s % 10 == 0 else None)
        w.add_snapshot(s, {"w1": np.full((2, 2), s, np.float64)}, {"w1": np.full((2, 2), -s, np.float32)})
        if (s + 1) % flush_every == 0 or s in checkpoints:
            arrays = {"w1": np.full(3, s, np.float64)}
            w.flush(Checkpoint(s, arrays, {"rng": [s, 1]}) if s in checkpoints else None)
    w.flush()
    return job_id


def test_non_finite_values_round_trip_faithfully(store):
    job_id = store.create_job("nan", {})
    w = store.writer(job_id, NAMES)
    stats = np.array([[np.nan, np.inf, -np.inf, 0.0, 1.0, 7], [1, 2, 3, 4, 5, 0]], dtype=float)
    w.add_step(0, np.nan, np.inf, -np.inf, stats, val_loss=np.nan, val_accuracy=None)
    w.add_step(1, 2.0, 0.1, 3.0, stats, val_loss=None, val_accuracy=0.5)
    w.flush()
    p0, p1 = store.history(job_id)
    assert math.isnan(p0["loss"]) and p0["lr"] == math.inf and p0["grad_norm"] == -math.inf
    assert math.isnan(p0["val_loss"]) and p0["val_accuracy"] is None  # NaN vs not recorded
    assert p1["val_loss"] is None and p1["val_accuracy"] == 0.5
    g = store.gradients(job_id, "w1")[0]
    assert math.isnan(g["norm"]) and g["mean"] == math.inf and g["std"] == -math.inf
    assert g["nonfinite"] == 7 and isinstance(g["nonfinite"], int)
    # the job row stays plain JSON: a non-finite last loss reads as None
    w.add_step(2, np.nan, 0.1, 1.0, stats)
    w.flush()
    assert store.get_job(job_id)["last_loss"] is None and store.get_job(job_id)["steps_done"] == 3


@settings(max_examples=30, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.float64, np.float32, np.dtype(">f8"), np.int64, np.uint32, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
)
def test_arrays_round_trip_bit_for_bit(arr):
    from service.store.arrays import decode_array, encode_array

    dtype, shape, data = encode_array("a", arr)
    assert dtype.startswith(("<", "|"))  # little-endian on disk whatever the machine
    back = decode_array("a", dtype, shape, data)
    assert back.shape == arr.shape and back.dtype == arr.dtype.newbyteorder("=")
    assert back.tobytes() == arr.astype(back.dtype).tobytes()


def test_snapshots_and_step(store):
    job_id = store.create_job("snap", {})
    w = store.writer(job_id, NAMES)
    w.add_step(0, 1.0, 0.1, 1.0, _stats(0))
    grads = {"w1": np.arange(6, dtype=np.float32).reshape(2, 3), "b1": np.float64(2.5)}
    params = {"w1": np.ones((2, 3), np.float32), "b1": np.array(-1.0)}
    w.add_snapshot(0, grads, params)
    w.flush()
    step = store.step(job_id, 0)
    assert step["loss"] == 1.0 and step["stats"]["b1"]["norm"] == 6.0
    assert step["stats"]["w1"]["nonfinite"] == 0
    for got, want in ((step["gradients"], grads), (step["params"], params)):
        assert got.keys() == want.keys()
        for name, arr in want.items():
            assert got[name].dtype == np.asarray(arr).dtype and got[name].shape == np.shape(arr)
            np.testing.assert_array_equal(got[name], arr)
    assert store.step(job_id, 1) is None
    assert store.snapshot_steps(job_id) == [0]
    with pytest.raises(ValueError, match="'s'.*dtype"):
        w.add_snapshot(1, {"s": np.array(["x"])}, {})


def test_writer_refuses_bad_input(store):
    job_id = store.create_job("bad", {})
    w = store.writer(job_id, NAMES)
    w.add_step(5, 1.0, 0.1, 1.0, _stats(5))
    with pytest.raises(ValueError, match="step: 5 is not after"):
        w.add_step(5, 1.0, 0.1, 1.0, _stats(5))
    with pytest.raises(ValueError, match="param_stats: expected shape"):
        w.add_step(6, 1.0, 0.1, 1.0, np.zeros((3, 6)))
    with pytest.raises(ValueError, match="param_stats: expected numbers"):
        w.add_step(6, 1.0, 0.1, 1.0, [["x"] * 6] * 2)
    with pytest.raises(ValueError, match="loss"):
        w.add_step(6, None, 0.1, 1.0, _stats(6))
    with pytest.raises(ValueError, match="step: expected a non-negative integer"):
        w.add_step(-1, 1.0, 0.1, 1.0, _stats(6))
    assert w.pending == 1
    w.flush()
    bad = store.writer(store.create_job("bad counts", {}), NAMES)
    bad.add_step(0, 1.0, 0.1, 1.0, np.full((2, 6), 0.5))
    with pytest.raises(ValueError, match="at step 0, parameter 'w1': the nonfinite column"):
        bad.flush()
    assert bad.pending == 1
    with pytest.raises(JobStateError, match="param_names"):
        store.writer(job_id, ["other", "names"])
    with pytest.raises(ValueError, match="start: 5 is after end 2"):
        store.history(job_id, 5, 2)
    with pytest.raises(ValueError, match="max_points"):
        store.history(job_id, max_points=0)
    with pytest.raises(LookupError, match="no parameter 'nope'"):
        store.gradients(job_id, "nope")


def test_flush_reports_a_cancellation(store):
    job_id = store.create_job("c", {})
    store.transition(job_id, "running")
    w = store.writer(job_id, NAMES)
    w.add_step(0, 1.0, 0.1, 1.0, _stats(0))
    assert w.flush() == "running"
    store.transition(job_id, "cancelled", reason="user")
    w.add_step(1, 1.0, 0.1, 1.0, _stats(1))
    assert w.flush() == "cancelled"
    # the history ends where the cancel took effect: the step it names, the job's steps_done
    assert [p["step"] for p in store.history(job_id)] == [0]
    assert store.get_job(job_id)["steps_done"] == 1 == store.job_events(job_id)[-1]["steps_done"]


def test_a_failed_flush_keeps_its_rows_for_the_next_one(store):
    job_id = store.create_job("fail", {})
    w = store.writer(job_id, NAMES)
    calls = []

    def fail_the_second_history_insert(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO history "):
            calls.append(1)
            if len(calls) == 2:
                raise OSError("disk full")

    event.listen(store.engine, "before_cursor_execute", fail_the_second_history_insert)
    for s in range(4):
        w.add_step(s, 1.0, 0.1, 1.0, _stats(s))
    w.flush()
    for s in range(4, 9):
        w.add_step(s, 1.0, 0.1, 1.0, _stats(s))
    with pytest.raises(OSError, match="disk full"):
        w.flush()  # rolled back
    assert w.pending == 5 and [p["step"] for p in store.history(job_id)] == [0, 1, 2, 3]
    w.add_step(9, 1.0, 0.1, 1.0, _stats(9))
    w.flush()
    assert [p["step"] for p in store.history(job_id)] == list(range(10))
    assert store.gradients(job_id, "w1")[7]["max"] == _stats(7)[0, 4]


def test_checkpoints_keep_the_latest_and_replace_same_step(store):
    job_id = _run(store, range(30), checkpoints=(9, 19))
    ckpt = store.last_checkpoint(job_id)
    assert ckpt.step == 19 and ckpt.meta == {"rng": [19, 1]}
    np.testing.assert_array_equal(ckpt.arrays["w1"], np.full(3, 19.0))
    save_checkpoint(store, job_id, Checkpoint(19, {"w1": np.zeros(1, np.float32)}, {"again": True}))
    ckpt = store.last_checkpoint(job_id)
    assert ckpt.meta == {"again": True} and ckpt.arrays["w1"].dtype == np.float32
    with pytest.raises(ValueError, match="checkpoint.meta"):
        save_checkpoint(store, job_id, Checkpoint(20, {}, {"x": float("inf")}))
    assert store.last_checkpoint(job_id).meta == {"again": True}  # the refused one left no trace
    assert store.last_checkpoint(store.create_job("fresh", {})) is None


def _checkpoint_steps(store, job_id, table="checkpoints"):
    kind = " AND kind = 'checkpoint'" if table == "step_arrays" else ""
    with store.engine.connect() as conn:
        sql = f"SELECT DISTINCT step FROM {table} WHERE job_id = ?{kind} ORDER BY step"
        return conn.exec_driver_sql(sql, (job_id,)).scalars().all()


def test_only_the_newest_checkpoints_are_kept(store, monkeypatch):
    job_id = _run(store, range(40), checkpoints=(9, 19, 29, 39))
    assert _checkpoint_steps(store, job_id) == [29, 39]  # GRADBOOK_KEEP_CHECKPOINTS defaults to 2
    assert _checkpoint_steps(store, job_id, "step_arrays") == [29, 39]
    assert store.snapshot_steps(job_id) == list(range(40))  # snapshots are not checkpoints
    monkeypatch.setenv("GRADBOOK_KEEP_CHECKPOINTS", "1")
    save_checkpoint(store, job_id, Checkpoint(45, {"w1": np.zeros(2)}, {}))
    save_checkpoint(store, job_id, Checkpoint(20, {"w1": np.ones(2)}, {}))  # the one being written stays
    assert _checkpoint_steps(store, job_id) == [20, 45] and store.last_checkpoint(job_id).step == 45


def _exact(points):
    """Points with bucket means rounded: a mean's last bits depend on how the steps were batched
    (summation order); raw values, min, max, last and counts must match exactly."""
    out = []
    for p in points:
        p = dict(p)
        for key, value in p.items():
            if isinstance(value, dict) and value["mean"] is not None:
                p[key] = {**value, "mean": round(value["mean"], 9)}
        out.append(p)
    return out


def test_truncate_then_resume_equals_an_uninterrupted_run(store):
    whole = _run(store, range(100), checkpoints=(49, 79), flush_every=9)
    resumed = _run(store, range(90), checkpoints=(49, 79), flush_every=4)

    store.truncate_history(resumed, 50)
    job = store.get_job(resumed)
    assert job["steps_done"] == 50 and job["last_loss"] == 1.0 / 50
    assert store.history(resumed)[-1]["step"] == 49
    assert store.snapshot_steps(resumed) == list(range(50))
    assert store.last_checkpoint(resumed).step == 49  # 79 is gone, 49 (< from_step) stays
    assert store.step(resumed, 50) is None

    _run(store, range(50, 100), job_id=resumed, flush_every=11)
    for start, end, max_points in [(None, None, 1000), (None, None, 7), (3, 97, 10), (50, 50, 1)]:
        assert _exact(store.history(resumed, start, end, max_points)) == _exact(
            store.history(whole, start, end, max_points)
        )
        assert _exact(store.gradients(resumed, "b1", start, end, max_points)) == _exact(
            store.gradients(whole, "b1", start, end, max_points)
        )
    assert list(store.export_rows(resumed)) == list(store.export_rows(whole))
    # the rollups after truncation agree with a recomputation from the raw rows
    with store.engine.begin() as conn:
        before = conn.exec_driver_sql("SELECT * FROM history_rollup WHERE job_id = ? ORDER BY level, block",
                                      (resumed,)).all()
        rollup.rebuild(conn, rollup.HISTORY, resumed, {}, 0)
        after = conn.exec_driver_sql("SELECT * FROM history_rollup WHERE job_id = ? ORDER BY level, block",
                                     (resumed,)).all()
    assert len(before) == len(after)
    for x, y in zip(before, after, strict=True):  # sums may differ in their last bits (see _exact)
        for a, b in zip(x, y, strict=True):
            assert a == b or (isinstance(a, float) and math.isclose(a, b, rel_tol=1e-12)), (x, y)


def test_truncate_keeps_the_checkpoint_at_from_step(store):
    job_id = _run(store, range(20), checkpoints=(10, 15))
    store.truncate_history(job_id, 10)
    assert store.last_checkpoint(job_id).step == 10
    assert store.snapshot_steps(job_id) == list(range(10))


def test_export_streams_every_step_in_chunks(store, monkeypatch):
    import service.store.facade as store_module

    monkeypatch.setattr(store_module, "EXPORT_CHUNK_STEPS", 3)
    job_id = _run(store, range(0, 40, 2))  # gaps: even steps only
    columns = store.export_columns(job_id)
    assert columns[:6] == ["step", "loss", "lr", "grad_norm", "val_loss", "val_accuracy"]
    assert "w1_norm" in columns and "b1_nonfinite" in columns
    rows = list(store.export_rows(job_id))
    assert [r["step"] for r in rows] == list(range(0, 40, 2))
    assert all(list(r) == columns for r in rows)
    assert rows[5]["b1_max"] == _stats(10)[1, 4]
    assert rows[5]["val_loss"] == 5.0 and rows[4]["val_loss"] is None
    assert [r["step"] for r in store.export_rows(job_id, start=5, end=11)] == [6, 8, 10]


def test_spikes_survive_downsampling(store):
    job_id = store.create_job("spike", {})
    w = store.writer(job_id, ["w"])
    for s in range(20_000):
        w.add_step(s, 1e6 if s == 12_345 else 1.0, 0.1, 1.0, np.ones((1, 6)))
        if w.pending == 5000:
            w.flush()
    w.flush()
    points = store.history(job_id, max_points=20)
    assert len(points) <= 20
    spike = [p for p in points if p["step"] <= 12_345 <= p["step_end"]]
    assert len(spike) == 1 and spike[0]["loss"]["max"] == 1e6 and spike[0]["loss"]["min"] == 1.0
    n = spike[0]["count"]
    assert spike[0]["loss"]["mean"] == pytest.approx((1e6 + n - 1) / n)


def test_cached_results_follow_new_writes_and_are_private_copies(store):
    job_id = store.create_job("live", {})
    w = store.writer(job_id, ["w"])
    for s in range(3000):
        w.add_step(s, float(s), 0.1, 1.0, np.ones((1, 6)))
    w.flush()
    first = store.history(job_id, max_points=10)
    first[0]["loss"]["max"] = "changed by the caller"
    again = store.history(job_id, max_points=10)
    assert again[0]["loss"]["max"] == float(again[0]["step_end"])  # the cache was not touched
    shared = store.history(job_id, max_points=10, copy=False)
    assert shared is store.history(job_id, max_points=10, copy=False) and shared == again
    w.add_step(3000, 1e9, 0.1, 1.0, np.ones((1, 6)))
    w.flush()
    assert store.history(job_id, max_points=10)[-1]["loss"]["max"] == 1e9
    assert store.gradients(job_id, "w", 2990, None)[-1]["step"] == 3000
    store.truncate_history(job_id, 2000)
    assert store.history(job_id, max_points=10)[-1]["step_end"] == 1999


def test_result_cache_computes_once_for_simultaneous_misses():
    import threading
    import time

    from service.store.read import ResultCache

    cache, calls, results = ResultCache(4), [], []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return ["value"]

    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [["value"]] * 8
    for i in range(5):
        cache.get_or_compute(i, lambda: [])
    cache.get_or_compute("k", compute)  # evicted by the five newer keys: computed again
    assert len(calls) == 2


def test_pruning_many_old_checkpoints_needs_no_parameter_per_checkpoint(store):
    """A job written before pruning existed may hold thousands of checkpoints; the first prune must
    not bind one SQL parameter per checkpoint (SQLite caps a statement's parameters)."""
    import sqlite3

    job_id = _run(store, range(3))
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 1999) "
            "INSERT INTO checkpoints (job_id, step, meta, created_at) SELECT ?, i, '{}', '2026-01-01' FROM s",
            (job_id,))
    store.engine.dispose()  # new connections get the lowered limit below
    event.listen(store.engine, "connect",
                 lambda dbapi, _: dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100))
    save_checkpoint(store, job_id, Checkpoint(5000, {"w1": np.zeros(2)}, {}))
    assert _checkpoint_steps(store, job_id) == [1999, 5000]


def test_flush_reads_the_job_status_without_returning_on_old_sqlite(store, monkeypatch):
    """UPDATE ... RETURNING needs SQLite 3.35; older ones get an UPDATE and a SELECT."""
    monkeypatch.setattr(store.engine.dialect, "update_returning", False)
    job_id = _run(store, range(12))
    assert store.get_job(job_id)["steps_done"] == 12
    assert [p["step"] for p in store.history(job_id)] == list(range(12))


@pytest.mark.parametrize("start, end, max_points, message", [
    (-1, None, 10, "start: expected a non-negative integer or None, got -1"),
    (True, None, 10, "start: expected a non-negative integer or None, got True"),
    (None, 2.5, 10, "end: expected a non-negative integer or None, got 2.5"),
    (5, 2, 10, "start: 5 is after end 2"),
    (None, None, 0, "max_points: expected a positive integer, got 0"),
    (0, 3, False, "max_points: expected a positive integer, got False"),
])
def test_check_range_is_the_one_range_rule_and_names_the_field(start, end, max_points, message):
    with pytest.raises(ValueError) as caught:
        check_range(start, end, max_points)
    assert str(caught.value) == message


def test_check_range_accepts_open_ranges_and_no_point_budget():
    for start, end in ((None, None), (0, None), (None, 0), (3, 3), (0, 2**40)):
        check_range(start, end, 1)
        check_range(start, end)  # an export has no point budget
