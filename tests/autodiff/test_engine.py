"""Engine properties: accumulation, graph lifetime, deep graphs, dtypes, no_grad, errors, extension."""

import gc
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, broadcastable_shapes

import autodiff as ad


def test_diamond_reuse():
    a = ad.Tensor(3.0, requires_grad=True)
    b = a + a
    c = b + b
    c.backward()
    assert c.item() == 12 and a.grad == 4


def test_reuse_in_product():
    a = ad.Tensor(3.0, requires_grad=True)
    (a * a * a).backward()
    assert a.grad == 27  # d(a^3)/da = 3a^2


def test_deep_chain_runs_iteratively():
    x = ad.Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def test_graph_is_freed_after_backward():
    a = ad.Tensor(np.ones(3), requires_grad=True)
    b = a * 2
    ref = weakref.ref(b)
    c = b.sum()
    del b
    gc.collect()
    assert ref() is not None  # still held by the graph of c
    c.backward()
    gc.collect()
    assert ref() is None


def test_second_backward_through_freed_graph_says_what_to_do():
    a = ad.Tensor(2.0, requires_grad=True)
    y = (a * a).exp()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_double_backward_with_retain_graph_accumulates():
    a = ad.Tensor(2.0, requires_grad=True)
    y = a * a
    y.backward(retain_graph=True)
    y.backward()
    assert a.grad == 8  # 4 + 4: leaf gradients accumulate until zero_grad
    a.zero_grad()
    assert a.grad is None


def test_accumulation_into_an_existing_grad_is_in_place():
    flat = np.zeros(4)
    a = ad.Tensor(np.ones(4), requires_grad=True)
    a.grad = flat[:]  # e.g. a view into an optimizer's flat buffer
    (a * 3).sum().backward()
    np.testing.assert_array_equal(flat, [3, 3, 3, 3])


def test_leaf_gradients_never_alias_each_other_or_data():
    a = ad.Tensor(np.ones(3), requires_grad=True)
    b = ad.Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()  # add hands the same gradient array to both sides
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, [1, 1, 1])

    @ad.primitive("pass_second")
    def pass_second(x, y):
        return x * 0 + y

    ad.defvjp(pass_second, lambda g, out, x, y: y, lambda g, out, x, y: g)  # returns an argument
    try:
        c = ad.Tensor(np.ones(2), requires_grad=True)
        d = ad.Tensor(np.array([5.0, 6.0]))
        pass_second(c, d).backward(np.ones(2))
        c.grad += 1
        np.testing.assert_array_equal(d.data, [5, 6])
    finally:
        del ad.registry["pass_second"]
    seed = np.ones(2)
    e = ad.Tensor(np.zeros(2), requires_grad=True)
    (e * 1.0).backward(seed)
    e.grad += 1
    np.testing.assert_array_equal(seed, [1, 1])


@pytest.mark.parametrize("scalar", [2, 2.5])
def test_float32_is_preserved(scalar):
    x = ad.Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    ops = [x * scalar, scalar * x, x + scalar, x - scalar, scalar - x, x / scalar, scalar / x, x**scalar,
           (x * scalar).exp().log(), ad.softmax(x), ad.logsumexp(x), x.mean(), x.var(), x.sigmoid()]
    for y in ops:
        assert y.dtype == np.float32, y
    y = (x * scalar).sum() + x.var()
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_float32_weights_with_float64_free_inputs():
    w = ad.Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    x = np.ones((3, 2), dtype=np.float64)  # data in float64 promotes, like NumPy ...
    y = ad.Tensor(x.astype(np.float32)) @ w  # ... so cast data to the model's dtype first
    y.sum().backward()
    assert y.dtype == np.float32 and w.grad.dtype == np.float32


def test_no_grad_context_and_decorator():
    a = ad.Tensor(2.0, requires_grad=True)
    with ad.no_grad():
        b = a * 3
    assert not b.requires_grad and ad.is_grad_enabled()

    @ad.no_grad()
    def f(t):
        return t * 3

    assert not f(a).requires_grad
    assert (a * 3).requires_grad

    @ad.no_grad
    def g(t):
        return t * 3

    assert not g(a).requires_grad and ad.is_grad_enabled()


