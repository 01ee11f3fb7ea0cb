"""Storage benchmarks, each against a baseline measured side by side in the same run.

1. History rows written per second through the real code path (HistoryWriter: add_step + flush,
   rollups included) for a job with P parameters (1 step row + P statistics rows per step),
   against raw sqlite3 executemany of the same rows into equivalent tables (same keys, WITHOUT
   ROWID, same transaction per batch, rows already built as tuples).
2. A 1,000,000-step history downsampled to 1,000 buckets (min/max/mean/last of every series),
   against a plain GROUP BY over every raw row of the same table.
   Also for distinct windows (a dashboard zooming: every query computed, none cached), and the
   REST answer's JSON written from the rows (api.history.points_json) against encoding the same
   points as dicts with json.dumps (the straightforward way).
3. The same query from 20 concurrent threads (the REST service's shape of load): p50/p95, for
   one window (cached and not) and for distinct windows.

Run: .venv/bin/python benchmarks/bench_store.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from service.api.encode import dumps
from service.api.routes.history import points_json
from service.store import Store

PARAMS = ["w1", "b1", "w2", "b2", "w3", "b3"]


def _stats_for(n_steps: int, n_params: int, rng) -> np.ndarray:
    stats = rng.standard_normal((n_steps, n_params, 6))
    stats[..., 5] = 0
    return stats


def write_through_store(store: Store, n_steps: int, flush_every: int, stats: np.ndarray, names) -> float:
    job = store.create_job("bench-write", {"bench": True})
    w = store.writer(job, names)
    losses = np.linspace(2.0, 0.1, n_steps).tolist()
    t0 = time.perf_counter()
    for s in range(n_steps):
        w.add_step(s, losses[s], 0.1, 1.5, stats[s])
        if w.pending >= flush_every:
            w.flush()
    w.flush()
    return time.perf_counter() - t0


def write_raw_sqlite(path: Path, n_steps: int, flush_every: int, stats: np.ndarray) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE history (job_id INTEGER, step INTEGER, loss REAL, lr REAL, grad_norm REAL,"
        " val_loss REAL, val_accuracy REAL, nan_mask INTEGER, PRIMARY KEY (job_id, step)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE param_stats (job_id INTEGER, param INTEGER, step INTEGER, norm REAL, mean REAL,"
        " std REAL, min REAL, max REAL, nonfinite INTEGER, PRIMARY KEY (job_id, param, step)) WITHOUT ROWID"
    )
    n_params = stats.shape[1]
    losses = np.linspace(2.0, 0.1, n_steps).tolist()
    batches = []  # built before timing: the baseline is the database's floor, not Python's
    for lo in range(0, n_steps, flush_every):
        hi = min(lo + flush_every, n_steps)
        history = [(1, s, losses[s], 0.1, 1.5, None, None, 0) for s in range(lo, hi)]
        params = [(1, p, s, *stats[s, p, :5].tolist(), 0) for p in range(n_params) for s in range(lo, hi)]
        batches.append((history, params))
    t0 = time.perf_counter()
    for history, params in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)", history)
        conn.executemany("INSERT INTO param_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", params)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def full_scan_group_by(path: Path, job_id: int, n_steps: int, buckets: int) -> float:
    """The baseline downsample: one GROUP BY over every raw row, same aggregates as the store."""
    width = -(-n_steps // buckets)
    series = ["loss", "lr", "grad_norm", "val_loss", "val_accuracy"]
    aggs = ", ".join(f"min({s}), max({s}), sum({s}), count({s})" for s in series)
    sql = (
        f"SELECT min(step), max(step), count(*), {aggs} FROM history WHERE job_id = ? "
        f"GROUP BY step / {width} ORDER BY 1"
    )
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    rows = conn.execute(sql, (job_id,)).fetchall()
    elapsed = time.perf_counter() - t0
    conn.close()
    assert len(rows) == buckets
    return elapsed


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def windows(n_steps: int, seed: int):
    """Endless distinct 90%-of-the-run windows, as a zooming dashboard asks."""
    rng = random.Random(seed)
    while True:
        start = rng.randrange(0, n_steps // 10)
        yield start, start + n_steps * 9 // 10


def concurrent_latencies(store: Store, job: int, n_steps: int, clients: int, requests: int, copy, distinct):
    latencies: list[float] = []
    lock = threading.Lock()

    def client(i):
        mine = []
        ranges = windows(n_steps, i)
        for _ in range(requests):
            start, end = next(ranges) if distinct else (None, None)
            t0 = time.perf_counter()
            store.history(job, start, end, max_points=1000, copy=copy)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    write_steps = 20_000 if args.quick else 100_000
    long_steps = 100_000 if args.quick else 1_000_000
    flush_every = 1_000
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = Store(f"sqlite:///{tmp / 'store.db'}")
        stats = _stats_for(write_steps, len(PARAMS), rng)
        rows = write_steps * (1 + len(PARAMS))
        t_raw = write_raw_sqlite(tmp / "raw.db", write_steps, flush_every, stats)
        t_store = write_through_store(store, write_steps, flush_every, stats, PARAMS)
        print(
            f"write: {write_steps:,} steps x (1 + {len(PARAMS)} params) = {rows:,} rows, "
            f"flush every {flush_every} steps"
        )
        print(f"  HistoryWriter (rollups included): {rows / t_store:12,.0f} rows/s  ({t_store:.2f} s)")
        print(f"  raw sqlite3 executemany baseline: {rows / t_raw:12,.0f} rows/s  ({t_raw:.2f} s)")
        print(f"  ratio store/raw: {t_raw / t_store:.2f}x the baseline's throughput")

        long_stats = _stats_for(long_steps, 1, rng)
        t_long = write_through_store(store, long_steps, 10_000, long_stats, ["w"])
        long_job = store.list_jobs(limit=1)[0]["id"]
        print(
            f"\nlong job: {long_steps:,} steps x (1 + 1 param) written in {t_long:.1f} s "
            f"({2 * long_steps / t_long:,.0f} rows/s)"
        )

        buckets = 1000
        cold = Store(store.url, cache_size=0)  # every call computes: the honest query time
        t_hist = timed(lambda: cold.history(long_job, max_points=buckets), 7)
        t_grad = timed(lambda: cold.gradients(long_job, "w", max_points=buckets), 7)
        t_cached = timed(lambda: store.history(long_job, max_points=buckets), 7)
        points = store.history(long_job, max_points=buckets)
        t_scan = timed(lambda: full_scan_group_by(tmp / "store.db", long_job, long_steps, buckets), 3)
        width = points[0]["step_end"] - points[0]["step"] + 1
        print(
            f"\ndownsample {long_steps:,} steps to <= {buckets} buckets ({len(points)} returned, "
            f"width {width} steps), median of runs:"
        )
        print(f"  store.history   (rollups + last values, uncached): {t_hist * 1e3:8.1f} ms")
        print(f"  store.gradients (rollups + last values, uncached): {t_grad * 1e3:8.1f} ms")
        print(f"  store.history   (result cache hit):               {t_cached * 1e3:8.1f} ms")
        print(f"  full-scan GROUP BY baseline:                       {t_scan * 1e3:8.1f} ms")
        print(f"  ratio: uncached history is {t_scan / t_hist:.0f}x faster than the full scan")

        ranges = windows(long_steps, 0)
        t_win = timed(lambda: cold.history(long_job, *next(ranges), max_points=buckets), 21)
        t_win_rows = timed(lambda: cold.history_points(long_job, *next(ranges), max_points=buckets), 21)
        t_win_grad = timed(lambda: cold.gradients_points(long_job, "w", *next(ranges), buckets), 21)
        rows = cold.history_points(long_job, *next(ranges), max_points=buckets)
        t_dicts_json = timed(lambda: dumps(rows.dicts()), 11)
        t_rows_json = timed(lambda: points_json(rows), 11)
        print(f"\ndistinct 90% windows, every one computed (median of runs; {len(rows.rows)} buckets):")
        print(f"  store.history          (rows decoded to dicts):  {t_win * 1e3:8.1f} ms")
        print(f"  store.history_points   (rows, as the API reads): {t_win_rows * 1e3:8.1f} ms")
        print(f"  store.gradients_points (rows, as the API reads): {t_win_grad * 1e3:8.1f} ms")
        print(
            f"  full-scan GROUP BY baseline:                     {t_scan * 1e3:8.1f} ms"
            f"   ({t_scan / t_win_rows:.0f}x the rows query)"
        )
        print(
            f"  JSON of the answer: points_json {t_rows_json * 1e3:.1f} ms, dicts + json.dumps "
            f"{t_dicts_json * 1e3:.1f} ms baseline ({t_dicts_json / t_rows_json:.1f}x)"
        )

        clients, requests = 20, 10
        print()
        cached = Store(store.url)
        for name, s, copy, distinct in (
            ("uncached", cold, True, False),
            ("uncached, distinct windows", cold, True, True),
            ("cached", cached, True, False),
            ("cached, copy=False", cached, False, False),
        ):
            lat = concurrent_latencies(s, long_job, long_steps, clients, requests, copy, distinct)
            p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95) - 1]
            print(
                f"{clients} threads x {requests} history queries, {name}: p50 {p50 * 1e3:.1f} ms, "
                f"p95 {p95 * 1e3:.1f} ms (p95 / single uncached query: {p95 / t_hist:.1f}x)"
            )
        cold.close()
        cached.close()
        store.close()


if __name__ == "__main__":
    main()
