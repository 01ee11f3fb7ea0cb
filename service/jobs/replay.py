"""A recorded step replayed: its computation graph, and the numerical check of its gradient.

The graph is the lecture's diagram, every node with its value and derivative: for a preset, the
initial parameters at step 0; for a job, the parameters of a recorded snapshot and the very
minibatch that step used, so its output J equals the recorded loss.

The check is the lecture's other method: from the same snapshot and batch, the numerical gradient
(J(θ + ε e_k) − J(θ − ε e_k)) / 2ε is computed for every parameter entry k in float64 and compared
with the backprop gradient recorded at step s. Backprop costs one forward and one backward pass;
bumping costs two forwards per parameter, which the timings in the report make visible.

The store is passed in by the caller: this module reads snapshots through it and keeps no database
of its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

import autodiff as ad
from service.config import settings
from service.jobs import presets
from service.jobs.plan import make_plan
from service.jobs.spec import parse_spec
from service.jobs.trainer import Trainer


class GraphError(ValueError):
    """The graph cannot be shown (too large, no snapshot at that step, unknown job)."""


def nearest_snapshots(store, job_id: int, step: int) -> str:
    """"the nearest snapshots are at steps 100 and 200" (or that there are none)."""
    before = []
    for window in (1_000, 1_000_000, None):  # steps come ascending: look back a little first
        lo = 0 if window is None else max(0, step - window)
        before = store.snapshot_steps(job_id, lo, step, limit=window or 10**9)[-1:]
        if before or lo == 0:
            break
    after = store.snapshot_steps(job_id, step, None, limit=1)
    near = before + after
    if not near:
        return "this job has no snapshots"
    return "the nearest snapshots are at step " + " and ".join(str(s) for s in near)


def snapshot_at(store, job_id: int, step: int, error: type[Exception], resolve_dataset=None,
                with_gradients: bool = False) -> tuple[Trainer, dict]:
    """The job's trainer and the record of step ``step``, which must hold a parameter snapshot (and
    a gradient one when asked); otherwise ``error`` saying why and where the nearest snapshots are."""
    job = store.get_job(job_id)
    if job is None:
        raise error(f"no job {job_id}")
    record = store.step(job_id, step)
    if record is None:
        raise error(f"job {job_id} has no recorded step {step} (it has {job['steps_done']} steps)")
    if not record.get("params") or (with_gradients and not record.get("gradients")):
        raise error(f"job {job_id} has no snapshot at step {step} to start from; "
                    + nearest_snapshots(store, job_id, step))
    return Trainer(make_plan(parse_spec(job["spec"]), resolve_dataset)), record


def preset_graph(name: str) -> ad.Graph:
    trainer = Trainer(make_plan(parse_spec(presets.get(name))))
    return step_graph(trainer, 0)


def job_graph(store, job_id: int, step: int, resolve_dataset=None) -> ad.Graph:
    trainer, record = snapshot_at(store, job_id, step, GraphError, resolve_dataset)
    trainer.set_params(record["params"])
    return step_graph(trainer, step)


def step_graph(trainer: Trainer, step: int) -> ad.Graph:
    """Trace forward and backward of the loss on step ``step``'s batch at the current parameters."""
    x, _ = trainer.batch(step)
    # every node holds an activation of the whole batch: estimate before computing anything
    values = x.shape[0] * sum(trainer.plan.sizes) * 4 + trainer.plan.n_params * 2
    limit = settings().graph_max_values
    if values > limit:
        raise GraphError(f"the graph would hold about {values:,} values, over the limit of {limit:,} "
                         "(GRADBOOK_GRAPH_MAX_VALUES); graphs are for small models and batches")
    for p in trainer.params.values():
        p.grad = None
    with ad.trace() as tr:
        J = trainer.loss(*trainer.batch(step))
    J.backward()
    return tr.graph


# --- the numerical check -------------------------------------------------------------------------

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
