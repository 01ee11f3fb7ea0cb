"""Adam and AdamW (torch.optim.Adam / AdamW), with AMSGrad and maximize."""

from __future__ import annotations

import numpy as np

from .hyper import Hyper, betas_field, eps_field, lr_field, maximize_field, weight_decay_field
from .kernels import add_scaled_ratio_, decay_add_square_, decayed_grad, lerp_
from .optimizer import Optimizer


def adam_update(p, g, state, scratch, step, lr, hp, decoupled: bool) -> None:
    """One Adam step on flat arrays, torch's order of operations:
    g ← −g if maximize; AdamW: θ ← θ(1 − lr·λ), Adam: g ← g + λθ; m ← lerp(m, g, 1 − β1);
    v ← β2 v + (1 − β2) g²; AMSGrad: v̂ ← max(v̂, v); θ ← θ − lr/(1 − β1^t) · m / (√v̂ / √(1 − β2^t) + ε)."""
    gw_buf, tmp = scratch
    beta1, beta2 = hp["betas"]
    g = decayed_grad(p, g, gw_buf, lr, hp, decoupled)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    lerp_(m, g, 1 - beta1, tmp)
    decay_add_square_(v, g, beta2, tmp)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    if hp["amsgrad"]:
        vmax = state["max_exp_avg_sq"]
        np.maximum(vmax, v, out=vmax)
        v = vmax
    np.sqrt(v, out=tmp)
    tmp /= bias_correction2_sqrt
    tmp += hp["eps"]
    add_scaled_ratio_(p, m, tmp, -step_size, tmp)


class Adam(Optimizer):
    """Adam: moments m, v with bias corrections 1 − β^t from the step count, ε added after the
    square root of the bias-corrected second moment; L2 weight decay adds λθ to the gradient."""

    name = "adam"
    hyperparameters = (
        lr_field(1e-3),
        betas_field(),
        eps_field(1e-8),
        weight_decay_field(),
        Hyper("amsgrad", "bool", False, "use the running maximum of the second moment (AMSGrad)"),
        maximize_field(),
    )
    n_scratch = 2

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, **options):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize), **options)

    @classmethod
    def state_keys(cls, hp):
        keys = ("exp_avg", "exp_avg_sq")
        return keys + ("max_exp_avg_sq",) if hp["amsgrad"] else keys

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        adam_update(p, g, state, scratch, step, lr, hp, decoupled=False)


class AdamW(Adam):
    """AdamW: decoupled weight decay, θ ← θ(1 − lr·λ) before the moments are updated."""

    name = "adamw"
    hyperparameters = tuple(weight_decay_field(1e-2, decoupled=True) if h.name == "weight_decay" else h
                            for h in Adam.hyperparameters)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False, **options):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, **options)

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        adam_update(p, g, state, scratch, step, lr, hp, decoupled=True)
