"""autodiff: a small, vectorized reverse-mode automatic-differentiation engine over NumPy.

    import autodiff as ad
    w = ad.Tensor([[2.0]], requires_grad=True, name="w1")
    J = ((ad.Tensor([[1.0]]) @ w).relu() - 5) ** 2 / 2
    J.backward()          # w.grad now holds dJ/dw

Every op is registered through :func:`primitive` and :func:`defvjp` (and, for 0-d float64 calls,
:func:`defscalar`); :data:`registry` lists them.
"""

from . import (
    interop,  # noqa: F401 - installs NumPy's protocols on Tensor (np.exp(t), np.sum(t))
    nn,
)
from .check import GradcheckError, grad, gradcheck, numerical_grad
from .core import Tensor, enable_grad, is_grad_enabled, no_grad, sum_to_shape
from .graph import Graph, trace
from .ops import (
    abs,
    add,
    clip,
    concatenate,
    divide,
    exp,
    expand_dims,
    getitem,
    leaky_relu,
    log,
    log_softmax,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    power,
    relu,
    reshape,
    sigmoid,
    softmax,
    sqrt,
    squeeze,
    stack,
    subtract,
    sum,
    tanh,
    transpose,
    var,
    where,
)
from .primitives import defscalar, defvjp, defvjp_argnum, primitive, registry

__all__ = [
    "Tensor", "primitive", "defvjp", "defvjp_argnum", "defscalar", "registry", "no_grad", "enable_grad",
    "is_grad_enabled", "sum_to_shape", "grad", "gradcheck", "numerical_grad", "GradcheckError",
    "trace", "Graph", "nn",
    "abs", "add", "clip", "concatenate", "divide", "exp", "expand_dims", "getitem", "leaky_relu",
    "log", "log_softmax", "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum",
    "multiply", "negative", "power", "relu", "reshape", "sigmoid", "softmax", "sqrt", "squeeze",
    "stack", "subtract", "sum", "tanh", "transpose", "var", "where",
]
