"""Check a recorded gradient by the lecture's other method: bump each parameter and re-evaluate.

From the parameter snapshot of step s and that step's batch, the numerical gradient
(J(θ + ε e_k) − J(θ − ε e_k)) / 2ε is computed for every parameter entry k in float64, and compared
with the backprop gradient recorded at step s. Backprop costs one forward and one backward pass;
bumping costs two forwards per parameter, which the timings in the report make visible.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

import autodiff as ad

from .graphview import snapshot_at
from .settings import settings

REL_FLOOR = 1e-8  # denominators below this are treated as this: both gradients are then ~0


class VerifyError(ValueError):
    """The step cannot be verified (no snapshot there, model too large, unknown job)."""


@dataclass
class VerifyReport:
    job_id: int
    step: int
    n_params: int
    eps: float
    max_rel_error: float            # max over all entries of |backprop − numerical| / max(|b|, |n|, 1e-8)
    max_abs_error: float            # max |backprop − numerical|: bumping's own error is ~1e-10 at eps 1e-6,
    worst_param: str                # which dominates the relative error of entries far below the rest
    per_param: dict                 # name -> largest relative error of that parameter
    backprop_seconds: float         # one forward and backward pass at the snapshot
    numerical_seconds: float        # 2 × n_params forward passes
    forward_passes: int
    recorded_vs_replayed: float     # max |recorded − recomputed backprop|: 0 when the history is exact
    kink_inputs: int                # ReLU inputs within eps of 0, where bumping sees a slope of about 1/2
                                    # and backprop the subgradient: errors there are not backprop's

    def to_dict(self) -> dict:
        return asdict(self)


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), REL_FLOOR)


def verify_step(store, job_id: int, step: int, eps: float = 1e-6, resolve_dataset=None) -> VerifyReport:
    trainer, record = snapshot_at(store, job_id, step, VerifyError, resolve_dataset, with_gradients=True)
    limit = settings().verify_max_params
    if trainer.plan.n_params > limit:
        raise VerifyError(f"the model has {trainer.plan.n_params:,} parameters; bumping each needs "
                          f"{2 * trainer.plan.n_params:,} forward passes, over the limit of {limit:,} "
                          "parameters (GRADBOOK_VERIFY_MAX_PARAMS)")
    names = trainer.names
    snapshot = {n: np.asarray(record["params"][n]) for n in names}
    recorded = {n: np.asarray(record["gradients"][n]) for n in names}
    x, y = trainer.batch(step)

    # backprop, replayed at the snapshot in the job's own dtype (timed; also checks the record)
    trainer.set_params(snapshot)
    for p in trainer.params.values():
        p.grad = None
    t0 = time.perf_counter()
    trainer.loss(x, y).backward()
    backprop_seconds = time.perf_counter() - t0
    replay = max(float(np.max(np.abs(trainer.params[n].grad - recorded[n]), initial=0.0)) for n in names)

    # bumping, in float64 on the same batch
    x64 = x.astype(np.float64)
    y64 = y if y.dtype.kind in "iu" else y.astype(np.float64)
    inputs = [snapshot[n].astype(np.float64) for n in names]

    def loss_of(*tensors):
        return trainer.loss(x64, y64, params=dict(zip(names, tensors, strict=True)))

    with ad.trace() as tr:  # only recorded ops are traced: the inputs must require gradients
        loss_of(*[ad.Tensor(a, requires_grad=True) for a in inputs])
    kinks = sum(int(np.count_nonzero(np.abs(tr.graph.nodes[node.inputs[0]].value) <= eps))
                for node in tr.graph.nodes if node.op in ("relu", "leaky_relu"))

    t0 = time.perf_counter()
    numeric = ad.numerical_grad(loss_of, inputs, eps)
    numerical_seconds = time.perf_counter() - t0

    numeric = dict(zip(names, numeric, strict=True))
    per_param = {n: float(np.max(relative_error(recorded[n], numeric[n]), initial=0.0)) for n in names}
    worst = max(per_param, key=per_param.get)
    abs_error = max(float(np.max(np.abs(recorded[n] - numeric[n]), initial=0.0)) for n in names)
    return VerifyReport(job_id=job_id, step=step, n_params=trainer.plan.n_params, eps=eps,
                        max_rel_error=per_param[worst], max_abs_error=abs_error, worst_param=worst,
                        per_param=per_param,
                        backprop_seconds=backprop_seconds, numerical_seconds=numerical_seconds,
                        forward_passes=2 * trainer.plan.n_params, recorded_vs_replayed=replay,
                        kink_inputs=kinks)
