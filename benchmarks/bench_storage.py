"""What a long job stores: the `moons` preset (a 2-16-16-1 network, 337 parameters, Adam, float64)
trained for 200,000 steps under the default snapshot budget, against the same job keeping a snapshot
of every step (a budget too large to bind: what gradbook stored before it had one), side by side.

For each: the database file's size, what each table takes in it (SQLite's dbstat when this build
has it), the free pages thinning left for later writes to reuse, and the training time. Then the
replay of steps whose snapshots were thinned away: the slowest of a sample, and its bit-for-bit
agreement with the snapshot the other job kept of the same step.

Target: the budgeted job stores at most 200 MB in all; a replay takes about a second at most.

Run: .venv/bin/python benchmarks/bench_storage.py [--steps N] [--quick]   (--quick: 20,000 steps)
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from service.jobs import presets
from service.jobs.replay import step_record
from service.runtime.runner import run_job
from service.store import Store

MB = 2**20


def train(directory: Path, steps: int, budget_mb: float | None) -> tuple[Path, Store, int, float]:
    path = directory / f"budget-{budget_mb}.db"
    store = Store(url=f"sqlite:///{path}")
    doc = presets.get("moons")
    doc.pop("epochs")
    doc.update(steps=steps)
    if budget_mb is not None:
        doc["snapshot_budget_mb"] = budget_mb
    job_id = store.create_job("moons", doc)
    t0 = time.perf_counter()
    assert run_job(store, job_id).status == "succeeded"
    return path, store, job_id, time.perf_counter() - t0


def breakdown(path: Path) -> tuple[dict, float]:
    """MB per table (with its indexes) and MB of free pages."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:  # no dbstat in this SQLite build
        rows = []
    tables: dict[str, float] = {}
    for name, size in rows:
        index = name.startswith("sqlite_autoindex_")  # sqlite_autoindex_<table>_1: the primary key's
        table = name.removeprefix("sqlite_autoindex_").rsplit("_", 1)[0] if index else name
        tables[table] = tables.get(table, 0.0) + size / MB
    page = db.execute("PRAGMA page_size").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0] * page / MB
    db.close()
    return tables, free


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 20_000 if args.quick else args.steps
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for label, budget in (("every snapshot kept", 1e9), ("default budget (64 MB)", None)):
            path, store, job_id, seconds = train(Path(tmp), steps, budget)
            runs[label] = (path, store, job_id)
            tables, free = breakdown(path)
            size = path.stat().st_size / MB
            print(f"{label:24s} {steps:,} steps in {seconds:6.1f} s: database {size:8.1f} MB "
                  f"({free:.1f} MB of it free pages)")
            for table, mb in sorted(tables.items(), key=lambda kv: -kv[1])[:6]:
                print(f"    {table:22s} {mb:8.1f} MB")
        (full, full_store, full_job), (thin, thin_store, thin_job) = runs.values()
        ratio = full.stat().st_size / thin.stat().st_size
        print(f"budgeted / every snapshot: 1 / {ratio:.1f}   target: at most 200 MB for 200,000 steps")

        kept = set(thin_store.snapshot_steps(thin_job, limit=10**7))
        rng = np.random.default_rng(0)
        sample = [int(s) for s in rng.choice(steps, 20, replace=False) if int(s) not in kept]
        slowest, identical = (0.0, 0, 0), True
        for step in sample:
            record = step_record(thin_store, thin_job, step)
            stored = full_store.step(full_job, step)
            identical &= record["replayed"]["matches_record"] and all(
                np.array_equal(stored[key][n], record[key][n]) for key in ("params", "gradients")
                for n in stored[key])
            slowest = max(slowest, (record["replayed"]["seconds"], record["replayed"]["steps"], step))
        print(f"replays of {len(sample)} thinned steps: slowest {slowest[0]:.2f} s ({slowest[1]:,} steps "
              f"replayed for step {slowest[2]:,}); bit-identical to the kept snapshots: {identical}")
        for _, store, _ in runs.values():
            store.close()


if __name__ == "__main__":
    main()
