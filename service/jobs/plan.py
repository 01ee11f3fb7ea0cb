"""The plan: what a job spec means once its data is known.

:func:`make_plan` loads the spec's data, checks everything that depends on it (input width, label
ranges, shapes of explicit init values, the limits) and derives what the trainer needs: the model's
sizes, the train/validation split, batches, the total number of steps and the recording cadence.
Errors name the field at fault, e.g. ``model.init.w1: expected shape (1, 1), got (2,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.config import settings
from service.jobs import data as datasets
from service.jobs.data import Dataset, load_data
from service.jobs.errors import DataError, SpecError


@dataclass
class Plan:
    spec: Any                 # the JobSpec it was made from (spec.py imports this module, not back)
    train: Dataset
    val: Dataset | None
    sizes: list[int]          # [input width, units of each layer]
    n_params: int
    batch_size: int
    batches_per_epoch: int
    total_steps: int
    snapshot_every: int       # snapshot spacing while the job is young (see domain.SnapshotBudget)
    snapshot_budget: int      # bytes of snapshots and replay checkpoints the job may keep
    checkpoint_every: int
    checkpoint_seconds: float  # least time between checkpoints (0 when the spec sets checkpoint_every)

    @property
    def dtype(self):
        return np.dtype(self.spec.dtype)

    def param_shapes(self) -> dict[str, tuple]:
        return param_shapes(self.sizes)


def param_shapes(sizes: list[int]) -> dict[str, tuple]:
    """Parameter name -> shape of an MLP of these sizes: w1 (in, units), b1 (units,), w2, ..."""
    shapes = {}
    for i in range(1, len(sizes)):
        shapes[f"w{i}"] = (sizes[i - 1], sizes[i])
        shapes[f"b{i}"] = (sizes[i],)
    return shapes


def make_plan(spec, resolve_dataset=None) -> Plan:
    """Load the data, check everything that depends on it, and derive the training schedule.
    ``resolve_dataset(id) -> (x, y)`` serves uploaded datasets. Raises :class:`SpecError` naming the
    field at fault. A spec validated with inline or built-in data was planned then: that plan is
    returned."""
    if spec.validated_plan is not None:
        return spec.validated_plan
    limits = settings()
    try:
        x, y = load_data(spec, resolve_dataset)
        data = datasets.check_arrays(x, y, spec.loss, spec.n_out, np.dtype(spec.dtype))
    except DataError as e:
        raise SpecError([{"loc": list(e.loc), "msg": e.msg}]) from None
    errors: list[dict] = []

    def fail(loc, msg):
        errors.append({"loc": list(loc), "msg": msg})

    n_values = data.x.size + data.y.size
    if n_values > limits.max_data_values:
        fail(("data",), f"{n_values:,} values exceed the limit of {limits.max_data_values:,} "
                        "(GRADBOOK_MAX_DATA_VALUES)")
    sizes = [data.x.shape[1]] + [layer.units for layer in spec.model.layers]
    n_params = sum(sizes[i - 1] * sizes[i] + sizes[i] for i in range(1, len(sizes)))
    if n_params > limits.max_params:
        fail(("model", "layers"), f"the model has {n_params:,} parameters, over the limit of "
                                  f"{limits.max_params:,} (GRADBOOK_MAX_PARAMS)")
    shapes = param_shapes(sizes)
    for name, value in spec.model.init.values().items():
        if name not in shapes:
            fail(("model", "init", name), f"this model has parameters {', '.join(shapes)}")
        elif value.shape != shapes[name]:
            fail(("model", "init", name), f"expected shape {shapes[name]}, got {value.shape}")

    n = data.x.shape[0]
    train, val = data, None
    if spec.validation is not None:
        train_idx, val_idx = datasets.split(n, spec.validation.fraction, spec.seed)
        if len(val_idx) == 0 or len(train_idx) == 0:
            fail(("validation", "fraction"), f"{spec.validation.fraction:g} of {n} rows leaves "
                                             f"{len(train_idx)} for training and {len(val_idx)} for "
                                             "validation; both need at least one")
        else:
            train = Dataset(data.x[train_idx], data.y[train_idx])
            val = Dataset(data.x[val_idx], data.y[val_idx])
    n_train = train.x.shape[0]
    batch_size = spec.batch_size or n_train
    if batch_size > n_train:
        fail(("batch_size",), f"{batch_size} is more than the {n_train} training rows")
    batches_per_epoch = math.ceil(n_train / batch_size)
    total = spec.steps if spec.steps is not None else (spec.epochs or 0) * batches_per_epoch
    if total > limits.max_steps:
        where = "steps" if spec.steps is not None else "epochs"
        fail((where,), f"{total:,} steps exceed the limit of {limits.max_steps:,} (GRADBOOK_MAX_STEPS)")
    # the optimizer was checked before the run length was known (a schedule may take it from here)
    errors += [{"loc": ["optimizer", *loc], "msg": msg} for loc, msg in spec.optimizer.errors(total)]
    if errors:
        raise SpecError(errors)
    return Plan(spec=spec, train=train, val=val, sizes=sizes, n_params=n_params, batch_size=batch_size,
                batches_per_epoch=batches_per_epoch, total_steps=total,
                snapshot_every=spec.snapshot_every or default_snapshot_every(n_params),
                snapshot_budget=int((spec.snapshot_budget_mb or limits.snapshot_budget_mb) * 2**20),
                checkpoint_every=spec.checkpoint_every or limits.checkpoint_every,
                checkpoint_seconds=0.0 if spec.checkpoint_every else limits.checkpoint_seconds)


def default_snapshot_every(n_params: int) -> int:
    """Every step up to GRADBOOK_SMALL_MODEL_PARAMS parameters; beyond, every K steps with K the
    smallest of 1, 2, 5 x 10^k that is at least GRADBOOK_LARGE_SNAPSHOT_EVERY and n_params / 500, so
    that writing snapshots costs at most about 1,000 stored values a step whatever the model's size
    (the snapshot budget then bounds how many are kept)."""
    limits = settings()
    if n_params <= limits.small_model_params:
        return 1
    want = max(limits.large_snapshot_every, math.ceil(n_params / 500))
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k >= want:
                return m * k
        k *= 10
