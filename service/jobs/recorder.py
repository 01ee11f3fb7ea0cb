"""What one training step records: its loss, learning rate, global gradient norm, per-parameter
gradient statistics, validation loss when due, and at the steps the snapshot budget keeps a
snapshot of the gradients and parameters, handed to a writer (a store HistoryWriter) before the
optimizer's update.

    recorder = Recorder(params, optimizer, plan, evaluate)
    grad_norm = recorder.record(writer, step, loss)       # after backward, before optimizer.step()
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import numpy as np

import optim
from service.domain import STAT_SERIES, SnapshotBudget
from service.jobs.data import Dataset
from service.jobs.plan import Plan


class GradStats:
    """Per-parameter statistics over one flat gradient buffer, in four passes over the data.

    Parameters are consecutive segments of the buffer. Sums and sums of squares are BLAS dot
    products (with ones, and with the segment itself) on rows short enough to run on one thread
    (:func:`optim.sumsq`), except that a long segment's sum is one ``einsum``, faster there;
    neither depends on memory alignment or the thread count, so results are bit-identical across
    processes. Minima and maxima of all segments come from one ``reduceat`` call each.
    std is the population std (ddof=0) from Σg² − nḡ², recomputed from deviations in a second pass
    for any segment whose mean dominates (nḡ² > Σg²/2), where that difference would cancel.
    """

    def __init__(self, sizes: list[int]):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(self.sizes)])
        self.starts = bounds[:-1].astype(np.intp)
        self.slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._views: tuple[np.ndarray, list, list] | None = None  # segment views of the last buffer

    def _segments(self, g: np.ndarray) -> tuple[list[np.ndarray], list]:
        """Each segment's view of ``g`` and its :func:`optim.dot_rows` (kept: the recorder passes
        the same buffer every step)."""
        if self._views is None or self._views[0] is not g:
            views = [g[s] for s in self.slices]
            self._views = (g, views, [optim.dot_rows(v) for v in views])
        return self._views[1], self._views[2]

    def __call__(self, g: np.ndarray) -> tuple[np.ndarray, float]:
        """(P, 6) rows of STAT_SERIES (norm, mean, std, min, max, non-finite count); and the global
        L2 norm."""
        if g.dtype != np.float64:
            g = g.astype(np.float64)
        segments, rows = self._segments(g)
        out = np.empty((len(segments), len(STAT_SERIES)))
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf are results here, not errors
            moments = np.array(list(map(_moments, segments, rows, self.sizes.tolist())))
            np.sqrt(moments[:, 0], out=out[:, 0])
            out[:, 1:3] = moments[:, 1:]
            np.minimum.reduceat(g, self.starts, out=out[:, 3])
            np.maximum.reduceat(g, self.starts, out=out[:, 4])
            total = float(moments[:, 0].sum())
            if math.isfinite(total):
                out[:, 5] = 0.0  # a NaN or an infinity anywhere would make its square sum non-finite
            else:
                out[:, 5] = np.add.reduceat((~np.isfinite(g)).astype(np.float64), self.starts)
        return out, math.sqrt(total)


_ONES = np.ones(optim.DOT_ROW)


def _moments(v: np.ndarray, rows, n: int) -> tuple[float, float, float]:
    """Σv², mean and population std of one segment, in Python floats (a handful of operations on
    scalars costs less than as many NumPy calls on P-element arrays, the same IEEE results)."""
    if n <= optim.DOT_ROW:  # two single-threaded BLAS calls, cheaper to make than einsum's
        total, sq = float(np.dot(v, _ONES[:n])), float(np.dot(v, v))
    else:
        total, sq = float(np.einsum("i->", v)), optim.sumsq(v, rows)
    mean = total / n
    mean_sq = mean * total  # n·mean²
    if mean_sq > 0.5 * sq:  # Σv² − n·mean² would cancel: from the deviations instead
        dev = v - mean
        var = float(np.einsum("i,i->", dev, dev)) / n
    else:
        var = (sq - mean_sq) / n
    std = math.sqrt(var) if var > 0.0 else var if math.isnan(var) else 0.0
    return sq, mean, std


class Recorder:
    """Hands each step of a training run to a writer, reading the gradients where the optimizer
    keeps them. ``evaluate(dataset) -> (loss, accuracy)`` computes the validation figures."""

    def __init__(self, params: dict, optimizer: optim.Optimizer, plan: Plan,
                 evaluate: Callable[[Dataset], tuple[float, float | None]]):
        self.params = params
        self.names = list(params)
        self.optimizer = optimizer
        self.plan = plan
        self.evaluate = evaluate
        sizes = [p.data.size for p in params.values()]
        self.dtype = plan.dtype
        self.flat_grad = np.zeros(sum(sizes), dtype=self.dtype)  # used when the gradients lie elsewhere
        self.stats = GradStats(sizes)
        self._flat_views: tuple[list, np.ndarray] | None = None  # gradient views known to tile a buffer
        self._splits = np.cumsum(sizes)[:-1]  # where each parameter's segment of the flat buffer ends
        self.snapshots = snapshot_budget(plan, optimizer)
        self._spacing = (0, 0)  # (spacing, the step count it holds up to): keeps() asked once per doubling

    def keeps_snapshot(self, step: int) -> bool:
        """Whether step ``step`` stores a snapshot (see domain.SnapshotBudget)."""
        spacing, until = self._spacing
        if step >= until:
            spacing = self.snapshots.spacing(step + 1)
            self._spacing = (spacing, spacing * self.snapshots.capacity)
        return step % spacing == 0

    def flat_gradients(self) -> np.ndarray:
        """All gradients as one flat array in parameter order. After ``gather_grads`` the optimizer
        keeps them as views into its flat gradient buffer; when they are laid out there in our order
        that buffer is used as it is, else they are copied."""
        grads = [p.grad for p in self.params.values()]
        if self._flat_views is not None and all(map(operator.is_, grads, self._flat_views[0])):
            return self._flat_views[1]  # the same views as last step: the same buffer
        for base in self.optimizer.grad_buffers:
            if base.size == self.flat_grad.size and base.dtype == self.dtype \
                    and _laid_out_in_order(grads, base):
                self._flat_views = (grads, base)
                return base
        flat = [g.reshape(-1) if g is not None else np.zeros(p.data.size, self.dtype)
                for g, p in zip(grads, self.params.values(), strict=True)]
        np.concatenate(flat, out=self.flat_grad)
        return self.flat_grad

    def record(self, writer, step: int, loss: float) -> float:
        """Hand step ``step`` to the writer: scalars, per-parameter statistics, maybe a snapshot;
        return the global gradient norm. Runs before the optimizer step, which may clip the
        gradients in place."""
        plan = self.plan
        self.optimizer.gather_grads()  # gradients into the flat buffer, read from there
        g = self.flat_gradients()
        stats, grad_norm = self.stats(g)
        val_loss = val_acc = None
        if plan.val is not None and step % plan.spec.validation.every == 0:
            val_loss, val_acc = self.evaluate(plan.val)
        writer.add_step(step, loss, current_lr(self.optimizer), grad_norm, stats,
                        val_loss=val_loss, val_accuracy=val_acc)
        if self.keeps_snapshot(step):
            # views are enough: the writer encodes the bytes at once, before the update
            grads = np.split(g, self._splits)
            writer.add_snapshot(step, {n: gr.reshape(self.params[n].shape)
                                       for n, gr in zip(self.names, grads, strict=True)},
                                {n: p.data for n, p in self.params.items()})
        return grad_norm


def snapshot_budget(plan: Plan, optimizer: optim.Optimizer) -> SnapshotBudget:
    """The plan's budget in snapshots: each kept step may hold a snapshot (parameters and gradients)
    and a replay checkpoint (parameters and the optimizer's per-element state arrays)."""
    state = max((len(type(optimizer).state_keys(group)) for group in optimizer.param_groups), default=0)
    per_step = plan.n_params * plan.dtype.itemsize * (3 + state)
    return SnapshotBudget.of(plan.snapshot_every, plan.snapshot_budget, per_step)


def _laid_out_in_order(arrays: list, base: np.ndarray) -> bool:
    """True when every array is a C-contiguous view of ``base`` and they follow one another."""
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a is None or a.base is not base or not a.flags.c_contiguous \
                or a.__array_interface__["data"][0] != address:
            return False
        address += a.nbytes
    return True


def current_lr(optimizer) -> float:
    """The learning rate the optimizer's next step() will use."""
    for attr in ("current_lr", "lr"):
        value = getattr(optimizer, attr, None)
        if value is not None:
            return float(value() if callable(value) else value)
    return float(optimizer.param_groups[0]["lr"])
