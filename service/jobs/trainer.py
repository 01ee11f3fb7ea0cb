"""The training loop: minibatches, forward, backward, the recorder (recorder.py: every step's loss,
learning rate, gradient norm and per-parameter gradient statistics, snapshots every K steps), the
optimizer's update, flushes and resumable checkpoints.

Step ``s`` records the loss and gradients at the parameters *before* the s-th update. Everything
random is a pure function of the spec (initialisation seed, shuffle seed and step number), so the
same spec gives a bit-identical history, and a run resumed from a checkpoint continues exactly as
the uninterrupted run would have.

    trainer = Trainer(make_plan(parse_spec(doc)))
    outcome = trainer.run(writer)        # writer: a store HistoryWriter, or None to record nothing

``Trainer`` knows nothing of job states or databases: service.runtime's run_job drives it for a
stored job (status changes, heartbeat, resume from the last checkpoint).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import autodiff as ad
import optim
from autodiff import nn
from service.config import settings
from service.domain import Checkpoint
from service.jobs.plan import Plan
from service.jobs.recorder import Recorder
from service.jobs.spec import LOSS_FUNCTIONS


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
        self.optimizer = optim.create(spec.optimizer.name, self.params,
                                      **spec.optimizer.hyperparameters(plan.total_steps))
        self.loss_fn = LOSS_FUNCTIONS[spec.loss]
        self.recorder = Recorder(self.params, self.optimizer, plan, self.evaluate)
        self._train = plan.train
        self._full_batch = plan.batch_size >= plan.train.x.shape[0]
        self._epoch_order: tuple[int, np.ndarray | None] = (-1, None)  # the current epoch's row order

    # --- pieces replay.py uses too (a step's graph and its numerical check)

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
        elif kind == "binary_cross_entropy_with_logits":
            acc = float(np.mean((out.data > 0) == (y > 0.5)))
        else:
            acc = None
        return loss, acc

    # --- the loop

    def run(self, writer=None, start: int = 0, *, end: int | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_flush: Callable[[int, float | None], None] | None = None,
            on_tick: Callable[[int, float], None] | None = None) -> Outcome:
        """Train from step ``start`` to the plan's end. ``writer`` (a store HistoryWriter, or None
        to record nothing) receives every step; it is flushed every ``flush_rows`` rows or
        ``flush_seconds``, and with a checkpoint every ``checkpoint_every`` steps (no more often than
        ``checkpoint_seconds`` unless the spec set checkpoint_every) and at the end.
        ``end``: stop before that step instead (a replay; no final checkpoint then).
        ``on_flush(steps_done, loss)`` runs after each flush (which writes the job's heartbeat),
        ``on_tick(steps_done, loss)`` at most ten times a second.
        Exceptions propagate after pending rows are flushed."""
        plan, limits, optimizer, recorder = self.plan, settings(), self.optimizer, self.recorder
        total = plan.total_steps
        end = total if end is None else end
        record = writer is not None
        options = optimizer.options
        # The recorder's global norm spares the optimizer its own pass over the gradients, unless it
        # clips: then the norm it computes itself decides the clipping, in every run alike.
        share_norm = (options["clip_grad_norm"] is None and options["clip_grad_value"] is None
                      and optimizer.accepts_grad_norm)
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
                for step in range(start, end):
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
                    loss_value = float(J.data)
                    grad_norm = recorder.record(writer, step, loss_value) if record else None

                    if not np.isfinite(loss_value):
                        done = step + record
                        what = "nan" if np.isnan(loss_value) else "inf" if loss_value > 0 else "-inf"
                        return stop("failed", error=f"diverged at step {step}: loss is {what}")
                    try:
                        if share_norm:
                            optimizer.step(grad_norm=grad_norm)
                        else:
                            optimizer.step()
                    except optim.NonFiniteGradientError as e:
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
                if record and end == total and not flush(self.checkpoint(total)):
                    return Outcome("cancelled", done, reason=f"cancelled at step {total}")
                return Outcome("succeeded", done)
            except BaseException:
                if record:
                    with contextlib.suppress(Exception):  # the original error matters more
                        writer.flush()
                raise
