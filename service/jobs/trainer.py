"""The training loop and its book-keeping: every step's loss, learning rate, gradient norm and
per-parameter gradient statistics, snapshots every K steps, resumable checkpoints.

Step ``s`` records the loss and gradients at the parameters *before* the s-th update. Everything
random is a pure function of the spec (initialisation seed, shuffle seed and step number), so the
same spec gives a bit-identical history, and a run resumed from a checkpoint continues exactly as
the uninterrupted run would have.

    status = run_job(store, job_id)                       # what the CLI and the REST workers call
    status = run_job(store, job_id, resume=True)          # continue an interrupted job

``Trainer`` is the loop without the job-state bookkeeping (benchmarks and tests use it directly).
"""

from __future__ import annotations

import contextlib
import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import autodiff as ad
import optim
from autodiff import nn
from optim.errors import NonFiniteGradientError
from optim.kernels import DOT_ROW, dot_rows, sumsq
from service.config import settings
from service.domain import Checkpoint
from service.jobs.spec import Plan

STAT_COLUMNS = ("norm", "mean", "std", "min", "max", "nonfinite")


@dataclass
class Progress:
    job_id: int | None
    steps_done: int
    total_steps: int
    loss: float | None


@dataclass
class Outcome:
    status: str            # succeeded, failed, cancelled or interrupted
    steps_done: int
    error: str | None = None
    reason: str | None = None


# --- gradient statistics ---------------------------------------------------------------------------


