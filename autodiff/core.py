"""The engine: tensors and the backward pass.

Every op — built-in or a user's — is made by ``primitive`` (primitives.py): a NumPy forward function
plus one vector-Jacobian product (VJP) per differentiable argument. Calling the op on tensors runs
the forward on their arrays and, when some input needs a gradient, records the op in the output
tensor. ``backward`` walks those records in reverse topological order without recursion, calls the
VJPs of the inputs that need them, undoes broadcasting in one place (:func:`sum_to_shape`), and
frees the graph as it goes.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math

import numpy as np

__all__ = [
    "Tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "sum_to_shape",
    "topological_order",
    "tracing",
]

_FLOAT_KINDS = "f"
_NUMERIC_KINDS = "biuf"


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    return _GradMode.enabled


class _SetGrad(contextlib.ContextDecorator):
    """Context manager and decorator that switches graph recording on or off."""

    def __init__(self, mode: bool):
        self.mode = mode
        self._saved: list[bool] = []

    def __enter__(self):
        self._saved.append(_GradMode.enabled)
        _GradMode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _GradMode.enabled = self._saved.pop()
        return False


def no_grad(fn=None):
    """``with ad.no_grad():``, ``@ad.no_grad()`` or ``@ad.no_grad``: run ops without recording a
    graph."""
    return _SetGrad(False) if fn is None else _SetGrad(False)(fn)


def enable_grad():
    return _SetGrad(True)


# --------------------------------------------------------------------------------------------
# Tensor


def _as_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    try:
        arr = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"Tensor data must be numeric (a number or nested lists of numbers): {e}") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"Tensor data must be numeric, got dtype {arr.dtype} from {type(data).__name__}")
    return arr


_creation_counter = itertools.count()  # orders tensors by creation: a topological order


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``.grad`` holds the derivative of the last ``backward`` output with respect to this tensor, for
    leaves with ``requires_grad=True`` (and for any tensor after :meth:`retain_grad`). Gradients
    *accumulate* across ``backward`` calls until :meth:`zero_grad`, as in PyTorch; when ``.grad``
    already holds an array of the right shape it is updated in place, so optimizers may keep it as a
    view into a flat buffer.
    """

    __slots__ = ("data", "grad", "requires_grad", "name", "_rule", "_parents", "_args", "_kwargs",
                 "_retain", "_seq", "__weakref__")
    __array_priority__ = 1000  # make ndarray + Tensor defer to Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        arr = _as_array(data, dtype)
        if requires_grad and arr.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {arr.dtype}; "
                "pass dtype=np.float64 (or float32)"
            )
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._rule = None
        self._parents = ()
        self._args = ()
        self._kwargs = None
        self._retain = False
        self._seq = next(_creation_counter)

    @classmethod
    def _result(cls, data, rule, parents, args, kwargs) -> Tensor:
        """Fast constructor for op outputs (no validation: the data came from NumPy)."""
        t = cls.__new__(cls)
        t.data = data
        t.grad = None
        t.requires_grad = True
        t.name = None
        t._rule = rule
        t._parents = parents
        t._args = args
        t._kwargs = kwargs
        t._retain = False
        t._seq = next(_creation_counter)
        if _tracers:
            _tracers[-1](t)
        return t

    @classmethod
    def _constant(cls, data) -> Tensor:
        t = cls.__new__(cls)
        t.data = data
        t.grad = None
        t.requires_grad = False
        t.name = None
        t._rule = None
        t._parents = ()
        t._args = ()
        t._kwargs = None
        t._retain = False
        t._seq = next(_creation_counter)
        return t

    # --- array-like attributes
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    @property
    def is_leaf(self) -> bool:
        return self._rule is None

    # --- how it was computed (read by autodiff.graph; None and () once backward freed the graph)

    @property
    def op(self) -> str | None:
        """Name of the registered op that made this tensor; None for a leaf."""
        return None if self._rule is None else self._rule.name

    @property
    def parents(self) -> tuple:
        """The op's arguments that were tensors, position by position (None for a constant)."""
        return self._parents

    @property
    def operands(self) -> tuple:
        """The arrays the op's forward received, position by position (constants included)."""
        # An op run by a float kernel records floats: show them as the arrays NumPy makes of them.
        return tuple(a if isinstance(a, np.ndarray) else np.asarray(a) for a in self._args or ())

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = f", name={self.name!r}" if self.name else ""
        extra += ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=6)}, dtype={self.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.item()

    def detach(self) -> Tensor:
        return Tensor._constant(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this (non-leaf) tensor after backward; used by the graph export."""
        self._retain = True
        return self

    def named(self, name: str) -> Tensor:
        self.name = name
        return self

    def __bool__(self):
        raise TypeError("the truth value of a Tensor is ambiguous; compare .item() or .data instead")

    # --- backward

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires a gradient."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of its computation "
                "has requires_grad=True (or it was computed under no_grad)"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar output, this one has shape "
                    f"{self.shape}; pass grad= an array of that shape"
                )
            grad = np.array(1, dtype=self.data.dtype)
            if self.data.ndim:  # (a reshape costs more than the 0-d array it would not change)
                grad = grad.reshape(self.data.shape)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad has shape {grad.shape}, output has shape {self.shape}")
        _backward(self, grad, retain_graph)


_FREED_MESSAGE = (
    "backward through a graph whose buffers were freed by an earlier backward; pass "
    "retain_graph=True to the first backward() if you need to go through it again"
)


def topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from root that need a gradient, inputs before the ops that use them.

    Every tensor carries a creation number (``_seq``) and an op's output is always newer than its
    inputs, so sorting the reachable set by creation number is a topological order.
    """
    seen = {root}
    stack = [root]
    while stack:
        node = stack.pop()
        if node._args is None:
            raise RuntimeError(_FREED_MESSAGE)
        for p in node._parents:
            if p is not None and p.requires_grad and p not in seen:
                seen.add(p)
                stack.append(p)
    return sorted(seen, key=lambda t: t._seq)


def _accumulate_leaf(t: Tensor, g: np.ndarray | float, owned: bool) -> None:
    if type(g) is float:  # from a float kernel: t is 0-d float64
        if t.grad is None:
            t.grad = np.array(g)
        else:
            t.grad += g
        return
    if t.grad is None:
        if owned and type(g) is np.ndarray and g.dtype == t.data.dtype:
            t.grad = g  # made for this tensor alone by a VJP: no copy needed
        else:
            # Copy: g may be shared (an add passes its g to both sides) or belong to the caller.
            # (np.array, not astype: VJPs of 0-d arrays return NumPy scalars; .grad is an array.)
            t.grad = np.array(g, dtype=t.data.dtype, copy=True)
    elif t.grad.shape == g.shape:
        t.grad += g
    else:
        t.grad = t.grad + g


def _backward(root: Tensor, grad: np.ndarray, retain_graph: bool) -> None:
    """Visit the graph newest-first from a heap keyed by creation number (no recursion, no separate
    sort): a tensor is popped only after every op that consumed it, since those are all newer.

    Only op outputs are queued; a leaf's gradient is added to its ``.grad`` as each contribution
    arrives (as PyTorch's AccumulateGrad does). A contribution a VJP computed afresh (not its incoming
    g, output or an argument passed through) may become ``.grad`` without a copy. Ops recorded by a
    float kernel (primitives.defscalar) pass Python floats between them.
    """
    if root._args is None:
        raise RuntimeError(_FREED_MESSAGE)
    if root._rule is None:
        _accumulate_leaf(root, grad, False)
        return
    grads = {root: grad}
    heap = [(-root._seq, root)]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        node = pop(heap)[1]
        g = grads.pop(node)
        rule = node._rule
        if node._retain:
            _accumulate_leaf(node, g, False)
        out, args, kwargs = node.data, node._args, node._kwargs
        if args is None:  # freed by an earlier backward
            raise RuntimeError(_FREED_MESSAGE)
        on_floats = rule.on_floats
        if on_floats:
            fout = out.item()
            if type(g) is not float:
                g = float(g)
        elif type(g) is float:
            g = np.array(g)
        for i, parent in enumerate(node._parents):
            if parent is None or not parent.requires_grad:
                continue
            if on_floats:
                try:
                    pg = rule.vjps[i](g, fout, *args)
                    finite = _isfinite(pg)
                except ArithmeticError:
                    finite = False
                if not finite:  # inf, NaN or a division by zero: NumPy computes it, with its warnings
                    pg = rule.array.vjps[i](np.array(g), out, *map(np.asarray, args))
            elif rule.vjp_argnum is not None:
                pg = rule.vjp_argnum(i, g, out, *args, **kwargs)
            else:
                vjp = rule.vjps[i] if i < len(rule.vjps) else None
                if vjp is None:
                    raise NotImplementedError(f"op {rule.name!r} has no gradient for its argument {i}")
                pg = vjp(g, out, *args, **kwargs)
            if pg is None:
                continue
            if type(pg) is not float:  # (a float kernel's fits already: its parent is 0-d float64)
                pdata = parent.data
                if pg.shape != pdata.shape:
                    pg = sum_to_shape(pg, pdata.shape)
                if pg.dtype is not pdata.dtype and pg.dtype != pdata.dtype:
                    pg = pg.astype(pdata.dtype, copy=False)
            if parent._rule is None:  # a leaf: accumulate now, no need to queue it
                _accumulate_leaf(parent, pg, type(pg) is float or _is_fresh(pg, g, out, args))
                continue
            prev = grads.get(parent)
            if prev is None:
                grads[parent] = pg
                push(heap, (-parent._seq, parent))
            else:
                grads[parent] = _add_grads(prev, pg)
        if not retain_graph:
            node._parents = ()
            node._args = None  # marks the node freed
            node._kwargs = None


_isfinite = math.isfinite


def _is_fresh(pg, g, out, args) -> bool:
    """Whether a VJP made pg afresh (not g, the output, an argument or a view of one), so it may
    become a leaf's .grad without a copy."""
    if type(pg) is not np.ndarray or pg.base is not None or pg is g or pg is out:
        return False
    return all(pg is not a for a in args)


def _add_grads(a, b):
    """Two contributions to one tensor's gradient; floats that overflow are added again by NumPy,
    which warns as it would have."""
    total = a + b
    if type(total) is float and not _isfinite(total):
        return np.float64(a) + b
    return total


def sum_to_shape(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Undo NumPy broadcasting: sum g over the axes along which an input of `shape` was stretched."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead == 1 and g.shape[1:] == shape:  # the common case: a bias broadcast over a batch
        return np.add.reduce(g, axis=0)
    if lead > 0:
        g = np.add.reduce(g, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = np.add.reduce(g, axis=axes, keepdims=True)
    return np.asarray(g).reshape(shape)  # a full reduction gives a NumPy scalar, not an array


# --------------------------------------------------------------------------------------------
# Tracing: see every recorded op output as it is made (autodiff.graph builds its graphs so).

_tracers: list = []


@contextlib.contextmanager
def tracing(callback):
    """Within the block, call ``callback(tensor)`` with every op output recorded for backward (the
    innermost block's callback only, so traces nest)."""
    _tracers.append(callback)
    try:
        yield
    finally:
        _tracers.remove(callback)
