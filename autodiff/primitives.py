"""The registry of differentiable ops: :func:`primitive` makes an op from a NumPy forward,
:func:`defvjp` (or :func:`defvjp_argnum`) gives it its gradients, and :func:`defscalar` may give it
kernels on Python floats for calls on 0-d float64 values.

An op call binds its arguments by the forward's signature, runs the forward on the arrays and, when
some input needs a gradient, records the op in the output tensor for ``backward`` (core.py).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

import numpy as np

from .core import Tensor, _as_array, _GradMode

__all__ = ["Rule", "primitive", "defvjp", "defvjp_argnum", "defscalar", "registry"]


class Rule:
    """One registered op: its forward over arrays and the VJP of each differentiable argument;
    ``scalar`` is its :class:`FloatRule` when :func:`defscalar` gave it one."""

    __slots__ = ("name", "forward", "vjps", "vjp_argnum", "scalar")
    on_floats = False  # backward hands this rule's VJPs arrays

    def __init__(self, name, forward):
        self.name = name
        self.forward = forward
        self.vjps: tuple = ()
        self.vjp_argnum = None
        self.scalar = None

    @property
    def differentiable(self) -> bool:
        return self.vjp_argnum is not None or any(v is not None for v in self.vjps)


class FloatRule(Rule):
    """An op's kernels on Python floats; ``array`` is the op's own rule, which backward falls back
    to when a float VJP gives inf or NaN (so NumPy computes it, with its warnings)."""

    __slots__ = ("array",)
    on_floats = True

    def __init__(self, array: Rule, forward, vjps):
        super().__init__(array.name, forward)
        self.vjps = tuple(vjps)
        self.array = array


registry: dict[str, Rule] = {}


def _coerce_constant(x, like_dtype):
    """Wrap a non-tensor operand as an array; Python scalars take the tensor's float dtype so a
    float32 tensor stays float32 (NumPy would otherwise make them float64 0-d arrays)."""
    kind = type(x)  # (float and int first: the ABC checks cost more than the conversion)
    number = kind is float or kind is int or (isinstance(x, numbers.Number) and kind is not bool)
    if number and like_dtype is not None:
        if like_dtype.kind == "f" or kind is int or isinstance(x, numbers.Integral):
            return np.asarray(x, dtype=like_dtype)
    return _as_array(x)


def _public_signature(forward, variadic: bool) -> inspect.Signature:
    """The op's call signature: the forward's, except that a variadic forward's ``*arrays`` is one
    sequence argument followed by its options, as in ``np.concatenate(arrays, axis=0)``."""
    sig = inspect.signature(forward)
    if not variadic:
        return sig
    params = list(sig.parameters.values())
    arrays = inspect.Parameter(params[0].name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    rest = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params[1:]]
    return sig.replace(parameters=[arrays, *rest])


def primitive(name: str, variadic: bool = False):
    """Decorator: turn ``forward(*arrays, **options) -> ndarray`` into a differentiable op.

    The forward's parameters without a default are its array inputs: the op accepts Tensors, arrays
    and Python scalars for them (with ``variadic=True`` the forward takes ``*arrays`` and the op one
    sequence of them, as ``concatenate`` does). Parameters with a default are options (axis, shape,
    slope...): never differentiated, passed by position or keyword exactly as the forward's signature
    says, so a forward written with NumPy's parameter order gives NumPy's calls. An ``out`` option
    only keeps NumPy's positions: ops always return a new Tensor. Register gradients with
    :func:`defvjp` or :func:`defvjp_argnum`; :data:`registry` lists every op.
    """

    def decorate(forward):
        if name in registry:
            raise ValueError(f"an op named {name!r} is already registered")
        rule = Rule(name, forward)
        registry[name] = rule
        signature = _public_signature(forward, variadic)
        params = signature.parameters.values()
        inputs = tuple(p.name for p in params if p.default is p.empty)
        n_inputs = len(inputs)
        # Options that may arrive as keywords without binding the full signature (the fast path).
        plain_options = frozenset(p.name for p in params if p.default is not p.empty) - {"out"}

        def run(parents, arrays, needs_grad, kwargs):
            try:
                out = forward(*arrays, **kwargs)
            except (ValueError, IndexError) as e:  # NumPy's words for operands that do not fit
                shapes = " and ".join(str(np.shape(a)) for a in arrays)
                raise type(e)(f"{name}: cannot apply to shapes {shapes}: {e}") from None
            except TypeError as e:
                raise TypeError(f"{name}: {e}") from None
            if type(out) is not np.ndarray:
                out = np.asarray(out)
            if needs_grad and _GradMode.enabled and out.dtype.kind == "f":
                return Tensor._result(out, rule, parents, arrays, kwargs)
            return Tensor._constant(out)

        def apply(tensors, kwargs):
            arrays = []
            needs_grad = False
            for t in tensors:
                if not isinstance(t, Tensor):
                    return apply_mixed(tensors, kwargs)
                arrays.append(t.data)
                if t.requires_grad:
                    needs_grad = True
            return run(tuple(tensors), tuple(arrays), needs_grad, kwargs)

        def apply_mixed(tensors, kwargs):
            """Some arguments are constants: wrap them as arrays of the tensors' dtype."""
            like = next((t.data.dtype for t in tensors if isinstance(t, Tensor)), None)
            parents, arrays = [], []
            needs_grad = False
            for t in tensors:
                if isinstance(t, Tensor):
                    parents.append(t)
                    arrays.append(t.data)
                    needs_grad = needs_grad or t.requires_grad
                else:
                    parents.append(None)
                    arrays.append(_coerce_constant(t, like))
            return run(tuple(parents), tuple(arrays), needs_grad, kwargs)

        def bind(args, kwargs):
            """Any other call form: split it by the signature into inputs and options."""
            try:
                bound = signature.bind(*args, **kwargs).arguments
            except TypeError as e:
                raise TypeError(f"{name}: {e}") from None
            if bound.pop("out", None) is not None:
                raise TypeError(f"{name}: out= is not supported; autodiff ops return a new Tensor")
            tensors = [bound.pop(n) for n in inputs]
            return tensors, bound

        @functools.wraps(forward)
        def op(*args, **kwargs):
            if len(args) != n_inputs or (kwargs and not kwargs.keys() <= plain_options):
                args, kwargs = bind(args, kwargs)
            if variadic:
                args = tuple(args[0])
            if rule.scalar is not None and not kwargs:
                result = _run_on_floats(rule.scalar, args, kwargs)
                if result is not None:
                    return result
            return apply(args, kwargs)

        op.__signature__ = signature
        op.rule = rule
        return op

    return decorate


