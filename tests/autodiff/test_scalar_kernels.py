"""Ops on 0-d float64 values run on Python floats (ad.defscalar) and give bit for bit what the same
ops give on arrays: values, gradients, dtypes, shapes, and NumPy's inf/NaN behaviour and warnings."""

import warnings

import numpy as np
import pytest

import autodiff as ad

RNG = np.random.default_rng(7)
# Values of every magnitude and sign, zeros of both signs, the kink of relu, inf and NaN.
VALUES = np.concatenate([RNG.standard_normal(40), RNG.standard_normal(20) * 1e150,
                         RNG.standard_normal(20) * 1e-150, [0.0, -0.0, 1.0, -1.0, 5.0],
                         [np.inf, -np.inf, np.nan]])


def lecture(w1, b1, w2, b2):
    return 0.5 * (ad.relu(w2 * ad.relu(w1 * 1.0 + b1) + b2) - 5.0) ** 2


def quotients(w1, b1, w2, b2):
    q = (w1 - b1) / (w2 * w2 + 1.0)
    return -(q * q) + 3 * q - b2 / 2.0 + ad.exp(-(w2 * w2)) * b1  # q reused; floats meet arrays


def run(graph, values, shape):
    params = [ad.Tensor(np.full(shape, v), requires_grad=True) for v in values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # huge draws overflow alike on both sides
        out = graph(*params)
        out.backward(np.ones(shape))
    return out.data, [p.grad for p in params]


def bits(a):
    return np.asarray(a, dtype=np.float64).reshape(-1).view(np.int64).tolist()


@pytest.mark.parametrize("graph", [lecture, quotients])
def test_zero_d_graphs_equal_the_same_graph_on_arrays_bit_for_bit(graph):
    for _ in range(300):
        values = RNG.choice(VALUES, size=4)
        out, grads = run(graph, values, ())
        ref_out, ref_grads = run(graph, values, (1,))  # one-element arrays take the array path
        assert type(out) is np.ndarray and out.shape == () and out.dtype == np.float64
        assert bits(out) == bits(ref_out), values
        for g, ref in zip(grads, ref_grads, strict=True):
            assert type(g) is np.ndarray and g.shape == () and g.dtype == np.float64
            assert bits(g) == bits(ref), values


def test_results_keep_their_dtypes_and_shapes():
    w = ad.Tensor(2.0, requires_grad=True)
    assert (w * 3).data.dtype == np.float64 and (w * 3).shape == ()
    assert (ad.Tensor(np.float32(2.0)) * 3.0).dtype == np.float32  # float32 keeps the array path
    assert ad.add(1, 2).dtype == np.int64 and ad.add(1.0, 2.0).dtype == np.float64  # numbers alone
    assert not (ad.Tensor(2.0) * w.detach()).requires_grad
    with ad.no_grad():
        assert not (w * 3.0).requires_grad


def test_inf_nan_and_division_by_zero_stay_numpys_with_their_warnings():
    w = ad.Tensor(0.0, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="divide by zero"):
        assert (1.0 / w).item() == np.inf
    with pytest.warns(RuntimeWarning, match="overflow"):
        assert (ad.Tensor(1e308) * 10.0).item() == np.inf
    small = ad.Tensor(1e-100, requires_grad=True)
    J = ad.Tensor(1e200) * small * 1e200  # 1e300: a finite forward ...
    with pytest.warns(RuntimeWarning, match="overflow"):
        J.backward()  # ... but dJ/dsmall = 1e200 * 1e200 overflows, and NumPy says so
    assert small.grad.item() == np.inf
    n = ad.Tensor(np.nan, requires_grad=True)
    r = ad.relu(n)
    r.backward()
    assert np.isnan(r.item()) and np.isnan(n.grad.item())


def test_an_op_of_ones_own_runs_its_float_kernel_on_zero_d_float64_values():
    seen = []

    @ad.primitive("cube_for_test_scalar_kernels")
    def cube(x, scale=1.0):
        seen.append(type(x))
        return x * x * x * scale

    ad.defvjp(cube, lambda g, out, x, scale=1.0: g * 3 * x * x * scale)
    ad.defscalar(cube)  # plain arithmetic: the same functions serve floats
    x = ad.Tensor(2.0, requires_grad=True)
    y = cube(x)
    y.backward()
    assert seen == [float] and y.item() == 8.0 and x.grad.item() == 12.0
    cube(ad.Tensor([2.0]))
    cube(x, scale=2.0)  # options always take the array path
    assert seen[1:] == [np.ndarray, np.ndarray]


def test_a_float_kernel_graph_records_arrays_and_can_be_walked_twice():
    w = ad.Tensor(3.0, requires_grad=True)
    y = (w * 2.0).relu()
    assert [type(a) for a in y.parents[0].operands] == [np.ndarray, np.ndarray]
    assert y.parents[0].operands[1].dtype == np.float64 and y.op == "relu"
    y.backward(retain_graph=True)
    y.backward()
    assert w.grad.item() == 4.0
    graph = ad.trace(lambda w: (w * 2.0).relu(), w)
    assert [n.op for n in graph.nodes] == ["input", "const", "multiply", "relu"]
