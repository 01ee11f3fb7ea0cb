"""NumPy's protocols on Tensor: ``np.exp(t)``, ``np.sum(t, 0)``, ``array + t`` run the autodiff op of
the same name (differentiably, with the same call forms); a NumPy function autodiff has no op for
raises a TypeError that says what to use instead, rather than failing deep inside NumPy.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .core import Tensor

UFUNCS = {
    np.add: ops.add, np.subtract: ops.subtract, np.multiply: ops.multiply, np.divide: ops.divide,
    np.negative: ops.negative, np.power: ops.power, np.matmul: ops.matmul, np.maximum: ops.maximum,
    np.minimum: ops.minimum, np.exp: ops.exp, np.log: ops.log, np.sqrt: ops.sqrt, np.absolute: ops.abs,
    np.tanh: ops.tanh,
}

FUNCTIONS = {
    np.sum: ops.sum, np.mean: ops.mean, np.var: ops.var, np.max: ops.max, np.amax: ops.max,
    np.min: ops.min, np.amin: ops.min, np.clip: ops.clip, np.reshape: ops.reshape,
    np.transpose: ops.transpose, np.expand_dims: ops.expand_dims, np.squeeze: ops.squeeze,
    np.concatenate: ops.concatenate, np.stack: ops.stack, np.where: ops.where,
}

# Comparisons keep the Tensor operators' meaning when NumPy meets a Tensor on the right of
# `array < t`: a boolean (constant) tensor, and == / != by identity.
_REFLECTED = {np.less: "__gt__", np.less_equal: "__ge__", np.greater: "__lt__", np.greater_equal: "__le__"}
_DIRECT = {np.less: "__lt__", np.less_equal: "__le__", np.greater: "__gt__", np.greater_equal: "__ge__"}


def _not_differentiable(what: str) -> TypeError:
    supported = ", ".join(sorted({f"ad.{op.__name__}" for op in (*UFUNCS.values(), *FUNCTIONS.values())}))
    return TypeError(
        f"{what} has no differentiable version on a Tensor; use an autodiff op ({supported}, and the "
        "rest of autodiff's ops), or compute on the tensor's .data array (no gradient)"
    )


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    if method == "__call__":
        op = UFUNCS.get(ufunc)
        if op is not None:
            return op(*inputs, **kwargs)
        if len(inputs) == 2 and not kwargs:
            a, b = inputs
            if ufunc in (np.equal, np.not_equal):
                return (a is b) == (ufunc is np.equal)
            if ufunc in _DIRECT:
                if isinstance(a, Tensor):
                    return getattr(a, _DIRECT[ufunc])(b)
                return getattr(b, _REFLECTED[ufunc])(a)
        raise _not_differentiable(f"np.{ufunc.__name__}")
    raise _not_differentiable(f"np.{ufunc.__name__}.{method}")


def _array_function(self, func, types, args, kwargs):
    op = FUNCTIONS.get(func)
    if op is None:
        raise _not_differentiable(f"np.{func.__name__}")
    return op(*args, **kwargs)


Tensor.__array_ufunc__ = _array_ufunc
Tensor.__array_function__ = _array_function
