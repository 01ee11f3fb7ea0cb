"""Array building blocks shared by the update rules, each mirroring one torch tensor operation so
float64 trajectories agree with torch.optim to rounding (torch fuses some of these with FMA)."""

from __future__ import annotations

import numpy as np


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
