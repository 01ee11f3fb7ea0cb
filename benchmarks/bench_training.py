"""What recording costs: the same training run with the book kept (every step's loss, lr, gradient
norm and per-parameter statistics, snapshots and checkpoints at their defaults, all written to
SQLite through the real store) against recording off, on a ~100k-parameter MLP.

    python benchmarks/bench_training.py [--chunks 24] [--chunk 250]

Two trainers of the same spec, one recording and one not, advance in alternating chunks of
``--chunk`` steps (0.5 s, the store's flush interval), in one process: off, on, on, off, off, on
... so a drift in machine speed favours neither, and noise on the shared machine hits the two runs
of a pair alike. Printed: the median over pairs of on/off (robust to a noisy spell, which spoils a
pair, not the summary) and the ratio of the summed times. Target: at most 1.10.
"""

from __future__ import annotations

import argparse
import itertools
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


class Runner:
    """A trainer that advances ``chunk`` steps at a time, recording into ``store`` or not; with
    ``parts``, the seconds the loop spends recording a step (of which statistics) and flushing."""

    def __init__(self, doc, store: Store | None, parts: dict | None = None):
        self.trainer = Trainer(make_plan(parse_spec(doc)))
        self.writer = None
        if store is not None:
            job_id = store.create_job("bench", doc)
            store.set_param_names(job_id, self.trainer.names)
            store.transition(job_id, "running", reason="benchmark")
            self.writer = store.writer(job_id, self.trainer.names)
        if parts is not None:
            for key in ("recording a step", "  of it statistics", "store flushes"):
                parts.setdefault(key, 0.0)  # print in this order
            self.trainer._record = _timed(self.trainer._record, parts, "recording a step")
            self.trainer.stats = _timed(self.trainer.stats, parts, "  of it statistics")
            self.writer.flush = _timed(self.writer.flush, parts, "store flushes")
        self.done = 0

    def advance(self, chunk: int) -> float:
        """Seconds for the next ``chunk`` steps (the last chunk ends with the final checkpoint)."""
        steps = itertools.count()
        t0 = time.perf_counter()
        outcome = self.trainer.run(self.writer, self.done, should_stop=lambda: next(steps) >= chunk)
        seconds = time.perf_counter() - t0
        assert outcome.status in ("succeeded", "cancelled"), outcome
        assert outcome.steps_done == self.done + chunk, outcome
        self.done = outcome.steps_done
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
    ap.add_argument("--chunks", type=int, default=24, help="chunks per trainer")
    ap.add_argument("--chunk", type=int, default=250, help="steps per chunk")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    steps = args.chunks * args.chunk
    doc = spec(steps, args.batch)
    plan = make_plan(parse_spec(doc))
    print(f"MLP {plan.sizes}: {plan.n_params:,} parameters, batch {plan.batch_size}, Adam, {steps} steps "
          f"per trainer in chunks of {args.chunk}; snapshots every {plan.snapshot_every} steps, "
          f"checkpoints every {plan.checkpoint_every} steps but at most every {plan.checkpoint_seconds:g} s "
          "(the defaults), one at the end")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(url=f"sqlite:///{Path(tmp) / 'bench.db'}")
        warm_off, warm_on = Runner(spec(2 * args.chunk), None), Runner(spec(2 * args.chunk), store)
        for runner in (warm_off, warm_on, warm_off, warm_on):  # imports, BLAS threads, page cache
            runner.advance(args.chunk)
        off_runner, on_runner = Runner(doc, None), Runner(doc, store)
        off, on = [], []
        for i in range(args.chunks):
            if i % 2 == 0:
                off.append(off_runner.advance(args.chunk))
                on.append(on_runner.advance(args.chunk))
            else:
                on.append(on_runner.advance(args.chunk))
                off.append(off_runner.advance(args.chunk))
        parts: dict = {}
        timed = Runner(spec(4 * args.chunk, args.batch), store, parts)
        timed_seconds = sum(timed.advance(args.chunk) for _ in range(4))
        store.close()
    per_stat, n = stats_only(doc)
    for label, runs in (("recording off", off), ("recording on ", on)):
        print(f"{label}: {sum(runs) / steps * 1e3:7.3f} ms/step overall, {min(runs) / args.chunk * 1e3:7.3f} "
              "in the fastest chunk")
    per_step = 4 * args.chunk
    print(f"one more recorded run, {timed_seconds / per_step * 1e3:.3f} ms/step, spent per step in:")
    for key, seconds in parts.items():
        print(f"  {key:20} {seconds / per_step * 1e3:7.3f} ms")
    print(f"statistics alone over {n:,} gradients, out of the loop: {per_stat * 1e3:.3f} ms/step")
    pairs = [b / a for a, b in zip(off, on, strict=True)]
    print(f"ratio on/off per pair: {', '.join(f'{r:.3f}' for r in pairs)}")
    print(f"ratio on/off: {statistics.median(pairs):.3f} median of pairs, {sum(on) / sum(off):.3f} of the "
          "totals (target <= 1.10)")


if __name__ == "__main__":
    main()
