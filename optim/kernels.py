"""Array building blocks shared by the update rules (and open to plug-ins: optim exports them), each
mirroring one torch tensor operation so float64 trajectories agree with torch.optim to rounding
(torch fuses some of these with FMA); and the bit-reproducible sum of squares behind every gradient
norm (clipping, the non-finite check, recorded norms)."""

from __future__ import annotations

import math

import numpy as np

# Dot products run on rows of this many values: OpenBLAS splits a dot product over threads above
# 10,000 values, which changes its rounding with the thread count; below, one thread sums them in an
# order that does not depend on memory alignment either (checked with 1 and 2 threads, 8 offsets).
DOT_ROW = 8192


def dot_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A contiguous 1-D array as (rows of DOT_ROW values, the remaining tail), both views."""
    k = x.size // DOT_ROW
    return x[: k * DOT_ROW].reshape(k, DOT_ROW), x[k * DOT_ROW :]


def sumsq(x: np.ndarray, rows: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Σ x² of a contiguous 1-D array: BLAS dot products (twice as fast as einsum's) that are
    bit-identical whatever the BLAS thread count, so a norm (and any clipping it drives) is the same
    in every process. ``rows``: :func:`dot_rows` of ``x`` when the caller keeps them."""
    if x.size <= DOT_ROW:
        return float(np.dot(x, x))
    body, tail = dot_rows(x) if rows is None else rows
    partial = np.vecdot(body, body).tolist()
    partial.append(float(np.dot(tail, tail)))
    try:
        return math.fsum(partial)  # exactly rounded, so the order of the rows does not matter either
    except OverflowError:  # finite rows whose total is beyond the float range
        return math.inf


# torch.nn.utils.clip_grad_norm_ divides by (total_norm + 1e-6): so do the option and the function
CLIP_EPS = 1e-6


def clip_to_norm_(arrays, max_norm: float, total_norm: float) -> None:
    """torch's clipping by norm: multiply every array by max_norm / (total_norm + 1e-6) when that is
    below 1 (and by NaN when the norm is NaN, as torch does)."""
    coef = max_norm / (total_norm + CLIP_EPS)
    if not coef >= 1.0:
        for a in arrays:
            a *= coef


def effective_grad(p, g, out, maximize: bool, weight_decay: float):
    """torch's ``grad = -grad if maximize``, then L2 decay ``grad = grad + weight_decay·param``.
    Returns ``g`` itself when neither applies (never modified), else ``out``."""
    if weight_decay != 0:
        np.multiply(p, weight_decay, out=out)
        if maximize:
            out -= g
        else:
            out += g
        return out
    if maximize:
        return np.negative(g, out=out)
    return g


def decayed_grad(p, g, out, lr: float, hp: dict, decoupled: bool):
    """The gradient an Adam-family rule uses, torch's order: g ← −g if maximize; then weight decay λ
    either decoupled, θ ← θ(1 − lr·λ) in place (AdamW), or as L2, g ← g + λθ. Returns ``g`` itself
    when it is used as it is, else ``out``."""
    wd = hp["weight_decay"]
    if decoupled:
        if wd != 0:
            p *= 1 - lr * wd
        return effective_grad(p, g, out, hp["maximize"], 0.0)
    return effective_grad(p, g, out, hp["maximize"], wd)


def lerp_(a, b, weight: float, tmp) -> None:
    """``a.lerp_(b, weight)``: a + w·(b − a) for |w| < 0.5, else b − (b − a)·(1 − w) (torch's two
    branches keep the result exact at both ends)."""
    np.subtract(b, a, out=tmp)
    if abs(weight) < 0.5:
        tmp *= weight
        a += tmp
    else:
        tmp *= 1 - weight
        np.subtract(b, tmp, out=a)


def decay_add_square_(v, g, decay: float, tmp) -> None:
    """``v.mul_(decay).addcmul_(g, g, value=1 - decay)``: v·decay + ((1 − decay)·g)·g."""
    v *= decay
    np.multiply(g, 1 - decay, out=tmp)
    tmp *= g
    v += tmp


def add_scaled_ratio_(p, num, den, value: float, tmp) -> None:
    """``p.addcdiv_(num, den, value=value)``: p + value·(num / den). ``tmp`` may be ``den``."""
    np.divide(num, den, out=tmp)
    tmp *= value
    p += tmp
