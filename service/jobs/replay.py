"""A recorded step replayed: its computation graph, and the numerical check of its gradient.

Any recorded step can be replayed: from its snapshot when one is kept, else from the nearest stored
state before it (see :func:`state_at`), which the snapshot budget keeps within about a second of
training.

The graph is the lecture's diagram, every node with its value and derivative: for a preset, the
initial parameters at step 0; for a job, the parameters step s started from and the very minibatch
that step used, so its output J equals the recorded loss.

The check is the lecture's other method: from the same parameters and batch, the numerical gradient
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
from service.domain import STAT_SERIES
from service.jobs import presets
from service.jobs.errors import SpecError
from service.jobs.plan import make_plan
from service.jobs.spec import parse_spec
from service.jobs.trainer import Trainer


class GraphError(ValueError):
    """The graph cannot be shown (too large, no such step, unknown job)."""


class ReplayError(ValueError):
    """A step cannot be read or replayed (unknown job, no such step, a spec that no longer plans)."""


def step_record(store, job_id: int, step: int, resolve_dataset=None) -> dict:
    """Everything recorded at step ``step`` (``store.step``'s record) with the ``params`` the step
    started from and its ``gradients``: from the step's snapshot, or replayed (see :func:`state_at`)."""
    job, record = _recorded(store, job_id, step, ReplayError)
    if "params" in record and "gradients" in record:
        return {**record, "replayed": None}
    return state_at(store, job_id, step, ReplayError, resolve_dataset, (job, record))[1]


def state_at(store, job_id: int, step: int, error: type[Exception], resolve_dataset=None,
             recorded: tuple[dict, dict] | None = None) -> tuple[Trainer, dict]:
    """The job's trainer at step ``step`` and :func:`step_record`'s answer: the snapshot's arrays,
    or the step replayed from the nearest stored state before it (a replay checkpoint, or the initial
    parameters). Training is deterministic, so a replay gives what a snapshot would hold, bit for
    bit; ``replayed`` says from which step, how many steps it took and whether it reproduced the
    recorded loss and gradient statistics exactly (None when the snapshot was read). ``error`` when
    the step was not recorded or the job's spec no longer plans."""
    job, record = recorded or _recorded(store, job_id, step, error)
    try:
        trainer = Trainer(make_plan(parse_spec(job["spec"]), resolve_dataset))
    except SpecError as e:
        raise error(f"job {job_id} cannot be replayed: {e}") from None
    if "params" in record and "gradients" in record:
        return trainer, {**record, "replayed": None}
    t0 = time.perf_counter()
    checkpoint = store.last_checkpoint(job_id, at_or_before=step)
    start = 0 if checkpoint is None else trainer.restore(checkpoint)
    trainer.run(None, start, end=step)
    # the step itself, as the training loop records it: the loss and gradients at its batch
    trainer.optimizer.zero_grad(set_to_none=True)
    loss = trainer.loss(*trainer.batch(step))
    loss.backward()
    trainer.optimizer.gather_grads()
    stats, _ = trainer.recorder.stats(trainer.recorder.flat_gradients())
    stored = [[record["stats"][n][k] for k in STAT_SERIES] for n in trainer.names]
    recorded = np.array([[np.nan if v is None else v for v in row] for row in stored])
    matches = (np.array_equal(np.float64(loss.data), np.float64(record["loss"]), equal_nan=True)
               and np.array_equal(stats, recorded, equal_nan=True))
    params = {n: p.data.copy() for n, p in trainer.params.items()}
    gradients = {n: np.array(p.grad, copy=True) for n, p in trainer.params.items()}
    replayed = {"from_step": start, "steps": step - start, "seconds": time.perf_counter() - t0,
                "matches_record": bool(matches)}
    return trainer, {**record, "params": params, "gradients": gradients, "replayed": replayed}


def _recorded(store, job_id: int, step: int, error: type[Exception]) -> tuple[dict, dict]:
    """The job and its record of step ``step``."""
    job = store.get_job(job_id)
    if job is None:
        raise error(f"no job {job_id}")
    record = store.step(job_id, step)
    if record is None or "loss" not in record:
        raise error(f"job {job_id} has no recorded step {step} (it has {job['steps_done']} steps)")
    return job, record


def preset_graph(name: str) -> ad.Graph:
    trainer = Trainer(make_plan(parse_spec(presets.get(name))))
    return step_graph(trainer, 0)


def job_graph(store, job_id: int, step: int, resolve_dataset=None) -> ad.Graph:
    trainer, record = state_at(store, job_id, step, GraphError, resolve_dataset)
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
    """The step cannot be verified (no such step, model too large, unknown job)."""


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
    backprop_seconds: float         # one forward and backward pass at the step's parameters
    numerical_seconds: float        # 2 × n_params forward passes
    forward_passes: int
    recorded_vs_replayed: float     # max |snapshot gradient − recomputed backprop|: 0 when the history is
                                    # exact (and by construction at a replayed step: see `replayed`)
    kink_inputs: int                # ReLU inputs within eps of 0, where bumping sees a slope of about 1/2
                                    # and backprop the subgradient: errors there are not backprop's
    replayed: dict | None = None    # how the step's parameters were recomputed (None: from its snapshot)

    def to_dict(self) -> dict:
        return asdict(self)


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), REL_FLOOR)


def verify_step(store, job_id: int, step: int, eps: float = 1e-6, resolve_dataset=None) -> VerifyReport:
    trainer, record = state_at(store, job_id, step, VerifyError, resolve_dataset)
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
                        kink_inputs=kinks, replayed=record["replayed"])