def test_grad_function():
    f = ad.grad(lambda x: (x**3).sum())
    np.testing.assert_allclose(f(np.array([1.0, 2.0])), [3.0, 12.0])
    g = ad.grad(lambda x, y: (x * y).sum(), argnums=(0, 1))
    gx, gy = g(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_allclose(gx, [3, 4])
    np.testing.assert_allclose(gy, [1, 2])


@given(pair=array_shapes(min_dims=0, max_dims=3, max_side=3).flatmap(
    lambda s: st.tuples(st.just(s), broadcastable_shapes(s, min_dims=0, max_dims=4))))
def test_sum_to_shape_undoes_broadcasting(pair):
    small, other = pair
    big = np.broadcast_shapes(small, other)
    g = np.random.default_rng(0).standard_normal(big)
    out = ad.sum_to_shape(g, small)
    assert out.shape == small
    # each entry of `small` receives the sum of the entries of g it was broadcast to
    expected = np.zeros(small)
    for idx in np.ndindex(*big):
        src = tuple(i if n != 1 else 0 for i, n in zip(idx[len(big) - len(small):], small, strict=True))
        expected[src] += g[idx]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


# --- errors ----------------------------------------------------------------------------------


def test_shape_mismatch_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"add.*\(2, 3\).*\(4,\)"):
        ad.Tensor(np.ones((2, 3))) + ad.Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(2, 3\)"):
        ad.Tensor(np.ones((2, 3))) @ ad.Tensor(np.ones((2, 3)))


def test_a_wrong_keyword_is_a_type_error_naming_the_op():
    with pytest.raises(TypeError, match=r"^leaky_relu: .*negative_slope"):
        ad.leaky_relu(ad.Tensor([1.0]), negative_slope=0.1)


def test_non_numeric_data_is_refused():
    with pytest.raises(TypeError, match="numeric"):
        ad.Tensor("hello")
    with pytest.raises(TypeError, match="numeric"):
        ad.Tensor([object()])


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        ad.Tensor([1, 2, 3], requires_grad=True)


def test_backward_on_non_scalar_needs_a_gradient():
    y = ad.Tensor(np.ones(3), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    y.backward(np.ones(3))


def test_backward_without_requires_grad():
    with pytest.raises(RuntimeError, match="requires_grad"):
        (ad.Tensor(1.0) * 2).backward()


def test_gradcheck_refuses_float32_without_tolerances():
    x = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match="float32"):
        ad.gradcheck(lambda t: t.sum(), [x])
    assert ad.gradcheck(lambda t: t.sum(), [x], eps=1e-2, atol=1e-3, rtol=1e-3)


def test_gradcheck_reports_worst_entries():
    @ad.primitive("wrong_square")
    def wrong_square(x):
        return x * x

    ad.defvjp(wrong_square, lambda g, out, x: g * x)  # should be 2 g x
    try:
        with pytest.raises(ad.GradcheckError, match=r"backprop .* numerical"):
            ad.gradcheck(wrong_square, [np.array([1.0, 2.0])])
    finally:
        del ad.registry["wrong_square"]


def test_gradcheck_random_projection_mode_on_large_input():
    x = np.random.default_rng(0).standard_normal((60, 50))
    assert ad.gradcheck(lambda t: (t.tanh() ** 2).sum(axis=0), [x], mode="random")


# --- the public extension point --------------------------------------------------------------


def test_user_defined_op_with_broadcasting():
    @ad.primitive("scaled_softplus")
    def scaled_softplus(x, scale):
        return scale * np.logaddexp(0, x)

    ad.defvjp(
        scaled_softplus,
        lambda g, out, x, scale: g * scale / (1 + np.exp(-x)),
        lambda g, out, x, scale: g * np.logaddexp(0, x),  # broadcast shape: the engine sums it down
    )
    try:
        x = np.linspace(-2, 2, 6).reshape(2, 3)
        scale = np.array([0.5, 1.0, 2.0])
        assert ad.gradcheck(scaled_softplus, [x, scale])
        assert "scaled_softplus" in ad.registry
    finally:
        del ad.registry["scaled_softplus"]


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        ad.primitive("add")(lambda a, b: a + b)


def test_comparisons_give_masks_usable_in_where():
    x = ad.Tensor([-1.0, 2.0], requires_grad=True)
    y = ad.where(x > 0, x, 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1])


def test_how_a_tensor_was_computed_is_public_until_backward_frees_it():
    from autodiff.core import topological_order, tracing

    x = ad.Tensor(np.array([1.0, 2.0]), requires_grad=True, name="x")
    seen = []
    with tracing(seen.append):
        y = ad.relu(x * 3.0)
    with tracing(seen.append):
        with tracing(lambda t: None):  # nested: only the innermost callback sees the op
            ad.exp(x)
    assert [t.op for t in seen] == ["multiply", "relu"]
    product = seen[0]
    assert x.op is None and x.parents == () and product.op == "multiply"
    assert product.parents[0] is x and product.parents[1] is None  # 3.0 was a constant
    assert product.operands[0] is x.data and float(product.operands[1]) == 3.0
    assert topological_order(y) == [x, product, y]
    y.sum().backward()
    assert y.parents == () and y.operands == ()  # the graph was freed
