"""Schedules (closed forms, applied inside step), clipping, and the non-finite gradient policy."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optim
from autodiff import Tensor
from optim import make_schedule


def _lrs(spec, n, base=1.0):
    """The learning rates an optimizer actually uses over n steps (read back from last_lr)."""
    w = Tensor(np.zeros(1), requires_grad=True)
    opt = optim.SGD([w], lr=base, schedule=spec)
    out = []
    for _ in range(n):
        w.grad = np.zeros(1)
        predicted = opt.lr
        opt.step()
        assert opt.last_lr == predicted
        out.append(opt.last_lr)
    return out


def test_constant_and_step_schedules_by_hand():
    assert _lrs({"name": "constant"}, 3) == [1.0, 1.0, 1.0]
    assert _lrs({"name": "constant", "factor": 0.5, "total_iters": 2}, 4) == [0.5, 0.5, 1.0, 1.0]
    assert _lrs({"name": "step", "step_size": 2, "gamma": 0.5}, 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert _lrs({"name": "multistep", "milestones": [1, 3], "gamma": 0.1}, 4) == pytest.approx(
        [1.0, 0.1, 0.1, 0.01], rel=1e-15)
    assert _lrs({"name": "exponential", "gamma": 0.5}, 4) == [1.0, 0.5, 0.25, 0.125]


def test_cosine_by_hand():
    lrs = _lrs({"name": "cosine", "t_max": 4, "eta_min": 0.2}, 5)
    # eta_min + (1 − eta_min)(1 + cos(π t/4))/2 at t = 0..4
    expected = [1.0, 0.2 + 0.8 * (1 + math.sqrt(0.5)) / 2, 0.6, 0.2 + 0.8 * (1 - math.sqrt(0.5)) / 2, 0.2]
    assert lrs == pytest.approx(expected, rel=1e-14)


def test_linear_warmup_and_warmup_cosine_by_hand():
    assert _lrs({"name": "linear_warmup", "start_factor": 0.25, "total_iters": 3}, 5) == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0], rel=1e-15)
    lrs = _lrs({"name": "warmup_cosine", "warmup_steps": 2, "total_steps": 6}, 8, base=0.1)
    # warm-up 0, 0.05; then cosine over 4 steps: 0.1, 0.1(1+√½)/2, 0.05, 0.1(1−√½)/2; then 0
    r = math.sqrt(0.5)
    expected = [0.0, 0.05, 0.1, 0.1 * (1 + r) / 2, 0.05, 0.1 * (1 - r) / 2, 0.0, 0.0]
    assert lrs == pytest.approx(expected, rel=1e-14, abs=1e-17)


def test_one_cycle_by_hand():
    # total 10, pct 0.3: rise over steps 0..2 from base/25 to base, fall over 2..9 to base/25/1e4
    lrs = _lrs({"name": "one_cycle", "total_steps": 10}, 12, base=1.0)
    lo, hi, end = 1 / 25, 1.0, 1 / 25 / 1e4
    assert lrs[0] == pytest.approx(lo, rel=1e-14)
    assert lrs[1] == pytest.approx(hi + (lo - hi) / 2 * (math.cos(math.pi * 0.5) + 1), rel=1e-14)
    assert lrs[2] == pytest.approx(hi, rel=1e-14)
    assert lrs[9] == pytest.approx(end, rel=1e-12)
    assert lrs[10] == lrs[11] == lrs[9]  # held past the cycle
    linear = _lrs({"name": "one_cycle", "total_steps": 10, "anneal_strategy": "linear"}, 3, base=1.0)
    assert linear == pytest.approx([lo, (lo + hi) / 2, hi], rel=1e-14)


def test_schedule_parameters_are_validated():
    with pytest.raises(optim.HyperparameterError,
                       match="step_size must be an integer in \\[1, inf\\), got 0"):
        make_schedule({"name": "step", "step_size": 0})
    with pytest.raises(optim.HyperparameterError, match="milestones must be a list of increasing integers"):
        make_schedule({"name": "multistep", "milestones": [5, 3]})
    with pytest.raises(optim.HyperparameterError, match="warmup_steps must be in \\[0, total_steps=5\\]"):
        make_schedule({"name": "warmup_cosine", "warmup_steps": 6, "total_steps": 5})
    with pytest.raises(optim.HyperparameterError, match="unknown schedule parameter 'T_max'"):
        make_schedule({"name": "cosine", "t_max": 5, "T_max": 5})


def test_schedule_spec_round_trips_through_json():
    spec = {"name": "multistep", "milestones": [2, 4], "gamma": 0.5}
    s = make_schedule(spec)
    assert s.spec() == spec
    assert make_schedule(s.spec()) == s


def test_schedule_scales_each_group_base_lr():
    a, b = Tensor(np.zeros(1), requires_grad=True), Tensor(np.zeros(1), requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 2.0}], lr=1.0,
                    schedule={"name": "exponential", "gamma": 0.5})
    for _ in range(3):
        a.grad, b.grad = np.ones(1), np.ones(1)
        opt.step()
    assert opt.last_lrs == [0.25, 0.5]
    assert a.data[0] == -(1 + 0.5 + 0.25) and b.data[0] == -(2 + 1 + 0.5)


# ---- clipping ------------------------------------------------------------------------------------


def _with_grads(*grads):
    ts = [Tensor(np.zeros(np.shape(g)), requires_grad=True) for g in grads]
    for t, g in zip(ts, grads, strict=True):
        t.grad = np.array(g, dtype=float)
    return ts


def test_clip_grad_norm_by_hand():
    ts = _with_grads([3.0, 0.0], [4.0])  # global norm 5
    assert optim.clip_grad_norm(ts, 1.0) == 5.0
    coef = 1.0 / (5.0 + 1e-6)  # torch's formula
    np.testing.assert_allclose(ts[0].grad, [3 * coef, 0.0], rtol=1e-15)
    np.testing.assert_allclose(ts[1].grad, [4 * coef], rtol=1e-15)
    ts = _with_grads([3.0, 0.0], [4.0])
    assert optim.clip_grad_norm(ts, 10.0) == 5.0  # below the limit: untouched
    np.testing.assert_array_equal(ts[0].grad, [3.0, 0.0])
    ts = _with_grads([3.0, -7.0], [4.0])
    assert optim.clip_grad_norm(ts, 1.0, norm_type=math.inf) == 7.0


def test_clip_grad_value_by_hand_and_grads_none_are_skipped():
    ts = _with_grads([3.0, -0.5], [-4.0])
    ts.append(Tensor(np.zeros(2), requires_grad=True))  # grad None
    assert optim.clip_grad_value(ts, 1.0) == pytest.approx(math.sqrt(9 + 0.25 + 16), rel=1e-15)
    np.testing.assert_array_equal(ts[0].grad, [1.0, -0.5])
    np.testing.assert_array_equal(ts[1].grad, [-1.0])
    assert ts[2].grad is None


def test_clip_options_inside_the_optimizer():
    ts = _with_grads([3.0, 0.0], [4.0])
    opt = optim.SGD(ts, lr=1.0, clip_grad_norm=1.0)
    opt.step()
    coef = 1.0 / (5.0 + 1e-6)
    assert opt.last_grad_norm == 5.0
    np.testing.assert_allclose(ts[0].data, [-3 * coef, 0.0], rtol=1e-15)
    ts = _with_grads([3.0, -0.5], [-4.0])
    opt = optim.SGD(ts, lr=1.0, clip_grad_value=1.0)
    opt.step()
    np.testing.assert_array_equal(ts[0].data, [-1.0, 0.5])
    np.testing.assert_array_equal(ts[1].data, [1.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=12), st.floats(1e-3, 1e3))
def test_clipped_norm_never_exceeds_the_limit(values, max_norm):
    ts = _with_grads(values)
    before = optim.clip_grad_norm(ts, max_norm)
    assert before == pytest.approx(float(np.linalg.norm(values)), rel=1e-12, abs=1e-300)
    assert np.linalg.norm(ts[0].grad) <= max_norm * (1 + 1e-12)


# ---- non-finite gradients -------------------------------------------------------------------------


def test_nonfinite_raise_names_the_parameter_and_changes_nothing():
    a, b = Tensor(np.ones(2), requires_grad=True, name="a"), Tensor(np.ones(2), requires_grad=True, name="b")
    opt = optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(2), np.array([1.0, np.nan])
    with pytest.raises(optim.NonFiniteGradientError, match="non-finite gradient in 'b' at step 0") as info:
        opt.step()
    assert info.value.names == ["b"]
    np.testing.assert_array_equal(a.data, [1.0, 1.0])
    assert opt.step_count == 0 and opt.state_dict()["meta"]["params"]["a"]["step"] == 0


def test_a_given_grad_norm_replaces_the_optimizers_own_pass():
    """step(grad_norm=...) takes the caller's norm for the non-finite check and for clipping."""
    def run(**given):
        w = Tensor(np.array([3.0, 4.0]), requires_grad=True, name="w")
        opt = optim.SGD([w], lr=1.0, clip_grad_norm=1.0)
        w.grad = np.array([3.0, 4.0])  # norm 5
        opt.step(**given)
        return w.data.copy(), opt.last_grad_norm

    own, own_norm = run()
    given, given_norm = run(grad_norm=5.0)
    assert own_norm == given_norm == 5.0
    np.testing.assert_array_equal(own, given)  # 5.0 is exactly the norm the optimizer computes
    np.testing.assert_allclose(run(grad_norm=10.0)[0], [3.0 - 0.3, 4.0 - 0.4])  # clipped by 1/10

    a = Tensor(np.ones(2), requires_grad=True, name="a")
    opt = optim.Adam([a], lr=0.1)
    a.grad = np.array([1.0, np.nan])
    with pytest.raises(optim.NonFiniteGradientError, match="non-finite gradient in 'a'"):
        opt.step(grad_norm=float("nan"))
    np.testing.assert_array_equal(a.data, [1.0, 1.0])


def test_nonfinite_skip_does_not_advance_the_schedule():
    w = Tensor(np.zeros(1), requires_grad=True)
    opt = optim.SGD([w], lr=1.0, nonfinite="skip", schedule={"name": "exponential", "gamma": 0.5})
    w.grad = np.ones(1)
    opt.step()
    w.grad = np.array([np.inf])
    opt.step()
    assert opt.last_step_skipped and opt.skipped_steps == 1 and opt.step_count == 1
    assert w.data[0] == -1.0
    w.grad = np.ones(1)
    opt.step()
    assert opt.last_lr == 0.5 and w.data[0] == -1.5 and not opt.last_step_skipped


def test_nonfinite_ignore_lets_nan_through_as_torch_does():
    w = Tensor(np.zeros(1), requires_grad=True)
    opt = optim.SGD([w], lr=1.0, nonfinite="ignore")
    w.grad = np.array([np.nan])
    opt.step()
    assert np.isnan(w.data[0])
