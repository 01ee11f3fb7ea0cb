"""The built-in ops, each defined through the same public extension point users have
(:func:`autodiff.primitive` + :func:`autodiff.defvjp`), its gradient written next to its forward;
:func:`autodiff.defscalar` marks the few whose arithmetic also runs on Python floats (0-d float64).

A VJP receives the incoming gradient ``g`` (shaped like the op's output), the output ``out`` and
the op's arguments, and returns the gradient for one argument. It may return it in the broadcast
shape: the engine sums it down to the argument's shape.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from .core import Tensor
from .primitives import defscalar, defvjp, defvjp_argnum, primitive

# --- helpers -------------------------------------------------------------------------------


def _axes(axis, ndim):
    """Normalize an axis argument (None, int or tuple; negatives allowed) to a tuple."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim if ndim else a for a in axis)


def _unreduce(g, x, axis, keepdims):
    """Spread the gradient of a reduction back over the reduced axes of its input x."""
    if not keepdims:
        reduced = _axes(axis, x.ndim)
        g = np.reshape(g, tuple(1 if i in reduced else n for i, n in enumerate(x.shape)))
    out = np.empty(x.shape, dtype=g.dtype)
    out[...] = g
    return out


def _count(x, axis):
    return math.prod(x.shape[a] for a in _axes(axis, x.ndim))


# --- arithmetic ----------------------------------------------------------------------------


@primitive("add")
def add(a, b, /, out=None):
    return a + b


defvjp(add, lambda g, out, a, b: g, lambda g, out, a, b: g)
defscalar(add)


@primitive("subtract")
def subtract(a, b, /, out=None):
    return a - b


defvjp(subtract, lambda g, out, a, b: g, lambda g, out, a, b: -g)
defscalar(subtract)


@primitive("multiply")
def multiply(a, b, /, out=None):
    return a * b


defvjp(multiply, lambda g, out, a, b: g * b, lambda g, out, a, b: g * a)
defscalar(multiply)


@primitive("divide")
def divide(a, b, /, out=None):
    return a / b


defvjp(divide, lambda g, out, a, b: g / b, lambda g, out, a, b: -g * out / b)
defscalar(divide)


@primitive("negative")
def negative(a, /, out=None):
    return -a


defvjp(negative, lambda g, out, a: -g)
defscalar(negative)


@primitive("power")
def power(a, b, /, out=None):
    return a**b


def _log_base(a):
    # d(a^b)/db = a^b log a; define it as 0 where a == 0 (a^b is 0 or 1 there) and NaN for a < 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(np.where(a == 0, 1, a))


defvjp(
    power,
    lambda g, out, a, b: g * (2 * a if b.ndim == 0 and b == 2 else b * a ** (b - 1)),
    lambda g, out, a, b: g * out * _log_base(a),
)


def _matmul_vjp_a(g, out, a, b):
    if b.ndim == 1:  # out = a @ b drops b's only axis
        return g[..., None] * b
    if a.ndim == 1:  # out = a @ b drops a's (row) axis
        return (g[..., None, :] @ b.mT)[..., 0, :]
    return g @ b.mT


def _matmul_vjp_b(g, out, a, b):
    if a.ndim == 1:
        return g * a if b.ndim == 1 else a[:, None] * g[..., None, :]
    if b.ndim == 1:
        return (a.mT @ g[..., None])[..., 0]
    return a.mT @ g


@primitive("matmul")
def matmul(a, b, /, out=None):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs arrays of at least one dimension; use * for scalars")
    return a @ b


defvjp(matmul, _matmul_vjp_a, _matmul_vjp_b)


@primitive("maximum")
def maximum(a, b, /, out=None):
    return np.maximum(a, b)


@primitive("minimum")
def minimum(a, b, /, out=None):
    return np.minimum(a, b)


def _pick(first):
    """VJP of maximum/minimum: the gradient goes to the chosen side, split evenly on ties."""

    def vjp(g, out, a, b):
        mine, other = (a, b) if first else (b, a)
        return g * ((mine == out) * np.where(other == out, 0.5, 1.0)).astype(g.dtype)

    return vjp


defvjp(maximum, _pick(True), _pick(False))
defvjp(minimum, _pick(True), _pick(False))


@primitive("where")
def where(cond, a, b, /):
    return np.where(cond, a, b)


defvjp(
    where,
    None,
    lambda g, out, c, a, b: np.where(c, g, 0),
    lambda g, out, c, a, b: np.where(c, 0, g),
)


# --- elementwise functions -----------------------------------------------------------------


@primitive("exp")
def exp(x, /, out=None):
    return np.exp(x)


defvjp(exp, lambda g, out, x: g * out)


@primitive("log")
def log(x, /, out=None):
    return np.log(x)


defvjp(log, lambda g, out, x: g / x)


@primitive("sqrt")
def sqrt(x, /, out=None):
    return np.sqrt(x)


defvjp(sqrt, lambda g, out, x: g / (2 * out))


@primitive("abs")
def abs(x, /, out=None):  # noqa: A001 - mirrors the NumPy name
    return np.abs(x)


