"""The losses, each one registered op (like torch's fused losses): one node J in the graph, as on the
lecture's blackboard, and a gradient computed in one step. All are means over the batch.

As in ops.py, each section is one loss: its forward over arrays, the VJP of each argument right
below it, then the function users call (which checks its arguments and names the result J).
"""

from __future__ import annotations

import numpy as np

from . import ops
from .core import Tensor
from .primitives import defvjp, primitive


def _batch(d):
    """Examples in a batch: rows of a 2-D+ array, entries of a 1-D one."""
    return d.size // d.shape[-1] if d.ndim > 1 else max(d.size, 1)


def _entries(a, b):
    """Entries a mean over every entry divides by (at least 1)."""
    return max(np.broadcast(a, b).size, 1)


# --- half squared error: the lecture's cost --------------------------------------------------------


@primitive("half_squared_error")
def _half_squared_error(pred, target):
    d = pred - target
    return np.add.reduce(d * d, axis=None) / (2 * _batch(d))


def _hse_vjp(sign):
    def vjp(g, out, pred, target):
        d = pred - target
        return d * (g * sign / _batch(d))

    return vjp


defvjp(_half_squared_error, _hse_vjp(1), _hse_vjp(-1))


def half_squared_error(pred, target):
    """J = 1/2 ||pred − target||² per example, averaged over the batch (the lecture's cost)."""
    return _half_squared_error(pred, target).named("J")


# --- mean squared error ------------------------------------------------------------------------------


@primitive("mse")
def _mse(pred, target):
    d = pred - target
    return np.add.reduce(d * d, axis=None) / max(d.size, 1)


defvjp(
    _mse,
    lambda g, out, pred, target: g * 2 * (pred - target) / _entries(pred, target),
    lambda g, out, pred, target: g * 2 * (target - pred) / _entries(pred, target),
)


def mse(pred, target):
    """Mean of the squared error over every entry (torch.nn.MSELoss)."""
    return _mse(pred, target).named("J")


# --- softmax cross-entropy against integer labels ----------------------------------------------------


@primitive("cross_entropy")
def _cross_entropy(logits, labels):
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    logp = shifted - np.log(np.add.reduce(np.exp(shifted), axis=-1, keepdims=True))
    return -np.add.reduce(logp[np.arange(labels.shape[0]), labels]) / labels.shape[0]


def _cross_entropy_vjp(g, out, logits, labels):
    e = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    p = e / np.add.reduce(e, axis=-1, keepdims=True)
    p[np.arange(labels.shape[0]), labels] -= 1
    return p * (g / labels.shape[0])


defvjp(_cross_entropy, _cross_entropy_vjp, None)  # labels are not differentiable


def cross_entropy(logits, labels):
    """Softmax cross-entropy of (batch, classes) logits against integer class labels."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    n_classes = logits.shape[-1]
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy: expected logits (batch, classes) and labels (batch,), got {logits.shape} "
            f"and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}"
        )
    return _cross_entropy(logits, labels).named("J")


# --- binary cross-entropy on logits ------------------------------------------------------------------


@primitive("binary_cross_entropy_with_logits")
def _bce_with_logits(z, y):
    # max(z, 0) − z·y + log(1 + e^{−|z|}): never exponentiates a positive number
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return np.add.reduce(loss, axis=None) / max(loss.size, 1)


_sigmoid = ops.sigmoid.rule.forward  # the sigmoid op's own forward over arrays (overflow-free)

defvjp(
    _bce_with_logits,
    lambda g, out, z, y: g * (_sigmoid(z) - y) / _entries(z, y),
    lambda g, out, z, y: g * -z / _entries(z, y),
)


def binary_cross_entropy_with_logits(logits, targets):
    """Mean of −[y log σ(z) + (1 − y) log(1 − σ(z))] over every entry, computed stably."""
    return _bce_with_logits(logits, targets).named("J")


LOSSES = {
    "half_squared_error": half_squared_error,
    "mse": mse,
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy_with_logits,
}