class GradStats:
    """Per-parameter statistics over one flat gradient buffer, in four passes over the data.

    Parameters are consecutive segments of the buffer. Sums and sums of squares are BLAS dot
    products (with ones, and with the segment itself) on rows short enough to run on one thread
    (:func:`optim.kernels.sumsq`), except that a long segment's sum is one ``einsum``, faster there;
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
        """Each segment's view of ``g`` and its :func:`dot_rows` (kept: the trainer passes the same
        buffer every step)."""
        if self._views is None or self._views[0] is not g:
            views = [g[s] for s in self.slices]
            self._views = (g, views, [dot_rows(v) for v in views])
        return self._views[1], self._views[2]

    def __call__(self, g: np.ndarray) -> tuple[np.ndarray, float]:
        """(P, 6) rows of norm, mean, std, min, max, non-finite count; and the global L2 norm."""
        if g.dtype != np.float64:
            g = g.astype(np.float64)
        segments, rows = self._segments(g)
        out = np.empty((len(segments), 6))
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


_ONES = np.ones(DOT_ROW)


def _moments(v: np.ndarray, rows, n: int) -> tuple[float, float, float]:
    """Σv², mean and population std of one segment, in Python floats (a handful of operations on
    scalars costs less than as many NumPy calls on P-element arrays, the same IEEE results)."""
    if n <= DOT_ROW:  # two single-threaded BLAS calls, cheaper to make than einsum's
        total, sq = float(np.dot(v, _ONES[:n])), float(np.dot(v, v))
    else:
        total, sq = float(np.einsum("i->", v)), sumsq(v, rows)
    mean = total / n
    mean_sq = mean * total  # n·mean²
    if mean_sq > 0.5 * sq:  # Σv² − n·mean² would cancel: from the deviations instead
        dev = v - mean
        var = float(np.einsum("i,i->", dev, dev)) / n
    else:
        var = (sq - mean_sq) / n
    std = math.sqrt(var) if var > 0.0 else var if math.isnan(var) else 0.0
    return sq, mean, std


# --- optimizer state <-> checkpoint ------------------------------------------------------------------


def split_arrays(obj, arrays: dict, prefix: str):
    """Replace every ndarray in a nested state by a reference into ``arrays``; the rest stays JSON.
    Tuples become lists, NumPy scalars Python numbers, non-finite floats tagged strings."""
    if isinstance(obj, np.ndarray):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = np.ascontiguousarray(obj).copy()
        return {"__array__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[split_arrays(k, arrays, prefix), split_arrays(v, arrays, prefix)]
                             for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [split_arrays(v, arrays, prefix) for v in obj]}
    if isinstance(obj, list):
        return [split_arrays(v, arrays, prefix) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return {"__float__": repr(obj)}
    return obj


def join_arrays(meta, arrays: dict):
    """Inverse of :func:`split_arrays`."""
    if isinstance(meta, dict):
        if "__array__" in meta:
            return np.array(arrays[meta["__array__"]], copy=True)
        if "__dict__" in meta:
            return {join_arrays(k, arrays): join_arrays(v, arrays) for k, v in meta["__dict__"]}
        if "__tuple__" in meta:
            return tuple(join_arrays(v, arrays) for v in meta["__tuple__"])
        if "__float__" in meta:
            return float(meta["__float__"])
    if isinstance(meta, list):
        return [join_arrays(v, arrays) for v in meta]
    return meta


# --- the loop ------------------------------------------------------------------------------------------


class Trainer:
    """Model, optimizer and data of one plan, and the loop that trains and records them."""

    def __init__(self, plan: Plan):
        self.plan = plan
        spec = plan.spec
        self.dtype = plan.dtype
        self.model = nn.MLP(plan.sizes, [layer.activation for layer in spec.model.layers],
                            init=spec.model.init.scheme, seed=spec.model.init.seed, dtype=self.dtype,
                            values=spec.model.init.values())
        self.params: dict[str, ad.Tensor] = self.model.parameters()
        self.names = list(self.params)
        self.optimizer = optim.create(spec.optimizer.name, self.params, **spec.optimizer.hyperparameters())
        self.loss_fn = nn.LOSSES[spec.loss]
        sizes = [p.data.size for p in self.params.values()]
        self.flat_grad = np.zeros(sum(sizes), dtype=self.dtype)
        self.stats = GradStats(sizes)
        self._train = plan.train
        self._full_batch = plan.batch_size >= plan.train.x.shape[0]
        self._epoch_order: tuple[int, np.ndarray | None] = (-1, None)  # the current epoch's row order
        self._flat_views: tuple[list, np.ndarray] | None = None  # gradient views known to tile a buffer
        self._splits = np.cumsum(sizes)[:-1]  # where each parameter's segment of the flat buffer ends

    # --- pieces also used by verify and graphview

    def batch_indices(self, step: int) -> np.ndarray | None:
        """Rows of step ``step`` (None: all of them). Epoch e's order is a permutation drawn from
        a generator seeded with (seed, e): a pure function of the step, so resuming needs no RNG
        state beyond the step number."""
        if self._full_batch:
            return None
        plan = self.plan
        epoch, k = divmod(step, plan.batches_per_epoch)
        if self._epoch_order[0] != epoch:
            n = plan.train.x.shape[0]
            order = np.random.default_rng([plan.spec.seed, epoch]).permutation(n) if plan.spec.shuffle \
                else np.arange(n)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1][k * plan.batch_size:(k + 1) * plan.batch_size]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.batch_indices(step)
        if idx is None:
            return self._train.x, self._train.y
        return self._train.x[idx], self._train.y[idx]

    def target(self, y):
        """Targets as the loss takes them: integer labels stay arrays, the rest become tensors."""
        return y if self.plan.spec.loss == "cross_entropy" else ad.Tensor(y, name="y")

    def loss(self, x, y, params: dict | None = None) -> ad.Tensor:
        """The loss J of the model on (x, y); ``params`` (name -> Tensor) swaps in other parameter
        tensors for this one evaluation (numerical differentiation bumps copies, not ours)."""
        if params is None:
            return self.loss_fn(self.model(ad.Tensor(x, name="x")), self.target(y))
        self._use(params)
        try:
            return self.loss_fn(self.model(ad.Tensor(x, name="x")), self.target(y))
        finally:
            self._use(self.params)

    def _use(self, params: dict) -> None:
        for layer in self.model.layers:
            layer.w, layer.b = params[f"w{layer.index}"], params[f"b{layer.index}"]

    def set_params(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite parameter values in place (the optimizer may hold views of them)."""
        for name, p in self.params.items():
            p.data[...] = values[name]

    # --- checkpoints

    def checkpoint(self, step: int) -> Checkpoint:
        """Parameters, optimizer state and where the shuffling stands, to continue at ``step``."""
        arrays = {f"param.{name}": p.data.copy() for name, p in self.params.items()}
        state = split_arrays(self.optimizer.state_dict(), arrays, "optim.")
        meta = {"format": 1, "step": step, "optimizer": state,
                "shuffle": {"seed": self.plan.spec.seed, "epoch": step // self.plan.batches_per_epoch,
                            "batch": step % self.plan.batches_per_epoch,
                            "rule": "permutation of default_rng([seed, epoch])"}}
        return Checkpoint(step=step, arrays=arrays, meta=meta)

    def restore(self, checkpoint) -> int:
        """Load parameters and optimizer state; return the step to continue from."""
        self.set_params({name: checkpoint.arrays[f"param.{name}"] for name in self.names})
        self.optimizer.load_state_dict(join_arrays(checkpoint.meta["optimizer"], checkpoint.arrays))
        return int(checkpoint.step)

    # --- evaluation

    def evaluate(self, data) -> tuple[float, float | None]:
        """Validation loss and accuracy (None for regression losses)."""
        with ad.no_grad():
            out = self.model(ad.Tensor(data.x))
            loss = float(self.loss_fn(out, self.target(data.y)).data)
        y, kind = data.y, self.plan.spec.loss
        if kind == "cross_entropy":
            acc = float(np.mean(np.argmax(out.data, axis=1) == y))
        elif kind == "binary_cross_entropy":
            acc = float(np.mean((out.data > 0) == (y > 0.5)))
        else:
            acc = None
        return loss, acc

    # --- the loop

    def gradients_into_flat(self) -> np.ndarray:
        """All gradients as one flat array in parameter order. The optimizer keeps gradients as
        views into one flat buffer (gather_grads points .grad there); when they are laid out in our
        order that buffer is used as it is, else they are copied."""
        grads = [p.grad for p in self.params.values()]
        if self._flat_views is not None and all(map(operator.is_, grads, self._flat_views[0])):
            return self._flat_views[1]  # the same views as last step: the same buffer
        base = grads[0].base if grads[0] is not None else None
        if (base is not None and base.ndim == 1 and base.size == self.flat_grad.size
                and base.dtype == self.dtype and _laid_out_in_order(grads, base)):
            self._flat_views = (grads, base)
            return base
        flat = [g.reshape(-1) if g is not None else np.zeros(p.data.size, self.dtype)
                for g, p in zip(grads, self.params.values(), strict=True)]
        np.concatenate(flat, out=self.flat_grad)
        return self.flat_grad

    def run(self, writer=None, start: int = 0, *, should_stop: Callable[[], bool] | None = None,
            on_flush: Callable[[int, float | None], None] | None = None,
            on_tick: Callable[[int, float], None] | None = None) -> Outcome:
        """Train from step ``start`` to the plan's end. ``writer`` (a store HistoryWriter, or None
        to record nothing) receives every step; it is flushed every ``flush_rows`` rows or
        ``flush_seconds``, and with a checkpoint every ``checkpoint_every`` steps (no more often than
        ``checkpoint_seconds`` unless the spec set checkpoint_every) and at the end.
        ``on_flush(steps_done, loss)`` runs after each flush (which writes the job's heartbeat),
        ``on_tick(steps_done, loss)`` at most ten times a second.
        Exceptions propagate after pending rows are flushed."""
        plan, limits, optimizer = self.plan, settings(), self.optimizer
        total = plan.total_steps
        record = writer is not None
        options = optimizer.options
        # The recorder's global norm spares the optimizer its own pass over the gradients, unless it
        # clips: then the norm it computes itself decides the clipping, in every run alike.
        # (Only through the base class's step(): a plug-in may override it without the keyword.)
        share_norm = (options["clip_grad_norm"] is None and options["clip_grad_value"] is None
                      and type(optimizer).step is optim.Optimizer.step)
        last_flush = last_tick = last_checkpoint = time.monotonic()
        loss_value: float | None = None
        done = start  # steps recorded (and updates made) so far

        def flush(checkpoint=None) -> bool:
            """Write what is buffered; False when the job was ended from outside (cancelled)."""
            nonlocal last_flush
            status = writer.flush(checkpoint)
            last_flush = time.monotonic()
            if on_flush is not None:
                on_flush(done, loss_value)
            return status in (None, "running")

        def stop(status: str, error: str | None = None, reason: str | None = None) -> Outcome:
            if record and not writer.empty:  # right after a flush there is nothing left to write
                flush()
            return Outcome(status, done, error=error, reason=reason)

        def cancelled(step: int) -> Outcome:
            return Outcome("cancelled", done, reason=f"cancelled at step {step}")

        # overflow and NaN are outcomes the loop records (and ends on), not warnings to print
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                for step in range(start, total):
                    if should_stop is not None and should_stop():
                        return stop("cancelled", reason=f"cancelled at step {step}")
                    if record and step % plan.checkpoint_every == 0 and step > start \
                            and time.monotonic() - last_checkpoint >= plan.checkpoint_seconds:
                        last_checkpoint = time.monotonic()
                        if not flush(self.checkpoint(step)):
                            return cancelled(step)

                    x, y = self.batch(step)
                    # Backward's arrays become the gradients, copied into the optimizer's flat buffer
                    # once (filling that with zeros to add into it cost ~3% of a step more).
                    optimizer.zero_grad(set_to_none=True)
                    J = self.loss(x, y)
                    J.backward()
                    if record:
                        optimizer.gather_grads()  # the recorder reads them from the flat buffer
                    loss_value = float(J.data)
                    grad_norm = self._record(writer, step, loss_value) if record else None

                    if not np.isfinite(loss_value):
                        done = step + record
                        what = "nan" if np.isnan(loss_value) else "inf" if loss_value > 0 else "-inf"
                        return stop("failed", error=f"diverged at step {step}: loss is {what}")
                    try:
                        if share_norm:
                            optimizer.step(grad_norm=grad_norm)
                        else:
                            optimizer.step()
                    except NonFiniteGradientError as e:
                        done = step + record
                        which = ", ".join(e.names) or "a parameter"
                        return stop("failed", error=f"diverged at step {step}: gradient of {which} "
                                                    "is not finite")
                    done = step + 1

                    now = time.monotonic()
                    if record and (now - last_flush >= limits.flush_seconds
                                   or writer.pending >= limits.flush_rows) and not flush():
                        return cancelled(done)
                    if on_tick is not None and now - last_tick >= 0.1:
                        last_tick = now
                        on_tick(done, loss_value)
                if record and not flush(self.checkpoint(total)):
                    return Outcome("cancelled", done, reason=f"cancelled at step {total}")
                return Outcome("succeeded", done)
            except BaseException:
                if record:
                    with contextlib.suppress(Exception):  # the original error matters more
                        writer.flush()
                raise

    def _record(self, writer, step: int, loss_value: float) -> float:
        """Hand step ``step`` to the writer: scalars, per-parameter statistics, maybe a snapshot;
        return the global gradient norm. Runs before the optimizer step, which may clip the
        gradients in place."""
        plan = self.plan
        g = self.gradients_into_flat()
        stats, grad_norm = self.stats(g)
        val_loss = val_acc = None
        if plan.val is not None and step % plan.spec.validation.every == 0:
            val_loss, val_acc = self.evaluate(plan.val)
        writer.add_step(step, loss_value, current_lr(self.optimizer), grad_norm, stats,
                        val_loss=val_loss, val_accuracy=val_acc)
        if step % plan.snapshot_every == 0:
            # views are enough: the writer encodes the bytes at once, before the update
            grads = np.split(g, self._splits)
            writer.add_snapshot(step, {n: gr.reshape(self.params[n].shape)
                                       for n, gr in zip(self.names, grads, strict=True)},
                                {n: p.data for n, p in self.params.items()})
        return grad_norm


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
