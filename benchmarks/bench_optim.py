"""Optimizer step speed, measured side by side with hand-written NumPy in the same run.

1. Adam over 1e6 float64 parameters split into 100 tensors, against the best hand-written in-place
   NumPy Adam on one flat 1e6 buffer (the faster of a plain version and a cache-blocked version,
   both with the fewest ufunc passes we could write). Target: ratio <= 1.3.
2. Fixed overhead of one step() for a model of four small tensors (an MLP 3-4-2), in microseconds.
   Target: <= 30 us.

Rounds alternate between contenders, each round timing every contender several times. Ratios are
printed twice: from the median round (what a typical moment on this machine gives) and from each
contender's best round (least disturbed by other processes on a shared machine).
Run: .venv/bin/python benchmarks/bench_optim.py
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

import optim
from autodiff import Tensor

N, TENSORS = 1_000_000, 100
B1, B2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


class FlatAdam:
    """Hand-written in-place Adam on one flat buffer: 12 ufunc passes, constants folded."""

    def __init__(self, p, g, block=None):
        self.p, self.g = p, g
        self.m, self.v, self.tmp = np.zeros_like(p), np.zeros_like(p), np.empty_like(p)
        self.t = 0
        n = p.size
        block = block or n
        self.blocks = [tuple(a[i:i + block] for a in (self.p, self.g, self.m, self.v, self.tmp))
                       for i in range(0, n, block)]

    def step(self):
        self.t += 1
        bc1, bc2_sqrt = 1 - B1**self.t, math.sqrt(1 - B2**self.t)
        scale = -LR * bc2_sqrt / bc1
        eps = EPS * bc2_sqrt
        for p, g, m, v, tmp in self.blocks:
            m *= B1
            np.multiply(g, 1 - B1, out=tmp)
            m += tmp
            v *= B2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - B2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= scale
            p += tmp


def _median_us(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def bench_large(rounds=9, reps=5):
    rng = np.random.default_rng(0)
    sizes = [N // TENSORS] * TENSORS
    params = {f"p{i}": Tensor(rng.standard_normal(s), requires_grad=True) for i, s in enumerate(sizes)}
    grads = rng.standard_normal(N) * 1e-2
    contenders = {}
    for label, opts in (("optim.Adam, nonfinite='ignore'", {"nonfinite": "ignore"}),
                        ("optim.Adam, defaults (NaN check)", {})):
        ps = {k: Tensor(v.data.copy(), requires_grad=True) for k, v in params.items()}
        opt = optim.Adam(ps, lr=LR, **opts)
        opt.zero_grad()
        a = 0
        for t in ps.values():  # gradients land in the optimizer's views, as a backward would
            t.grad[...] = grads[a:a + t.size]
            a += t.size
        contenders[label] = opt.step
    flat_plain = FlatAdam(rng.standard_normal(N), grads.copy())
    flat_blocked = FlatAdam(rng.standard_normal(N), grads.copy(), block=1 << 16)
    contenders["hand-written flat Adam"] = flat_plain.step
    contenders["hand-written flat Adam, cache-blocked"] = flat_blocked.step
    results = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, fn in contenders.items():
            results[k].append(_median_us(fn, reps))
    med = {k: statistics.median(v) for k, v in results.items()}
    low = {k: min(v) for k, v in results.items()}
    hand = ("hand-written flat Adam", "hand-written flat Adam, cache-blocked")
    best_med, best_low = min(med[k] for k in hand), min(low[k] for k in hand)
    print(f"Adam step, {N:,} float64 parameters in {TENSORS} tensors ({rounds} rounds x {reps} steps)")
    print(f"  {'':42s} {'median':>8s}      ratio {'best':>8s}      ratio")
    for k in contenders:
        print(f"  {k:42s} {med[k] / 1000:8.2f} ms  x{med[k] / best_med:5.2f} "
              f"{low[k] / 1000:8.2f} ms  x{low[k] / best_low:5.2f}")
    ours = "optim.Adam, nonfinite='ignore'"
    ratio = low[ours] / best_low
    print(f"  optim / best hand-written: {med[ours] / best_med:.2f} (median), {ratio:.2f} (best rounds); "
          "target <= 1.3")
    return ratio


def _per_call_us(fn, steps, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - t0) / steps * 1e6)
    return min(times), statistics.median(times)


def bench_overhead(steps=4000):
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (4,), (4, 2), (2,)]
    print(f"Fixed overhead per step, MLP 3-4-2 ({len(shapes)} tensors, 22 parameters), "
          f"best / median of 5 runs of {steps} steps")
    worst = 0.0
    for label, name, opts in (("SGD momentum", "sgd", dict(lr=1e-3, momentum=0.9)),
                              ("Adam", "adam", dict(lr=1e-3)),
                              ("Adam, nonfinite='ignore'", "adam", dict(lr=1e-3, nonfinite="ignore")),
                              ("Adam, warmup_cosine + clip_grad_norm", "adam",
                               dict(lr=1e-3, schedule={"name": "warmup_cosine", "warmup_steps": 10,
                                                       "total_steps": 10**9}, clip_grad_norm=1.0))):
        ps = [Tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
        opt = optim.create(name, ps, **opts)
        opt.zero_grad()
        for t in ps:
            t.grad[...] = rng.standard_normal(t.shape) * 1e-3
        for _ in range(200):
            opt.step()
        best, median = _per_call_us(opt.step, steps)
        worst = max(worst, best)
        print(f"  {label:42s} {best:6.1f} / {median:6.1f} us per step")
    best, median = _per_call_us(opt.zero_grad, steps)
    print(f"  {'zero_grad()':42s} {best:6.1f} / {median:6.1f} us")
    print(f"  slowest configuration: {worst:.1f} us (best run; target <= 30)")
    return worst


if __name__ == "__main__":
    bench_large()
    bench_overhead()
