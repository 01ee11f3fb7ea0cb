"""What recording costs: the same training run with the book kept (every step's loss, lr, gradient
norm and per-parameter statistics, snapshots and checkpoints every 100 steps, all written to SQLite
through the real store) against recording off, on a ~100k-parameter MLP.

    python benchmarks/bench_training.py [--steps 1000] [--pairs 5]

Runs come in adjacent pairs (off then on, then on then off, ... so a drift in machine speed
favours neither) in one process, so noise on a shared machine hits both runs of a pair alike.
Two ratios are printed: the median over pairs of on/off within each pair (robust to a noisy
spell, which spoils one pair, not the summary) and the ratio of the fastest runs (noise only ever
adds time). Target: at most 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from service.spec import make_plan, parse_spec
from service.store import Store
from service.trainer import GradStats, Trainer


def spec(steps: int, batch_size: int = 128) -> dict:
    # 784-128-10: 784*128 + 128 + 128*10 + 10 = 101,770 parameters; minibatches of 128 rows
    return {
        "name": "bench",
        "model": {"layers": [{"units": 128, "activation": "relu"}, {"units": 10, "activation": "linear"}],
                  "init": {"scheme": "he", "seed": 0}},
        "data": {"dataset": "linear", "n": 2048, "features": 784, "outputs": 10, "seed": 0},
        "loss": "mse",
        "optimizer": {"name": "adam", "lr": 1e-3},
        "steps": steps,
        "batch_size": batch_size,
    }


def run_off(doc) -> float:
    trainer = Trainer(make_plan(parse_spec(doc)))
    t0 = time.perf_counter()
    trainer.run(writer=None)
    return time.perf_counter() - t0


def run_on(doc, store: Store, parts: dict | None = None) -> float:
    """A recorded run; ``parts`` accumulates the seconds the training loop spends recording a step
    (of which statistics and snapshot encoding) and in the store's flushes (each one transaction)."""
    trainer = Trainer(make_plan(parse_spec(doc)))
    job_id = store.create_job("bench", doc)
    store.set_param_names(job_id, trainer.names)
    store.transition(job_id, "running", reason="benchmark")
    writer = store.writer(job_id, trainer.names)
    if parts is not None:
        for key in ("recording a step", "  of it statistics", "  of it snapshots", "store flushes"):
            parts.setdefault(key, 0.0)  # print in this order
        trainer._record = _timed(trainer._record, parts, "recording a step")
        trainer.stats = _timed(trainer.stats, parts, "  of it statistics")
        writer.add_snapshot = _timed(writer.add_snapshot, parts, "  of it snapshots")
        writer.flush = _timed(writer.flush, parts, "store flushes")
    t0 = time.perf_counter()
    outcome = trainer.run(writer)
    seconds = time.perf_counter() - t0
    assert outcome.status == "succeeded", outcome
    store.transition(job_id, "succeeded", reason="benchmark")
    return seconds


def _timed(fn, parts: dict, key: str):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[key] = parts.get(key, 0.0) + time.perf_counter() - t0
    return wrapper


def stats_only(doc, repeats: int = 200) -> tuple[float, float]:
    """Time of one statistics pass over the flat gradient vs one training step, for the breakdown."""
    trainer = Trainer(make_plan(parse_spec(doc)))
    sizes = [p.data.size for p in trainer.params.values()]
    g = np.random.default_rng(0).standard_normal(sum(sizes))
    stats = GradStats(sizes)
    t0 = time.perf_counter()
    for _ in range(repeats):
        stats(g)
    return (time.perf_counter() - t0) / repeats, sum(sizes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    doc = spec(args.steps, args.batch)
    plan = make_plan(parse_spec(doc))
    print(f"MLP {plan.sizes}: {plan.n_params:,} parameters, batch {plan.batch_size}, {args.steps} steps, "
          f"snapshots every {plan.snapshot_every} steps, checkpoints every {plan.checkpoint_every} steps "
          f"but at most every {plan.checkpoint_seconds:g} s (the defaults), one at the end")
    off, on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(url=f"sqlite:///{Path(tmp) / 'bench.db'}")
        run_off(spec(20))  # warm-up: imports, BLAS threads, page cache
        run_on(spec(20), store)
        for i in range(args.pairs):
            if i % 2 == 0:
                off.append(run_off(doc))
                on.append(run_on(doc, store))
            else:
                on.append(run_on(doc, store))
                off.append(run_off(doc))
        parts: dict = {}
        on_timed = run_on(doc, store, parts)
        store.close()
    per_stat, n = stats_only(doc)
    for label, runs in (("recording off", off), ("recording on ", on)):
        times = ", ".join(f"{t:.2f}" for t in runs)
        print(f"{label}: {min(runs) / args.steps * 1e3:8.3f} ms/step fastest  (runs: {times} s)")
    print(f"one more recorded run, {on_timed / args.steps * 1e3:.3f} ms/step, spent per step in:")
    for key, seconds in parts.items():
        print(f"  {key:20} {seconds / args.steps * 1e3:7.3f} ms")
    print(f"statistics alone over {n:,} gradients, out of the loop: {per_stat * 1e3:.3f} ms/step")
    pairs = [b / a for a, b in zip(off, on, strict=True)]
    print(f"ratio on/off per pair: {', '.join(f'{r:.3f}' for r in pairs)}")
    print(f"ratio on/off: {statistics.median(pairs):.3f} median of pairs, {min(on) / min(off):.3f} fastest "
          "(target <= 1.10)")


if __name__ == "__main__":
    main()
