"""Layers, a multilayer perceptron with named parameters, initialisers; and the losses (each an op
of its own, in losses.py) under the same roof, as torch.nn has them.

Parameters are named ``w1, b1, w2, b2, ...`` (weights shaped (in, out), each layer computing
``x @ w + b``); intermediate values are named ``t1 = x @ w1``, ``z1 = t1 + b1``, ``a1 = g(z1)``
as in the classic backprop lecture, so a traced graph reads like the blackboard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import ops
from .core import Tensor
from .losses import LOSSES, binary_cross_entropy_with_logits, cross_entropy, half_squared_error, mse

__all__ = ["ACTIVATIONS", "INIT_SCHEMES", "init_weight", "Linear", "MLP",
           "LOSSES", "half_squared_error", "mse", "cross_entropy", "binary_cross_entropy_with_logits"]

ACTIVATIONS = {
    "relu": ops.relu,
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "leaky_relu": ops.leaky_relu,
    "linear": None,
}
INIT_SCHEMES = ("he", "xavier", "normal")


def init_weight(scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator, dtype, std=0.01):
    """he: N(0, 2/fan_in) (for ReLU); xavier: U(±sqrt(6/(fan_in+fan_out))); normal: N(0, std²)."""
    if scheme == "he":
        w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    elif scheme == "xavier":
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, (fan_in, fan_out))
    elif scheme == "normal":
        w = rng.standard_normal((fan_in, fan_out)) * std
    else:
        raise ValueError(f"init scheme must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    return w.astype(dtype)


class Linear:
    """``x @ w + b`` with w shaped (in, out); parameters named w{index}, b{index}."""

    def __init__(self, n_in, n_out, index=1, init="he", rng=None, dtype=np.float64, values=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        values = values or {}
        self.index = index
        self._names = (f"t{index}", f"z{index}", f"a{index}")  # the lecture's names of its values
        wname, bname = f"w{index}", f"b{index}"
        w = values.get(wname)
        b = values.get(bname)
        if w is None:
            w = init_weight(init, n_in, n_out, rng, dtype)
        else:
            w = _checked(w, (n_in, n_out), wname, dtype)
        b = np.zeros(n_out, dtype=dtype) if b is None else _checked(b, (n_out,), bname, dtype)
        self.w = Tensor(w, requires_grad=True, name=wname)
        self.b = Tensor(b, requires_grad=True, name=bname)

    def parameters(self) -> dict[str, Tensor]:
        return {self.w.name: self.w, self.b.name: self.b}

    def __call__(self, x):
        t = ops.matmul(x, self.w)
        t.name = self._names[0]
        z = ops.add(t, self.b)
        z.name = self._names[1]
        return z


def _checked(value, shape, name, dtype):
    arr = np.asarray(value, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite")
    return arr.copy()


class MLP:
    """A stack of Linear layers: ``sizes = [in, hidden..., out]``, one activation per layer.

    ``init`` is a scheme name; ``values`` maps parameter names to explicit arrays, which win.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[str] | str = "relu",
        init: str = "he",
        seed: int = 0,
        dtype=np.float64,
        values: Mapping[str, object] | None = None,
    ):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got sizes={list(sizes)}")
        if any(int(n) < 1 for n in sizes):
            raise ValueError(f"MLP sizes must be positive integers, got {list(sizes)}")
        n_layers = len(sizes) - 1
        if isinstance(activations, str):
            activations = [activations] * n_layers
        if len(activations) != n_layers:
            raise ValueError(
                f"MLP with {n_layers} layers needs {n_layers} activations, got {len(activations)}"
            )
        for a in activations:
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}; choose from {', '.join(ACTIVATIONS)}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"init scheme must be one of {', '.join(INIT_SCHEMES)}, got {init!r}")
        values = dict(values or {})
        rng = np.random.default_rng(seed)
        self.sizes = [int(n) for n in sizes]
        self.activations = list(activations)
        self.layers = [
            Linear(self.sizes[i], self.sizes[i + 1], index=i + 1, init=init, rng=rng, dtype=dtype,
                   values=values)
            for i in range(n_layers)
        ]
        known = set(self.parameters())
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown parameter names {sorted(unknown)}; this model has {sorted(known)}")

    def parameters(self) -> dict[str, Tensor]:
        params: dict[str, Tensor] = {}
        for layer in self.layers:
            params.update(layer.parameters())
        return params

    def __call__(self, x):
        h = x
        for layer, act in zip(self.layers, self.activations, strict=True):
            h = layer(h)
            fn = ACTIVATIONS[act]
            if fn is not None:
                h = fn(h)
                h.name = layer._names[2]
        return h
