"""RMSprop (torch.optim.RMSprop), with centering, momentum, weight decay and maximize."""

from __future__ import annotations

import numpy as np

from .hyper import Hyper, eps_field, lr_field, maximize_field, weight_decay_field
from .kernels import add_scaled_ratio_, decay_add_square_, effective_grad, lerp_
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop, torch's rule: s ← αs + (1 − α)g²; centered: ḡ ← lerp(ḡ, g, 1 − α), d = √(s − ḡ²) + ε,
    else d = √s + ε; with momentum μ: b ← μb + g/d, θ ← θ − lr·b; else θ ← θ − lr·g/d."""

    name = "rmsprop"
    hyperparameters = (
        lr_field(1e-2),
        Hyper("alpha", "float", 0.99, "smoothing constant of the squared-gradient average",
              low=0.0, high=1.0),
        eps_field(1e-8),
        weight_decay_field(),
        Hyper("momentum", "float", 0.0, "momentum factor", low=0.0),
        Hyper("centered", "bool", False,
              "normalise by the estimated variance instead of the raw second moment"),
        maximize_field(),
    )
    n_scratch = 2

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False, **options):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize), **options)

    @classmethod
    def state_keys(cls, hp):
        keys = ("square_avg",)
        if hp["momentum"] > 0:
            keys += ("momentum_buffer",)
        if hp["centered"]:
            keys += ("grad_avg",)
        return keys

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        gw_buf, tmp = scratch
        g = effective_grad(p, g, gw_buf, hp["maximize"], hp["weight_decay"])
        alpha = hp["alpha"]
        square_avg = state["square_avg"]
        decay_add_square_(square_avg, g, alpha, tmp)
        if hp["centered"]:
            grad_avg = state["grad_avg"]
            lerp_(grad_avg, g, 1 - alpha, tmp)
            np.multiply(grad_avg, grad_avg, out=tmp)
            np.subtract(square_avg, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(square_avg, out=tmp)
        tmp += hp["eps"]
        if hp["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= hp["momentum"]
            add_scaled_ratio_(buf, g, tmp, 1.0, tmp)
            np.multiply(buf, -lr, out=tmp)
            p += tmp
        else:
            add_scaled_ratio_(p, g, tmp, -lr, tmp)
