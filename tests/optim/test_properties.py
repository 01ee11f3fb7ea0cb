"""Properties every optimizer must have, checked over generated inputs, and convergence on classic
test functions (gradients from autodiff)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autodiff as ad
import optim
from autodiff import Tensor

NAMES = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam", "radam"]

# Options that change each rule's path (momentum, centering, amsgrad, ...) without weight decay.
VARIANTS = {
    "sgd": [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.5, dampening=0.3)],
    "adam": [dict(), dict(amsgrad=True)],
    "adamw": [dict(weight_decay=0.0), dict(weight_decay=0.0, amsgrad=True)],
    "rmsprop": [dict(), dict(centered=True, momentum=0.9)],
    "adagrad": [dict(), dict(lr_decay=0.1, initial_accumulator_value=0.5)],
    "adamax": [dict()],
    "nadam": [dict()],
    "radam": [dict()],
}
CASES = [(n, v) for n in NAMES for v in VARIANTS[n]]

arrays = st.integers(1, 6).flatmap(
    lambda n: st.lists(st.floats(-10, 10, allow_subnormal=False), min_size=n, max_size=n).map(np.array))
grad_sequences = st.integers(1, 5).flatmap(
    lambda n: st.lists(st.floats(-10, 10, allow_subnormal=False), min_size=n, max_size=n)).map(np.array)


def _params(values):
    return [Tensor(np.array(values, dtype=float), requires_grad=True, name="p")]


@pytest.mark.parametrize(("name", "hp"), CASES)
@settings(max_examples=15, deadline=None)
@given(theta=arrays, lr=st.floats(1e-4, 1.0), steps=st.integers(1, 4))
def test_zero_gradient_without_weight_decay_is_a_no_op(name, hp, theta, lr, steps):
    ps = _params(theta)
    opt = optim.create(name, ps, lr=lr, **hp)
    for _ in range(steps):
        ps[0].grad = np.zeros_like(theta)
        opt.step()
    np.testing.assert_array_equal(ps[0].data, theta)


@pytest.mark.parametrize(("name", "hp"), CASES)
@settings(max_examples=15, deadline=None)
@given(theta=arrays, seed=st.integers(0, 2**32 - 1), wd=st.sampled_from([0.0, 0.1]))
def test_lr_zero_is_a_no_op(name, hp, theta, seed, wd):
    rng = np.random.default_rng(seed)
    ps = _params(theta)
    opt = optim.create(name, ps, lr=0.0, **{**hp, "weight_decay": wd})
    for _ in range(3):
        ps[0].grad = rng.standard_normal(theta.shape)
        opt.step()
    np.testing.assert_array_equal(ps[0].data, theta)


@pytest.mark.parametrize(("name", "hp"), CASES)
@settings(max_examples=15, deadline=None)
@given(theta=arrays, seed=st.integers(0, 2**32 - 1), wd=st.sampled_from([0.0, 0.05]))
def test_maximize_f_equals_minimize_minus_f(name, hp, theta, seed, wd):
    rng = np.random.default_rng(seed)
    up, down = _params(theta), _params(theta)
    hp = {**hp, "lr": 0.01, "weight_decay": wd}
    maxi = optim.create(name, up, maximize=True, **hp)
    mini = optim.create(name, down, **hp)
    for _ in range(4):
        g = rng.standard_normal(theta.shape)  # the gradient of f; −f has gradient −g
        up[0].grad, down[0].grad = g, -g
        maxi.step()
        mini.step()
        np.testing.assert_array_equal(up[0].data, down[0].data)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lr2=st.floats(1e-3, 0.5), steps=st.integers(1, 5))
def test_parameter_groups_equal_separate_optimizers(name, seed, lr2, steps):
    rng = np.random.default_rng(seed)
    shapes = [(2, 3), (3,), (4,)]
    init = [rng.standard_normal(s) for s in shapes]
    grouped = [Tensor(a.copy(), requires_grad=True) for a in init]
    alone = [Tensor(a.copy(), requires_grad=True) for a in init]
    override = {"lr": lr2, "weight_decay": 0.1}
    opt = optim.create(name, [{"params": grouped[:2]}, {"params": grouped[2:], **override}], lr=0.01)
    first = optim.create(name, alone[:2], lr=0.01)
    second = optim.create(name, alone[2:], **{"lr": 0.01, **override})
    for _ in range(steps):
        for a, b, s in zip(grouped, alone, shapes, strict=True):
            a.grad = rng.standard_normal(s)
            b.grad = a.grad.copy()
        opt.step()
        first.step()
        second.step()
    for a, b in zip(grouped, alone, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


@settings(max_examples=20, deadline=None)
@given(theta=arrays, seed=st.integers(0, 2**32 - 1))
def test_split_tensors_equal_one_tensor(theta, seed):
    # The flat layout must not couple parameters: one tensor or one tensor per entry, same result.
    rng = np.random.default_rng(seed)
    whole = Tensor(theta.copy(), requires_grad=True)
    parts = [Tensor(theta[i:i + 1].copy(), requires_grad=True) for i in range(theta.size)]
    a, b = optim.Adam([whole], lr=0.1), optim.Adam(parts, lr=0.1)
    for _ in range(3):
        g = rng.standard_normal(theta.shape)
        whole.grad = g
        for i, p in enumerate(parts):
            p.grad = g[i:i + 1].copy()
        a.step()
        b.step()
    np.testing.assert_array_equal(whole.data, np.concatenate([p.data for p in parts]))


# ---- convergence ------------------------------------------------------------------------------------


def _minimize(name, hp, f, start, steps):
    p = Tensor(np.array(start, dtype=float), requires_grad=True, name="p")
    opt = optim.create(name, [p], **hp)
    for _ in range(steps):
        opt.zero_grad()
        f(p).backward()
        opt.step()
    return p.data


def rosenbrock(p, a=1.0, b=100.0):
    x, y = p[0], p[1]
    return (a - x) ** 2 + b * (y - x * x) ** 2


ROSENBROCK_HP = {"sgd": dict(lr=2e-4, momentum=0.9), "adam": dict(lr=0.03), "adamw": dict(lr=0.03),
                 "rmsprop": dict(lr=0.01), "adagrad": dict(lr=0.5), "adamax": dict(lr=0.1),
                 "nadam": dict(lr=0.03), "radam": dict(lr=1e-3)}


@pytest.mark.parametrize("name", NAMES)
def test_rosenbrock_moves_closer_to_the_minimum(name):
    start = np.array([1.5, 1.5])
    end = _minimize(name, ROSENBROCK_HP[name], rosenbrock, start, 2000)
    assert np.linalg.norm(end - 1.0) < np.linalg.norm(start - 1.0)
    assert rosenbrock(Tensor(end)).item() < rosenbrock(Tensor(start)).item()


CENTER, CURVATURE = np.array([1.0, -2.0]), np.array([1.0, 10.0])


def quadratic(p):
    d = p - CENTER
    return ad.sum(CURVATURE * d * d) * 0.5


QUADRATIC_HP = {"sgd": dict(lr=0.05, momentum=0.5), "adam": dict(lr=0.1), "adamw": dict(lr=0.1),
                "rmsprop": dict(lr=0.05), "adagrad": dict(lr=1.0), "adamax": dict(lr=0.1),
                "nadam": dict(lr=0.1), "radam": dict(lr=0.1)}


@pytest.mark.parametrize("name", NAMES)
def test_quadratic_reaches_its_minimum(name):
    hp = dict(QUADRATIC_HP[name], schedule={"name": "cosine", "t_max": 1000})
    if name == "adamw":
        hp["weight_decay"] = 0.0  # decoupled decay would pull the minimum towards 0
    end = _minimize(name, hp, quadratic, [4.0, 3.0], 1000)
    assert np.linalg.norm(end - CENTER) < 1e-3
