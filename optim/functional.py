"""The pure functional face of the update rules (optax style): ``init`` and ``update`` over flat
arrays, returning new arrays instead of changing their inputs.

    state = functional.init("adam", theta, lr=0.1)
    theta, state = functional.update("adam", theta, grad, state, lr=0.1)

The optimizer classes run the very same rule (``cls.update``) in place on their flat buffers;
these wrappers copy first. ``state`` is ``{"step": int, "scalars": {...}, "arrays": {key: array}}``.
"""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer


def _cls(rule) -> type[Optimizer]:
    if isinstance(rule, type) and issubclass(rule, Optimizer):
        return rule
    from .registry import get

    return get(rule)


def init(rule, param: np.ndarray, **hyperparameters) -> dict:
    """Fresh state for a flat parameter array under the named rule (or Optimizer subclass)."""
    cls = _cls(rule)
    hp = cls.validate_hyperparameters(hyperparameters, cls.__name__)
    param = np.asarray(param)
    arrays = {k: cls.init_state(k, hp, param.size, param.dtype) for k in cls.state_keys(hp)}
    return {"step": 0, "scalars": dict(cls.scalar_state), "arrays": arrays}


def update(rule, param: np.ndarray, grad: np.ndarray, state: dict, lr: float | None = None,
           **hyperparameters) -> tuple[np.ndarray, dict]:
    """One step: return ``(new_param, new_state)``; ``lr`` overrides the hyperparameter (as a
    schedule would)."""
    cls = _cls(rule)
    hp = cls.validate_hyperparameters(hyperparameters, cls.__name__)
    p = np.array(param, dtype=np.asarray(param).dtype, copy=True).ravel()
    g = np.asarray(grad, dtype=p.dtype).ravel()
    arrays = {k: np.array(v, copy=True).ravel() for k, v in state["arrays"].items()}
    scratch = [np.empty_like(p) for _ in range(cls.n_scratch)]
    step = state["step"] + 1
    scalars = cls.update(p, g, arrays, scratch, step, hp["lr"] if lr is None else lr, hp, state["scalars"])
    shape = np.shape(param)
    new_state = {"step": step, "scalars": state["scalars"] if scalars is None else scalars,
                 "arrays": {k: v.reshape(shape) for k, v in arrays.items()}}
    return p.reshape(shape), new_state
