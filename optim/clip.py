"""Standalone gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.

Both accept the parameters in any form an optimizer does (a mapping, an iterable of Tensors, a list
of parameter-group dicts) or an Optimizer, skip parameters whose ``.grad`` is None, modify the
gradients in place, and return the global 2-norm (or ``norm_type``-norm) *before* clipping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from autodiff import Tensor

from .errors import HyperparameterError, NonFiniteGradientError
from .kernels import clip_to_norm_


def _tensors(params) -> list[Tensor]:
    from .optimizer import Optimizer  # local: optimizer imports nothing from here

    if isinstance(params, Optimizer):
        return list(params.params.values())
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, Mapping):
        return list(params.values())
    out = []
    for item in params:
        if isinstance(item, Mapping):
            inner = item["params"]
            out += _tensors(inner)
        else:
            out.append(item)
    return out


def _norm(grads: list[np.ndarray], norm_type: float) -> float:
    # torch: the norm of the per-tensor norms
    if not grads:
        return 0.0
    if norm_type == math.inf:
        return float(max(np.max(np.abs(g)) if g.size else 0.0 for g in grads))
    per_tensor = np.array([np.linalg.norm(g.ravel(), ord=norm_type) for g in grads])
    return float(np.linalg.norm(per_tensor, ord=norm_type))


def clip_grad_norm(params, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> float:
    """Scale all gradients by ``max_norm / (total_norm + 1e-6)`` when that is below 1; return
    ``total_norm``, the norm of the per-tensor norms (torch's formula)."""
    for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise HyperparameterError(f"clip_grad_norm: {name} must be a number in (0, inf], got {value!r}",
                                      name=name, allowed="(0, inf]", value=value)
    grads = [t.grad for t in _tensors(params) if t.grad is not None]
    total = _norm(grads, float(norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteGradientError(
            f"clip_grad_norm: the total {norm_type}-norm of the gradients is {total}")
    clip_to_norm_(grads, max_norm, total)
    return total


def clip_grad_value(params, value: float) -> float:
    """Clamp every gradient entry to ``[-value, value]``; return the global 2-norm before."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise HyperparameterError(
            f"clip_grad_value: value must be a number in (0, inf), got {value!r}",
            name="value", allowed="(0, inf)", value=value)
    grads = [t.grad for t in _tensors(params) if t.grad is not None]
    total = _norm(grads, 2.0)
    for g in grads:
        np.clip(g, -value, value, out=g)
    return total
