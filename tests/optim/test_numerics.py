"""Trajectories of every optimizer and option against references written from the update equations.

The references below work on one Python float at a time, straight from the equations of the issue
(and torch.optim's documented algorithms); they share no code with optim. A few first steps are
also checked against numbers worked out by hand.
"""

import math

import numpy as np
import pytest

import optim
from autodiff import Tensor

# ---- per-element references (scalar floats, written from the equations) -----------------------


def ref_sgd(theta, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False):
    b = None
    for g in grads:
        if maximize:
            g = -g
        g = g + weight_decay * theta
        if momentum:
            b = g if b is None else momentum * b + (1 - dampening) * g
            d = g + momentum * b if nesterov else b
        else:
            d = g
        theta = theta - lr * d
    return theta


def ref_adam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
             maximize=False, decoupled=False):
    b1, b2 = betas
    m = v = vmax = 0.0
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        vhat = vmax if amsgrad else v
        denom = math.sqrt(vhat) / math.sqrt(1 - b2**t) + eps
        theta = theta - lr / (1 - b1**t) * m / denom
    return theta


def ref_rmsprop(theta, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    s = gbar = buf = 0.0
    for g in grads:
        if maximize:
            g = -g
        g = g + weight_decay * theta
        s = alpha * s + (1 - alpha) * g * g
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            d = math.sqrt(s - gbar * gbar) + eps
        else:
            d = math.sqrt(s) + eps
        if momentum > 0:
            buf = momentum * buf + g / d
            theta = theta - lr * buf
        else:
            theta = theta - lr * g / d
    return theta


def ref_adagrad(theta, grads, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                maximize=False):
    s = initial_accumulator_value
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        g = g + weight_decay * theta
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        theta = theta - clr * g / (math.sqrt(s) + eps)
    return theta


def ref_adamax(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    b1, b2 = betas
    m = u = 0.0
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        u = max(b2 * u, abs(g) + eps)
        theta = theta - lr / (1 - b1**t) * m / u
    return theta


def ref_nadam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
              decoupled_weight_decay=False, maximize=False):
    b1, b2 = betas
    m = v = 0.0
    mu_prod = 1.0
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        if decoupled_weight_decay:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_prod *= mu
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = math.sqrt(v / (1 - b2**t)) + eps
        theta = (theta - lr * (1 - mu) / (1 - mu_prod) * g / denom
                 - lr * mu_next / (1 - mu_prod * mu_next) * m / denom)
    return theta


def ref_radam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
              maximize=False):
    b1, b2 = betas
    m = v = 0.0
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(grads, start=1):
        if maximize:
            g = -g
        if decoupled_weight_decay:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho > 5:
            rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            adaptive = math.sqrt(1 - b2**t) / (math.sqrt(v) + eps)
            theta = theta - lr * mhat * adaptive * rect
        else:
            theta = theta - lr * mhat
    return theta


REFS = {"sgd": ref_sgd, "adam": ref_adam, "adamw": ref_adam, "rmsprop": ref_rmsprop, "adagrad": ref_adagrad,
        "adamax": ref_adamax, "nadam": ref_nadam, "radam": ref_radam}

