"""Adagrad (torch.optim.Adagrad), with learning-rate decay, weight decay and maximize."""

from __future__ import annotations

import numpy as np

from .hyper import Hyper, eps_field, lr_field, maximize_field, weight_decay_field
from .kernels import add_scaled_ratio_, effective_grad
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad, torch's rule: clr = lr / (1 + (t − 1)·lr_decay); s ← s + g²; θ ← θ − clr·g/(√s + ε),
    the sum starting at initial_accumulator_value."""

    name = "adagrad"
    hyperparameters = (
        lr_field(1e-2),
        Hyper("lr_decay", "float", 0.0, "learning-rate decay per step", low=0.0),
        weight_decay_field(),
        Hyper("initial_accumulator_value", "float", 0.0, "starting value of the squared-gradient sum",
              low=0.0),
        eps_field(1e-10),
        maximize_field(),
    )
    n_scratch = 2

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, maximize=False, **options):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize), **options)

    @classmethod
    def state_keys(cls, hp):
        return ("sum",)

    @classmethod
    def init_state(cls, key, hp, size, dtype):
        return np.full(size, hp["initial_accumulator_value"], dtype=dtype)

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        gw_buf, tmp = scratch
        g = effective_grad(p, g, gw_buf, hp["maximize"], hp["weight_decay"])
        clr = lr / (1 + (step - 1) * hp["lr_decay"])
        state_sum = state["sum"]
        np.multiply(g, g, out=tmp)
        state_sum += tmp
        np.sqrt(state_sum, out=tmp)
        tmp += hp["eps"]
        add_scaled_ratio_(p, g, tmp, -clr, tmp)
