"""The computation graph of a model with every node's value and derivative (the lecture's diagram).

For a preset it shows the initial parameters at step 0; for a job, the parameters of a recorded
snapshot and the very minibatch that step used, so its output J equals the recorded loss.
"""

from __future__ import annotations

import autodiff as ad

from . import presets
from .settings import settings
from .spec import make_plan, parse_spec
from .trainer import Trainer


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
