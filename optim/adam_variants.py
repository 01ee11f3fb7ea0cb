"""Adamax, NAdam and RAdam (torch.optim.Adamax / NAdam / RAdam)."""

from __future__ import annotations

import numpy as np

from .hyper import Hyper, betas_field, eps_field, lr_field, maximize_field, weight_decay_field
from .kernels import add_scaled_ratio_, decay_add_square_, decayed_grad, effective_grad, lerp_
from .optimizer import Optimizer

_DECOUPLED = Hyper("decoupled_weight_decay", "bool", False,
                   "apply weight decay as θ ← θ(1 − lr·λ) (AdamW style) instead of adding λθ to the gradient")


class Adamax(Optimizer):
    """Adamax: m ← lerp(m, g, 1 − β1); u ← max(β2·u, |g| + ε); θ ← θ − lr/(1 − β1^t) · m/u."""

    name = "adamax"
    hyperparameters = (lr_field(2e-3), betas_field(), eps_field(1e-8), weight_decay_field(), maximize_field())
    n_scratch = 2

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False,
                 **options):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize), **options)

    @classmethod
    def state_keys(cls, hp):
        return ("exp_avg", "exp_inf")

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        gw_buf, tmp = scratch
        g = effective_grad(p, g, gw_buf, hp["maximize"], hp["weight_decay"])
        beta1, beta2 = hp["betas"]
        m, u = state["exp_avg"], state["exp_inf"]
        lerp_(m, g, 1 - beta1, tmp)
        u *= beta2
        np.abs(g, out=tmp)
        tmp += hp["eps"]
        np.maximum(u, tmp, out=u)
        clr = lr / (1 - beta1**step)
        add_scaled_ratio_(p, m, u, -clr, tmp)


class NAdam(Optimizer):
    """NAdam (Dozat 2016) with torch's momentum schedule μ_t = β1(1 − ½·0.96^(t·ψ)) and the running
    product of μ kept per parameter (``mu_product``, computed in float64)."""

    name = "nadam"
    hyperparameters = (lr_field(2e-3), betas_field(), eps_field(1e-8), weight_decay_field(),
                       Hyper("momentum_decay", "float", 4e-3, "ψ of the momentum schedule", low=0.0),
                       _DECOUPLED, maximize_field())
    n_scratch = 3
    scalar_state = {"mu_product": 1.0}

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, maximize=False, **options):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize),
                         **options)

    @classmethod
    def state_keys(cls, hp):
        return ("exp_avg", "exp_avg_sq")

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        gw_buf, tmp, tmp2 = scratch
        beta1, beta2 = hp["betas"]
        bias_correction2 = 1 - beta2**step
        g = decayed_grad(p, g, gw_buf, lr, hp, hp["decoupled_weight_decay"])
        psi = hp["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * psi)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * psi)))
        mu_product = scalars["mu_product"] * mu
        m, v = state["exp_avg"], state["exp_avg_sq"]
        lerp_(m, g, 1 - beta1, tmp)
        decay_add_square_(v, g, beta2, tmp)
        np.divide(v, bias_correction2, out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += hp["eps"]
        mu_product_next = mu_product * mu_next
        add_scaled_ratio_(p, g, tmp, -lr * (1.0 - mu) / (1.0 - mu_product), tmp2)
        add_scaled_ratio_(p, m, tmp, (-lr * mu_next) / (1.0 - mu_product_next), tmp2)
        return {"mu_product": mu_product}


class RAdam(Optimizer):
    """RAdam (Liu et al. 2020): Adam with the variance rectification r_t when the approximated SMA
    length ρ_t exceeds 5, and plain bias-corrected momentum SGD before that."""

    name = "radam"
    hyperparameters = (lr_field(1e-3), betas_field(), eps_field(1e-8), weight_decay_field(), _DECOUPLED,
                       maximize_field())
    n_scratch = 3

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, maximize=False, **options):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize),
                         **options)

    @classmethod
    def state_keys(cls, hp):
        return ("exp_avg", "exp_avg_sq")

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        gw_buf, tmp, tmp2 = scratch
        beta1, beta2 = hp["betas"]
        g = decayed_grad(p, g, gw_buf, lr, hp, hp["decoupled_weight_decay"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        lerp_(m, g, 1 - beta1, tmp)
        decay_add_square_(v, g, beta2, tmp)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        np.divide(m, bias_correction1, out=tmp)  # bias-corrected first moment
        tmp *= lr
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        if rho_t > 5.0:
            np.sqrt(v, out=tmp2)
            tmp2 += hp["eps"]
            np.divide(bias_correction2**0.5, tmp2, out=tmp2)  # adaptive lr
            tmp *= tmp2
            tmp *= ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        p -= tmp
