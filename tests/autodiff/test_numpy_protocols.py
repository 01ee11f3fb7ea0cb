"""NumPy functions called on Tensors: the ones autodiff has run its op differentiably, the others
say what to use instead."""

import numpy as np
import pytest

import autodiff as ad

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])


def test_numpy_functions_with_an_autodiff_op_are_differentiable():
    t = ad.Tensor(X, requires_grad=True)
    y = np.sum(np.exp(t))
    assert isinstance(y, ad.Tensor)
    np.testing.assert_allclose(y.data, np.sum(np.exp(X)))
    y.backward()
    np.testing.assert_allclose(t.grad, np.exp(X))
    ad.gradcheck(lambda a: np.mean(np.tanh(a) * X, 1), [X])


def test_numpy_calls_keep_numpy_positions():
    t = ad.Tensor(X)
    np.testing.assert_allclose(np.var(t, 0, None, None, 1).data, np.var(X, 0, None, None, 1))
    np.testing.assert_allclose(np.concatenate([t, t], 1).data, np.concatenate([X, X], 1))
    np.testing.assert_allclose((X + t).data, X + X)


@pytest.mark.parametrize("call", [lambda t: np.sin(t), lambda t: np.cumsum(t), lambda t: np.add.reduce(t)])
def test_numpy_functions_without_an_op_raise_a_type_error_naming_the_ops(call):
    with pytest.raises(TypeError, match=r"no differentiable version on a Tensor.*ad\.sum"):
        call(ad.Tensor(X))


def test_out_is_refused_through_numpy_too():
    with pytest.raises(TypeError, match="out= is not supported"):
        np.exp(ad.Tensor(X), out=np.empty_like(X))


def test_an_array_compared_with_a_tensor_keeps_the_operators_meaning():
    t = ad.Tensor(X)
    assert (np.zeros_like(X) < t).data.tolist() == (X > 0).tolist()
    assert (np.zeros_like(X) == t) is False
