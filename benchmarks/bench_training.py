"""What recording costs: the same training run with the book kept (every step's loss, lr, gradient
norm and per-parameter statistics, snapshots and checkpoints at their defaults, all written to
SQLite through the real store) against recording off, on a ~100k-parameter MLP.

    python benchmarks/bench_training.py [--rounds 30] [--chunk 250]

Five trainers of the same spec advance in turns of ``--chunk`` steps (~0.5 s) in one process:
recording off; recording off again (the control: its ratio to the first shows how far this
machine's noise alone moves a ratio); statistics computed every step but handed to a writer that
drops them (what the in-memory book-keeping costs); everything written to SQLite as a long job
writes it, by a writer process (service.store.writer_process; here from the start, in a real job after
GRADBOOK_WRITER_PROCESS_AFTER seconds); everything written to SQLite by the training process
itself, as a short job does. The store flushes every ``--chunk`` steps here (GRADBOOK_FLUSH_ROWS),
as often as its default 0.5 s does at this model's speed, so a turn ends just after a flush and a
real run's flush cadence is kept (with a flush every 0.5 s on top, turns ending mid-batch flushed
twice as often, which showed as 2-3% more cost). Each round runs the five in another order
(rotations, forwards and backwards), so a drift in machine speed favours none, and noise on the
shared machine hits the runs of a round alike. Printed per arm: the median over rounds of its time
over the "off" time (robust to a noisy spell, which spoils a round, not the summary) and the ratio
of the summed times. Target: at most 1.10 for everything written (by the writer process, as in a
job of this size).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from service.config import settings
from service.jobs.plan import make_plan
from service.jobs.recorder import GradStats
from service.jobs.spec import parse_spec
from service.jobs.trainer import Trainer
from service.store import Store


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


class NullWriter:
    """Takes a step's row and forgets it: the recording arm without the store."""

    pending = 0
    empty = True

    def add_step(self, *args, **kwargs) -> None:
        pass

    def add_snapshot(self, *args, **kwargs) -> None:
        pass

    def flush(self, checkpoint=None) -> None:
        return None

    def close(self) -> None:
        pass


class Runner:
    """A trainer that advances ``chunk`` steps at a time, recording into ``store`` (a Store, a
    NullWriter, or None for no recording); with ``parts``, the seconds the loop spends recording a
    step (of which statistics) and flushing."""

    def __init__(self, doc, store, parts: dict | None = None, background: bool = True):
        self.trainer = Trainer(make_plan(parse_spec(doc)))
        self.writer = store if isinstance(store, NullWriter) else None
        if isinstance(store, Store):
            job_id = store.create_job("bench", doc)
            store.set_param_names(job_id, self.trainer.names)
            store.transition(job_id, "running", reason="benchmark")
            after = settings().writer_process_after if background else None  # as run_job does
            self.writer = store.writer(job_id, self.trainer.names, background_after=after)
        if parts is not None:
            for key in ("recording a step", "  of it statistics", "store flushes"):
                parts.setdefault(key, 0.0)  # print in this order
            recorder = self.trainer.recorder
            recorder.record = _timed(recorder.record, parts, "recording a step")
            recorder.stats = _timed(recorder.stats, parts, "  of it statistics")
            self.writer.flush = _timed(self.writer.flush, parts, "store flushes")
        self.done = 0

    def advance(self, chunk: int) -> float:
        """Seconds for the next ``chunk`` steps (the last chunk ends with the final checkpoint)."""
        steps = itertools.count()
        t0 = time.perf_counter()
        outcome = self.trainer.run(self.writer, self.done, should_stop=lambda: next(steps) >= chunk)
        if outcome.status == "succeeded" and self.writer is not None:
            self.writer.close()  # run_job waits for the writer process's last write, so do we
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
    ap.add_argument("--rounds", type=int, default=30, help="turns of each trainer")
    ap.add_argument("--chunk", type=int, default=250, help="steps per turn and per flush")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    os.environ["GRADBOOK_FLUSH_ROWS"] = str(args.chunk)  # read by the trainer at each run
    os.environ["GRADBOOK_FLUSH_SECONDS"] = "1e9"
    os.environ["GRADBOOK_WRITER_PROCESS_AFTER"] = "1e-9"  # a long job's steady state from the start
    steps = args.rounds * args.chunk
    doc = spec(steps, args.batch)
    plan = make_plan(parse_spec(doc))
    print(f"MLP {plan.sizes}: {plan.n_params:,} parameters, batch {plan.batch_size}, Adam, {steps} steps "
          f"per trainer in turns of {args.chunk}, a flush each; snapshots every {plan.snapshot_every} steps, "
          f"checkpoints every {plan.checkpoint_every} steps but at most every {plan.checkpoint_seconds:g} s "
          "(the defaults), one at the end")
    stored, in_loop = "everything stored", "stored, in the loop"
    arms = {"recording off": None, "off again (control)": None, "statistics, not stored": NullWriter(),
            stored: None, in_loop: None}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(url=f"sqlite:///{Path(tmp) / 'bench.db'}")
        arms[stored] = arms[in_loop] = store
        for name, target in arms.items():  # warm-up: imports, BLAS threads, page cache
            Runner(spec(args.chunk, args.batch), target, background=name != in_loop).advance(args.chunk)
        runners = {name: Runner(doc, target, background=name != in_loop) for name, target in arms.items()}
        times: dict[str, list[float]] = {name: [] for name in arms}
        names = list(arms)  # each round in another order: rotations of the arms, forwards and backwards
        orders = [names[k:] + names[:k] for k in range(len(names))]
        orders += [order[::-1] for order in orders]
        for i in range(args.rounds):
            for name in orders[i % len(orders)]:
                times[name].append(runners[name].advance(args.chunk))
        parts: dict = {}
        timed = Runner(spec(4 * args.chunk, args.batch), store, parts)
        timed.advance(args.chunk)  # the writer process starts meanwhile
        while timed.writer.writer_process() is None:  # and is ready before the timed turns
            time.sleep(0.01)
        parts.update(dict.fromkeys(parts, 0.0))
        timed_seconds = sum(timed.advance(args.chunk) for _ in range(2))  # not the last: its final
        timed_parts = dict(parts)  # checkpoint comes once a job, not once every 500 steps
        timed.advance(args.chunk)
        store.close()
    per_stat, n = stats_only(doc)
    off = times["recording off"]
    for name, runs in times.items():
        ratios = [t / base for t, base in zip(runs, off, strict=True)]
        print(f"{name:24} {sum(runs) / steps * 1e3:6.3f} ms/step; vs off: {statistics.median(ratios):.3f} "
              f"median of rounds, {sum(runs) / sum(off):.3f} of the totals")
    per_step = 2 * args.chunk
    print(f"one more stored run, {timed_seconds / per_step * 1e3:.3f} ms/step, spent per step in "
          "(flushes: handing batches to the writer process):")
    for key, seconds in timed_parts.items():
        print(f"  {key:20} {seconds / per_step * 1e3:7.3f} ms")
    print(f"statistics alone over {n:,} gradients, out of the loop: {per_stat * 1e3:.3f} ms/step")
    print("target: everything stored <= 1.10 x recording off")


if __name__ == "__main__":
    main()
