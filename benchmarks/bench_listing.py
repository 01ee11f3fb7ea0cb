"""Listing jobs (what GET /jobs and `gradbook jobs` show) with one huge spec in the database.

Two databases of the same ordinary jobs, side by side in one run; one of them also holds a job whose
inline data make a 28 MB spec. Listing without specs must not read that spec: the target is under
100 ms with the big job present, and a ratio near 1. For scale, the same listing with the specs
read (``include_spec=True``) is timed too, with fewer repeats (seconds each).

Run: .venv/bin/python benchmarks/bench_listing.py [--jobs N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from service.jobs import presets
from service.store import Store

TARGET_MS = 100.0
BIG_SPEC_MB = 28


def big_spec() -> dict:
    """The seed preset with inline data of about BIG_SPEC_MB megabytes of JSON."""
    rows = BIG_SPEC_MB * 1_000_000 // 45  # ~45 characters a row: [[x]] and [[y]]
    values = np.random.default_rng(0).standard_normal((rows, 2)).tolist()
    return {**presets.get("seed"), "data": {"x": [[a] for a, _ in values], "y": [[b] for _, b in values]}}


def fill(url: str, jobs: int, big: dict | None) -> None:
    with Store(url) as store:
        for i in range(jobs):
            store.create_job(f"job-{i}", presets.get("seed"), total_steps=100)
            if big is not None and i == jobs // 2:  # in the middle of the listed page
                store.create_job("big", big, total_steps=100)


def time_listing(url: str, repeats: int, include_spec: bool) -> tuple[float, float, int]:
    """(first listing on a fresh store, median of the next ``repeats``) in ms, and the jobs listed."""
    with Store(url) as store:
        t0 = time.perf_counter()
        listed = store.list_jobs(limit=100, include_spec=include_spec)
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            store.list_jobs(limit=100, include_spec=include_spec)
            times.append(time.perf_counter() - t0)
    return first * 1e3, statistics.median(times) * 1e3, len(listed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60, help="ordinary jobs in each database")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    big = big_spec()
    print(f"big spec: {len(json.dumps(big)) / 1e6:.1f} MB of JSON; {args.jobs} ordinary jobs")
    with tempfile.TemporaryDirectory() as tmp:
        plain, with_big = f"sqlite:///{Path(tmp) / 'plain.db'}", f"sqlite:///{Path(tmp) / 'big.db'}"
        fill(plain, args.jobs, None)
        fill(with_big, args.jobs, big)
        print(f"{'list_jobs(limit=100)':34} {'without big job':>18} {'with big job':>18} {'ratio':>7}")
        for include_spec in (False, True):
            repeats = min(args.repeats, 3) if include_spec else args.repeats
            a_first, a_median, a_n = time_listing(plain, repeats, include_spec)
            b_first, b_median, b_n = time_listing(with_big, repeats, include_spec)
            label = f"include_spec={include_spec}"
            print(f"  {label:32} {a_median:15.2f} ms {b_median:15.2f} ms {b_median / a_median:6.1f}x"
                  f"   ({a_n} / {b_n} jobs)")
            print(f"  {'  first listing on a fresh store':32} {a_first:15.2f} ms {b_first:15.2f} ms"
                  f" {b_first / a_first:6.1f}x")
            if not include_spec:
                worst = max(b_first, b_median)
                verdict = "meets" if worst < TARGET_MS else "MISSES"
                print(f"  -> {worst:.1f} ms with the big job: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
