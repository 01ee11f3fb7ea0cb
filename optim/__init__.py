"""optim: optimizers for autodiff parameters that follow torch.optim's update rules.

    import optim
    opt = optim.Adam(model.parameters(), lr=1e-3,
                     schedule={"name": "warmup_cosine", "warmup_steps": 10, "total_steps": 100},
                     clip_grad_norm=1.0, nonfinite="skip")
    for batch in data:
        opt.zero_grad()
        loss(model, batch).backward()
        opt.step()              # opt.last_lr, opt.step_count, opt.last_grad_norm describe it

Built-ins: SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam, RAdam, with torch's hyperparameter
names and defaults; ``optim.create(name, params, **hp)`` builds any registered optimizer by name
and ``optim.available()`` describes them all (JSON-able). Third-party optimizers subclass
:class:`Optimizer` and register through the ``gradbook.optimizers`` entry-point group (or
``@optim.register(name)``). A plug-in writes its ``update`` rule over flat arrays with the kernels
optim exports (``effective_grad``, ``decayed_grad``, ``lerp_``, ``decay_add_square_``,
``add_scaled_ratio_``: torch's tensor operations, in place); one that overrides ``step()`` itself
is called without ``grad_norm=`` unless its signature takes it (``Optimizer.accepts_grad_norm``).

Parameters: a mapping name -> Tensor, an iterable of Tensors, or a list of group dicts
``{"params": ..., "lr": ...}``. The optimizer copies them into one flat buffer per dtype and points
each ``.data`` (and, after ``zero_grad()``, each ``.grad``) at a view of it; keep using the same
Tensor objects. ``zero_grad()`` zero-fills the gradient buffer and keeps the views, so every
parameter takes part in the next step; ``zero_grad(set_to_none=True)`` sets grads to None, and a
parameter whose grad is still None at ``step()`` is skipped (its own step counter does not advance).

Options (keyword arguments of every optimizer): ``schedule`` (None, a spec dict or a
:class:`~optim.schedules.Schedule`), ``clip_grad_norm``, ``clip_grad_value`` (None or > 0) and
``nonfinite`` ("raise" [default], "skip": skip the step without advancing the counter, or "ignore").

State dict format, version 1 — ``opt.state_dict()`` returns ``{"meta": meta, "arrays": arrays}``:

``arrays``: ``{key: np.ndarray}``, fresh copies shaped like their parameter. Keys look like
``"state.<param name>.<state name>"`` but are opaque: always go through ``meta``.

``meta`` (JSON-able: ``json.dumps(meta, allow_nan=False)`` works)::

    {"format": "gradbook.optim.state", "version": 1,
     "optimizer": "adam",                     # registry name; loading into another optimizer fails
     "step_count": 12,                        # steps taken = the schedule's clock
     "skipped_steps": 0,                      # steps skipped by nonfinite="skip"
     "last_lrs": [0.001],                     # lr of each group at the last step, or null
     "schedule": {"name": "cosine", "t_max": 100, "eta_min": 0.0} | null,
     "options": {"clip_grad_norm": 1.0, "clip_grad_value": null, "nonfinite": "raise"},
     "groups": [{"hyperparameters": {"lr": 0.001, "betas": [0.9, 0.999], ...},   # base lr
                 "params": ["w1", "b1", ...]}],
     "params": {"w1": {"shape": [2, 3], "dtype": "float64", "group": 0,
                       "step": 12,                          # this parameter's own step counter
                       "scalars": {},                        # e.g. NAdam's {"mu_product": ...}
                       "arrays": {"exp_avg": "state.w1.exp_avg", "exp_avg_sq": "state.w1.exp_avg_sq"}},
                ...}}

A parameter with ``step`` 0 has no arrays (fresh state). ``load_state_dict(sd, strict=True)``
matches parameters by name, restores hyperparameters, options, schedule and counters from the
dict, and raises :class:`StateDictError` (with ``.missing``, ``.unexpected``, ``.reshaped``,
``.retyped``, ``.regrouped``) before changing anything if the dict does not fit.
:func:`pack_state`/:func:`unpack_state` (and ``save_state``/``load_state`` for files) turn a state
dict into one byte string of JSON header plus raw little-endian arrays.
"""

from . import functional, schedules
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adam_variants import Adamax, NAdam, RAdam
from .checkpoint import load_state, pack_state, save_state, unpack_state
from .clip import clip_grad_norm, clip_grad_value
from .errors import (
    HyperparameterError,
    NonFiniteGradientError,
    OptimError,
    RegistryError,
    StateDictError,
    UnknownOptimizerError,
)
from .hyper import Hyper
from .kernels import (
    CLIP_EPS,
    DOT_ROW,
    add_scaled_ratio_,
    clip_to_norm_,
    decay_add_square_,
    decayed_grad,
    dot_rows,
    effective_grad,
    lerp_,
    sumsq,
)
from .optimizer import Optimizer
from .registry import available, create, discover, get, load_errors, register, unregister
from .rmsprop import RMSprop
from .schedules import Schedule, available_schedules, make_schedule
from .sgd import SGD
from .state import STATE_FORMAT, STATE_VERSION, LoadReport

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam",
    "register", "unregister", "create", "available", "get", "discover", "load_errors",
    "Schedule", "make_schedule", "available_schedules", "schedules", "functional",
    "clip_grad_norm", "clip_grad_value",
    "pack_state", "unpack_state", "save_state", "load_state", "LoadReport", "STATE_FORMAT", "STATE_VERSION",
    "Hyper", "OptimError", "HyperparameterError", "UnknownOptimizerError", "RegistryError", "StateDictError",
    "NonFiniteGradientError",
    # array kernels: the update rules' building blocks and the bit-reproducible sum of squares
    "sumsq", "dot_rows", "DOT_ROW", "CLIP_EPS", "clip_to_norm_", "effective_grad", "decayed_grad", "lerp_",
    "decay_add_square_", "add_scaled_ratio_",
]
