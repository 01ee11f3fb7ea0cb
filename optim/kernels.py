"""Array building blocks shared by the update rules, each mirroring one torch tensor operation so
float64 trajectories agree with torch.optim to rounding (torch fuses some of these with FMA)."""

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