def defvjp(op, *vjps) -> None:
    """Register one VJP per positional argument: ``vjp(g, out, *args, **kwargs) -> grad`` (None for
    an argument that is not differentiable). Return the gradient in the result's broadcast shape if
    convenient: the engine sums it down to the argument's shape."""
    op.rule.vjps = tuple(vjps)


def defvjp_argnum(op, vjp) -> None:
    """Register ``vjp(argnum, g, out, *args, **kwargs) -> grad`` for every argument at once
    (for variadic ops such as concatenate)."""
    op.rule.vjp_argnum = vjp


def defscalar(op, forward=None, *vjps) -> None:
    """Give an op kernels on Python floats, for calls without options whose inputs are all 0-d
    float64 tensors or Python floats and ints: NumPy spends about twenty times longer on a 0-d array
    than the arithmetic takes. A kernel must do the same IEEE double operations as the array forward
    (or VJP) does, so results stay bit-identical. Only a finite result is kept: otherwise (and on a
    division by zero) NumPy computes it again, so NaN, inf and NumPy's warnings stay NumPy's. Without
    kernels, the op's own forward and VJPs (registered first) are used: right when they are plain
    arithmetic."""
    rule = op.rule
    rule.scalar = FloatRule(rule, forward or rule.forward, vjps or rule.vjps)


_F64 = np.dtype(np.float64)
_isfinite = math.isfinite


def _run_on_floats(rule: FloatRule, inputs, kwargs):
    """The op's float kernel on its inputs, as a Tensor; None when the array path must run instead.
    The op's record keeps the input values as floats, which backward hands the float VJPs."""
    values = []
    parents = []
    tensors = needs_grad = False
    for x in inputs:
        if isinstance(x, Tensor):
            data = x.data
            if data.ndim or data.dtype is not _F64:
                return None
            value = data.item()
            parents.append(x)
            tensors = True
            if x.requires_grad:
                needs_grad = True
        elif type(x) is float or type(x) is int:
            try:
                value = float(x)
            except OverflowError:  # an int beyond float64: NumPy's words for it
                return None
            parents.append(None)
        else:
            return None
        values.append(value)
    if not tensors:  # numbers alone keep NumPy's dtypes (ints stay ints)
        return None
    try:
        out = rule.forward(*values)
    except ArithmeticError:  # division by zero: NumPy gives inf or NaN and warns
        return None
    if not _isfinite(out):
        return None
    data = np.array(out)
    if needs_grad and _GradMode.enabled:
        return Tensor._result(data, rule, tuple(parents), tuple(values), kwargs)
    return Tensor._constant(data)