defvjp(abs, lambda g, out, x: g * np.sign(x))


@primitive("tanh")
def tanh(x, /, out=None):
    return np.tanh(x)


defvjp(tanh, lambda g, out, x: g * (1 - out * out))


@primitive("sigmoid")
def sigmoid(x):
    # exp of a non-positive number only, so large |x| neither overflows nor loses precision.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


defvjp(sigmoid, lambda g, out, x: g * out * (1 - out))


_ZEROS: dict = {}  # a 0-d zero per dtype: np.maximum(x, 0) spends longer converting the Python 0


@primitive("relu")
def relu(x):
    zero = _ZEROS.get(x.dtype)
    if zero is None:
        zero = _ZEROS[x.dtype] = np.zeros((), dtype=x.dtype)
    return np.maximum(x, zero)


# sign(out) is the 0/1 mask x > 0 without a bool-to-float cast (a NaN input gives a NaN gradient).
defvjp(relu, lambda g, out, x: g * np.sign(out))
# As np.maximum(x, 0.0): NaN stays NaN and -0.0 gives +0.0; sign(out) of a finite out is 1.0 or 0.0.
defscalar(relu, lambda x: 0.0 if x <= 0.0 else x, lambda g, out, x: g * (1.0 if out > 0.0 else 0.0))


@primitive("leaky_relu")
def leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


defvjp(leaky_relu, lambda g, out, x, slope=0.01: np.where(x > 0, g, slope * g))


def _bounds(a_min, a_max, lo, hi):
    """clip's bounds by NumPy's names (a_min, a_max) or by this library's older lo=, hi=."""
    return (lo if a_min is None else a_min), (hi if a_max is None else a_max)


@primitive("clip")
def clip(a, a_min=None, a_max=None, out=None, *, lo=None, hi=None):
    return np.clip(a, *_bounds(a_min, a_max, lo, hi))


def _clip_vjp(g, out, x, a_min=None, a_max=None, *, lo=None, hi=None):
    lo, hi = _bounds(a_min, a_max, lo, hi)
    inside = np.ones(x.shape, dtype=bool)
    if lo is not None:
        inside &= x >= lo
    if hi is not None:
        inside &= x <= hi
    return g * inside


defvjp(clip, _clip_vjp)


# --- reductions ----------------------------------------------------------------------------


@primitive("sum")
def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001
    return np.add.reduce(a, axis=axis, dtype=dtype, keepdims=keepdims)


defvjp(sum, lambda g, out, x, axis=None, dtype=None, keepdims=False: _unreduce(g, x, axis, keepdims))


@primitive("mean")
def mean(a, axis=None, dtype=None, out=None, keepdims=False):
    return np.add.reduce(a, axis=axis, dtype=dtype, keepdims=keepdims) / _count(a, axis)


defvjp(
    mean,
    lambda g, out, x, axis=None, dtype=None, keepdims=False:
    _unreduce(g, x, axis, keepdims) / _count(x, axis),
)


@primitive("var")
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return np.var(a, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)


def _var_vjp(g, out, x, axis=None, dtype=None, ddof=0, keepdims=False):
    centered = x - np.mean(x, axis=axis, keepdims=True)
    return _unreduce(g, x, axis, keepdims) * centered * (2 / (_count(x, axis) - ddof))


defvjp(var, _var_vjp)


def _extremum_vjp(g, out, x, axis=None, keepdims=False):
    # The gradient goes to the entries equal to the extremum, split evenly among ties.
    hit = x == _unreduce(out, x, axis, keepdims)
    return _unreduce(g, x, axis, keepdims) * hit / np.sum(hit, axis=axis, keepdims=True)


@primitive("max")
def max(a, axis=None, out=None, keepdims=False):  # noqa: A001
    return np.max(a, axis=axis, keepdims=keepdims)


@primitive("min")
def min(a, axis=None, out=None, keepdims=False):  # noqa: A001
    return np.min(a, axis=axis, keepdims=keepdims)


defvjp(max, _extremum_vjp)
defvjp(min, _extremum_vjp)


# --- shape ---------------------------------------------------------------------------------


@primitive("reshape")
def reshape(a, /, shape=None):
    return np.reshape(a, shape)


defvjp(reshape, lambda g, out, x, shape=None: np.reshape(g, x.shape))


@primitive("transpose")
def transpose(a, axes=None):
    return np.transpose(a, axes)


defvjp(
    transpose,
    lambda g, out, x, axes=None: np.transpose(g, None if axes is None else np.argsort(axes)),
)


@primitive("expand_dims")
def expand_dims(a, axis=0):
    return np.expand_dims(a, axis)


defvjp(expand_dims, lambda g, out, x, axis=0: np.reshape(g, x.shape))


@primitive("squeeze")
def squeeze(a, axis=None):
    return np.squeeze(a, axis)


defvjp(squeeze, lambda g, out, x, axis=None: np.reshape(g, x.shape))


def _is_advanced(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, np.ndarray | list) for p in parts)


@primitive("getitem")
def getitem(x, index=None):
    return x[index]