CASES = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.8, weight_decay=0.1, maximize=True)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, amsgrad=True)),
    ("adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3, maximize=True)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.01, weight_decay=0.3, amsgrad=True, maximize=True)),
    ("rmsprop", dict(lr=0.01)),
    ("rmsprop", dict(lr=0.01, centered=True)),
    ("rmsprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1, alpha=0.9, maximize=True)),
    ("adagrad", dict(lr=0.1)),
    ("adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.05, maximize=True)),
    ("adamax", dict(lr=0.01)),
    ("adamax", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("nadam", dict(lr=0.01)),
    ("nadam", dict(lr=0.01, weight_decay=0.1)),
    ("nadam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("radam", dict(lr=0.01)),
    ("radam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
]

# Gradients chosen so signs flip and magnitudes vary; 8 steps take RAdam past its rectification
# threshold (rho_t > 5 from step 6 on with the default betas).
GRADS = [[0.3, -1.2, 2.0], [-0.7, 0.4, 1.5], [1.1, 0.9, -0.3], [0.05, -2.5, 0.8], [-1.4, 0.2, 0.6],
         [0.6, -0.1, -1.9], [2.2, 1.3, 0.4], [-0.2, -0.8, 1.1]]
THETA0 = [0.5, -1.5, 2.5]


def _kwargs_for_ref(name, hp):
    kw = dict(hp)
    if name == "adamw":
        kw.setdefault("weight_decay", 1e-2)
        kw["decoupled"] = True
    return kw


@pytest.mark.parametrize(("name", "hp"), CASES, ids=[f"{n}-{'-'.join(h)}" for n, h in CASES])
def test_trajectory_matches_equations(name, hp):
    theta = Tensor(np.array(THETA0), requires_grad=True, name="theta")
    opt = optim.create(name, [theta], **hp)
    for k, g in enumerate(GRADS):
        theta.grad = np.array(g)
        opt.step()
        kw = _kwargs_for_ref(name, hp)
        expected = [REFS[name](x0, [gs[j] for gs in GRADS[: k + 1]], **kw) for j, x0 in enumerate(THETA0)]
        np.testing.assert_allclose(theta.data, expected, rtol=1e-12, atol=1e-15,
                                   err_msg=f"after step {k + 1}")


def test_float32_parameters_follow_the_same_rule():
    theta = Tensor(np.array(THETA0, dtype=np.float32), requires_grad=True)
    opt = optim.Adam([theta], lr=0.01)
    for g in GRADS[:4]:
        theta.grad = np.array(g, dtype=np.float32)
        opt.step()
    assert theta.data.dtype == np.float32
    expected = [ref_adam(x0, [gs[j] for gs in GRADS[:4]], lr=0.01) for j, x0 in enumerate(THETA0)]
    np.testing.assert_allclose(theta.data, expected, rtol=1e-5)


# ---- first steps worked out by hand ----------------------------------------------------------------


def test_sgd_momentum_by_hand():
    # lr 0.1, mu 0.9, tau 0.5, grads 1, 2: b1 = 1 (a copy, no dampening); theta = 1 - 0.1 = 0.9;
    # b2 = 0.9 + 0.5*2 = 1.9; theta = 0.9 - 0.19 = 0.71
    w = Tensor(np.array([1.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.5)
    w.grad = np.array([1.0])
    opt.step()
    assert w.data[0] == pytest.approx(0.9, abs=1e-15)
    w.grad = np.array([2.0])
    opt.step()
    assert w.data[0] == pytest.approx(0.71, abs=1e-15)


def test_sgd_nesterov_by_hand():
    # lr 0.1, mu 0.5, grads 1, 1: b1 = 1, d = 1 + 0.5 = 1.5, theta = -0.15;
    # b2 = 0.5 + 1 = 1.5, d = 1 + 0.75 = 1.75, theta = -0.15 - 0.175 = -0.325
    w = Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.5, nesterov=True)
    for _ in range(2):
        w.grad = np.array([1.0])
        opt.step()
    assert w.data[0] == pytest.approx(-0.325, abs=1e-15)


def test_adam_first_step_by_hand():
    # t = 1: m = 0.1 g, v = 0.001 g², m̂ = g, √v̂ = |g|: theta -= lr · g / (|g| + eps)
    w = Tensor(np.array([1.0, 1.0]), requires_grad=True)
    opt = optim.Adam([w], lr=0.1, eps=0.5)
    w.grad = np.array([2.0, -0.5])
    opt.step()
    np.testing.assert_allclose(w.data, [1 - 0.1 * 2 / 2.5, 1 + 0.1 * 0.5 / 1.0], rtol=1e-14)


def test_adam_eps_is_added_after_the_bias_corrected_root():
    # With eps added before the correction the second step would differ: pin the intended one.
    w = Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.Adam([w], lr=1.0, betas=(0.0, 0.5), eps=1.0)
    w.grad = np.array([4.0])
    opt.step()  # m = 4, v = 8, v̂ = 16: step = 4 / (4 + 1) = 0.8
    assert w.data[0] == pytest.approx(-0.8, abs=1e-15)
    w.grad = np.array([4.0])
    opt.step()  # m = 4, v = 12, v̂ = 12/0.75 = 16: another 0.8
    assert w.data[0] == pytest.approx(-1.6, abs=1e-15)


def test_amsgrad_keeps_the_max_of_the_raw_second_moment():
    # beta2 = 0.5: v1 = 0.5·16 = 8, v2 = 4 + 0 = 4; AMSGrad uses max(8, 4) = 8, corrected by 1 − 0.25.
    w = Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.Adam([w], lr=1.0, betas=(0.0, 0.5), eps=0.0, amsgrad=True)
    w.grad = np.array([4.0])
    opt.step()
    w.grad = np.array([1e-300])  # essentially zero but keeps m > 0 so the step is visible
    before = w.data[0]
    opt.step()
    assert w.data[0] - before == pytest.approx(-1e-300 / (math.sqrt(8) / math.sqrt(0.75)), rel=1e-12)


def test_adamw_shrinks_before_the_moments():
    # lr 0.1, wd 0.5, g 0: theta = 2·(1 − 0.05) = 1.9 and the Adam part adds 0 (m = 0).
    w = Tensor(np.array([2.0]), requires_grad=True)
    opt = optim.AdamW([w], lr=0.1, weight_decay=0.5)
    w.grad = np.array([0.0])
    opt.step()
    assert w.data[0] == pytest.approx(1.9, abs=1e-15)


def test_adagrad_lr_decay_by_hand():
    # lr 1, decay 1, g = 1 each step: s = 1, 2; steps 1/(1) and 1/(2)·1/√2
    w = Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.Adagrad([w], lr=1.0, lr_decay=1.0, eps=0.0)
    w.grad = np.array([1.0])
    opt.step()
    assert w.data[0] == pytest.approx(-1.0, abs=1e-15)
    w.grad = np.array([1.0])
    opt.step()
    assert w.data[0] == pytest.approx(-1.0 - 0.5 / math.sqrt(2), abs=1e-15)


def test_rmsprop_centered_by_hand():
    # alpha 0.5, g = 2: s = 2, ḡ = 1, d = √(2 − 1) = 1: theta = −lr·2
    w = Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.RMSprop([w], lr=0.1, alpha=0.5, eps=0.0, centered=True)
    w.grad = np.array([2.0])
    opt.step()
    assert w.data[0] == pytest.approx(-0.2, abs=1e-15)
