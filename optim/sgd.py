"""SGD with momentum, dampening, Nesterov momentum, L2 weight decay and maximize (torch.optim.SGD)."""

from __future__ import annotations

import numpy as np

from .errors import HyperparameterError
from .hyper import Hyper, lr_field, maximize_field, weight_decay_field
from .kernels import effective_grad
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, torch's rule: g ← −g if maximize; g ← g + λθ;
    with momentum μ: b ← g on a parameter's first step, else b ← μb + (1 − τ)g;
    d = g + μb (Nesterov) or b; θ ← θ − lr·d."""

    name = "sgd"
    hyperparameters = (
        lr_field(1e-3),
        Hyper("momentum", "float", 0.0, "momentum factor μ", low=0.0),
        Hyper("dampening", "float", 0.0, "dampening τ of the momentum (not applied on the first step)",
              low=0.0, high=1.0),
        Hyper("nesterov", "bool", False, "Nesterov momentum (needs momentum > 0 and dampening = 0)"),
        weight_decay_field(),
        maximize_field(),
    )
    n_scratch = 2

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 maximize=False, **options):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay, maximize=maximize), **options)

    @classmethod
    def check(cls, hp, owner):
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise HyperparameterError(
                f"{owner}: nesterov=True needs momentum > 0 and dampening = 0, got momentum={hp['momentum']} "
                f"and dampening={hp['dampening']}",
                name="nesterov", allowed="momentum > 0 and dampening = 0", value=True,
            )

    @classmethod
    def state_keys(cls, hp):
        return ("momentum_buffer",) if hp["momentum"] != 0 else ()

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        gw_buf, tmp = scratch
        g = effective_grad(p, g, gw_buf, hp["maximize"], hp["weight_decay"])
        momentum = hp["momentum"]
        if momentum != 0:
            buf = state["momentum_buffer"]
            if step == 1:
                np.copyto(buf, g)
            else:
                buf *= momentum
                dampening = hp["dampening"]
                if dampening == 0:
                    buf += g  # torch's add_(g, alpha=1): exact, so skip the multiply
                else:
                    np.multiply(g, 1 - dampening, out=tmp)
                    buf += tmp
            if hp["nesterov"]:
                np.multiply(buf, momentum, out=tmp)
                tmp += g
                g = tmp
            else:
                g = buf
        np.multiply(g, -lr, out=tmp)
        p += tmp
        return None