def _getitem_vjp(g, out, x, index=None):
    grad = np.zeros(x.shape, dtype=g.dtype)
    if _is_advanced(index):
        np.add.at(grad, index, g)  # repeated indices accumulate
    else:
        grad[index] = g
    return grad


defvjp(getitem, _getitem_vjp)


@primitive("concatenate", variadic=True)
def concatenate(*arrays, axis=0, out=None):
    return np.concatenate(arrays, axis=axis)


def _concatenate_vjp(i, g, out, *arrays, axis=0):
    axis = axis % out.ndim
    start = builtins.sum(a.shape[axis] for a in arrays[:i])
    index = [slice(None)] * out.ndim
    index[axis] = slice(start, start + arrays[i].shape[axis])
    return g[tuple(index)]


defvjp_argnum(concatenate, _concatenate_vjp)


@primitive("stack", variadic=True)
def stack(*arrays, axis=0, out=None):
    return np.stack(arrays, axis=axis)


defvjp_argnum(stack, lambda i, g, out, *arrays, axis=0: np.take(g, i, axis=axis))


# --- the softmax family (shift by the max so logits of any magnitude stay finite) --------------


@primitive("softmax")
def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


defvjp(softmax, lambda g, out, x, axis=-1: out * (g - np.sum(g * out, axis=axis, keepdims=True)))


@primitive("log_softmax")
def log_softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


defvjp(
    log_softmax,
    lambda g, out, x, axis=-1: g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),
)


@primitive("logsumexp")
def logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


defvjp(
    logsumexp,
    lambda g, out, x, axis=None, keepdims=False: _unreduce(g, x, axis, keepdims)
    * np.exp(x - _unreduce(out, x, axis, keepdims)),
)


# --- Tensor methods and operators ----------------------------------------------------------

def _index(index):
    """Unwrap Tensors inside an index; index tensors never receive gradients."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(p.data if isinstance(p, Tensor) else p for p in index)
    return index


def _shape_arg(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape


def _install_methods():
    T = Tensor
    # The ops themselves are the methods (a + b calls add(a, b)): no extra call per operator.
    T.__add__ = add
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = subtract
    T.__rsub__ = lambda a, b: subtract(b, a)
    T.__mul__ = multiply
    T.__rmul__ = lambda a, b: multiply(b, a)
    T.__truediv__ = divide
    T.__rtruediv__ = lambda a, b: divide(b, a)
    T.__pow__ = lambda a, b: power(a, b)
    T.__rpow__ = lambda a, b: power(b, a)
    T.__matmul__ = matmul
    T.__rmatmul__ = lambda a, b: matmul(b, a)
    T.__neg__ = negative
    T.__pos__ = lambda a: a
    T.__abs__ = abs
    T.__getitem__ = lambda a, index: getitem(a, index=_index(index))
    # Comparisons give boolean tensors (for masks and where); == stays identity so tensors can
    # live in sets and lists.
    T.__lt__ = lambda a, b: Tensor(a.data < _index(b))
    T.__le__ = lambda a, b: Tensor(a.data <= _index(b))
    T.__gt__ = lambda a, b: Tensor(a.data > _index(b))
    T.__ge__ = lambda a, b: Tensor(a.data >= _index(b))

    T.sum = lambda a, axis=None, keepdims=False: sum(a, axis=axis, keepdims=keepdims)
    T.mean = lambda a, axis=None, keepdims=False: mean(a, axis=axis, keepdims=keepdims)
    T.var = lambda a, axis=None, keepdims=False, ddof=0: var(a, axis=axis, keepdims=keepdims, ddof=ddof)
    T.max = lambda a, axis=None, keepdims=False: max(a, axis=axis, keepdims=keepdims)
    T.min = lambda a, axis=None, keepdims=False: min(a, axis=axis, keepdims=keepdims)
    T.reshape = lambda a, *shape: reshape(a, shape=_shape_arg(shape))
    T.transpose = lambda a, *axes: transpose(a, axes=_shape_arg(axes) or None)
    T.T = property(lambda a: transpose(a))
    T.expand_dims = lambda a, axis: expand_dims(a, axis=axis)
    T.squeeze = lambda a, axis=None: squeeze(a, axis=axis)
    T.exp = lambda a: exp(a)
    T.log = lambda a: log(a)
    T.sqrt = lambda a: sqrt(a)
    T.abs = lambda a: abs(a)
    T.tanh = lambda a: tanh(a)
    T.sigmoid = lambda a: sigmoid(a)
    T.relu = lambda a: relu(a)
    T.leaky_relu = lambda a, slope=0.01: leaky_relu(a, slope=slope)
    T.clip = lambda a, lo=None, hi=None: clip(a, lo=lo, hi=hi)
    T.softmax = lambda a, axis=-1: softmax(a, axis=axis)
    T.log_softmax = lambda a, axis=-1: log_softmax(a, axis=axis)
    T.logsumexp = lambda a, axis=None, keepdims=False: logsumexp(a, axis=axis, keepdims=keepdims)


_install_methods()
