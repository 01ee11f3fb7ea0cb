"""A third-party optimizer, as a plug-in distribution would ship it (used by test_optim_plugin)."""

import numpy as np

import optim


class SignSGD(optim.Optimizer):
    """Sign SGD with momentum: b ← μb + g; θ ← θ − lr·sign(b)."""

    hyperparameters = (
        optim.Hyper("lr", "float", 0.01, "learning rate", low=0.0),
        optim.Hyper("momentum", "float", 0.0, "momentum factor", low=0.0, high=1.0, high_open=True),
    )
    n_scratch = 1

    def __init__(self, params, lr=0.01, momentum=0.0, **options):
        super().__init__(params, dict(lr=lr, momentum=momentum), **options)

    @classmethod
    def state_keys(cls, hp):
        return ("momentum_buffer",)

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        buf = state["momentum_buffer"]
        buf *= hp["momentum"]
        buf += g
        np.sign(buf, out=scratch[0])
        scratch[0] *= -lr
        p += scratch[0]
