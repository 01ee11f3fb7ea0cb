"""Every registered op, gradchecked in float64 over Hypothesis-drawn shapes.

Each case draws shapes (0-d, size-1 dimensions, mutually broadcastable pairs, every axis/keepdims
combination) and values away from the op's kinks, then compares backprop with central
differences over the full Jacobian. A test fails if any registered op lacks a case here.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import autodiff as ad
from autodiff import nn

SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


def values(draw, shape, low=-2.0, high=2.0, away_from=(), gap=0.05):
    """Random values in [low, high] at least `gap` away from each kink in `away_from`."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.uniform(low, high, size=shape)
    for k in away_from:
        near = np.abs(x - k) < gap
        x = np.where(near, k + np.where(x >= k, gap, -gap) * 2, x)
    return x


def axis_args(draw, ndim):
    """None, a single axis (maybe negative) or a tuple of distinct axes, with keepdims."""
    keepdims = draw(st.booleans())
    if ndim == 0:
        return {"axis": None, "keepdims": keepdims}
    choice = draw(st.sampled_from(["none", "int", "tuple"]))
    if choice == "none":
        axis = None
    elif choice == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        axis = tuple(draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)))
    return {"axis": axis, "keepdims": keepdims}


def unary(op, low=-2.0, high=2.0, away_from=()):
    @st.composite
    def case(draw):
        x = values(draw, draw(SHAPES), low, high, away_from)
        return op, [x]

    return case()


def binary(op, b_low=-2.0, b_high=2.0, b_away=(), a_low=-2.0, a_high=2.0):
    @st.composite
    def case(draw):
        sa, sb = draw(PAIRS).input_shapes
        return op, [values(draw, sa, a_low, a_high), values(draw, sb, b_low, b_high, b_away)]

    return case()


def reduction(op, **extra):
    @st.composite
    def case(draw):
        shape = draw(SHAPES)
        kw = axis_args(draw, len(shape))
        kw.update(extra)
        return (lambda x: op(x, **kw)), [values(draw, shape)]

    return case()


@st.composite
def power_case(draw):
    sa, sb = draw(PAIRS).input_shapes
    return ad.power, [values(draw, sa, 0.5, 2.0), values(draw, sb, -1.5, 2.5)]


@st.composite
def matmul_case(draw):
    """1-D and 2-D operands and batched stacks whose batch dimensions broadcast."""
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["vv", "mv", "vm", "mm", "batched"]))
    if kind == "vv":
        sa, sb = (k,), (k,)
    elif kind == "mv":
        sa, sb = (n, k), (k,)
    elif kind == "vm":
        sa, sb = (k,), (k, m)
    elif kind == "mm":
        sa, sb = (n, k), (k, m)
    else:
        batch = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=2)
        ba, bb = draw(batch).input_shapes
        sa, sb = (*ba, n, k), (*bb, k, m)
    return ad.matmul, [values(draw, sa), values(draw, sb)]


@st.composite
def extremum_pair(draw, op):
    sa, sb = draw(PAIRS).input_shapes
    a = values(draw, sa)
    b = values(draw, sb)
    # keep the two sides apart so no entry sits on the kink where they are equal
    b = np.where(np.abs(np.broadcast_to(a, np.broadcast_shapes(sa, sb)).mean() - b) < 0.05, b + 0.3, b)
    return op, [a, b]


@st.composite
def where_case(draw):
    sc, sa = draw(PAIRS).input_shapes
    cond = values(draw, sc) > 0
    sb = draw(st.sampled_from([sa, sc, ()]))
    return (lambda a, b: ad.where(cond, a, b)), [values(draw, sa), values(draw, sb)]


@st.composite
def shape_case(draw, which):
    shape = draw(SHAPES)
    x = values(draw, shape)
    if which == "reshape":
        return (lambda t: ad.reshape(t, shape=(-1,))), [x]
    if which == "transpose":
        axes = tuple(draw(st.permutations(range(len(shape))))) if draw(st.booleans()) else None
        return (lambda t: ad.transpose(t, axes=axes)), [x]
    if which == "expand_dims":
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        return (lambda t: ad.expand_dims(t, axis=axis)), [x]
    ones = [i for i, n in enumerate(shape) if n == 1]
    axis = tuple(draw(st.lists(st.sampled_from(ones), unique=True))) if ones else None
    return (lambda t: ad.squeeze(t, axis=axis or None)), [x]


@st.composite
def getitem_case(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    x = values(draw, shape)
    kind = draw(st.sampled_from(["int", "slice", "array", "pair", "ellipsis"]))
    if kind == "int":
        index = draw(st.integers(-shape[0], shape[0] - 1))
    elif kind == "slice":
        index = slice(draw(st.integers(0, shape[0])), None, draw(st.sampled_from([1, 2, -1])))
    elif kind == "array":  # repeated indices must accumulate
        index = np.array(draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    elif kind == "pair" and len(shape) >= 2:
        rows = draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=5))
        cols = draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(rows), max_size=len(rows)))
        index = (np.array(rows), np.array(cols))
    else:
        index = (Ellipsis, 0)
    return (lambda t: t[index]), [x]


@st.composite
def join_case(draw, op):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    n = draw(st.integers(1, 3))
    if op is ad.concatenate:
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        shapes = []
        for _ in range(n):
            s = list(shape)
            s[axis] = draw(st.integers(1, 3))
            shapes.append(tuple(s))
    else:
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        shapes = [shape] * n
    arrays = [values(draw, s) for s in shapes]
    return (lambda *ts: op(list(ts), axis=axis)), arrays


@st.composite
def softmax_family(draw, op):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    x = values(draw, shape, -3, 3)
    if draw(st.booleans()):  # large-magnitude logits: results must stay finite
        x = x + draw(st.sampled_from([1e4, -1e4]))
    if op is ad.logsumexp:
        kw = axis_args(draw, len(shape))
    else:
        kw = {"axis": draw(st.integers(-len(shape), len(shape) - 1))}
    return (lambda t: op(t, **kw)), [x]


@st.composite
def clip_case(draw):
    shape = draw(SHAPES)
    lo, hi = draw(st.sampled_from([(-0.5, 0.5), (None, 0.3), (-0.2, None)]))
    x = values(draw, shape, away_from=[v for v in (lo, hi) if v is not None])
    return (lambda t: ad.clip(t, lo=lo, hi=hi)), [x]


@st.composite
def var_case(draw):
    shape = draw(SHAPES)
    kw = axis_args(draw, len(shape))
    kw["ddof"] = draw(st.sampled_from([0, 0, 1]))
    n = np.prod([shape[a] for a in range(len(shape))] if kw["axis"] is None else
                [shape[a] for a in np.atleast_1d(kw["axis"])]) if shape else 1
    if n - kw["ddof"] <= 0:
        kw["ddof"] = 0
    return (lambda t: ad.var(t, **kw)), [values(draw, shape)]


@st.composite
def loss_case(draw, name):
    batch = draw(st.integers(1, 4))
    width = draw(st.integers(1, 3))
    if name == "cross_entropy":
        logits = values(draw, (batch, width + 1), -3, 3)
        if draw(st.booleans()):
            logits = logits * 1e4  # huge logits stay finite
        labels = np.array(draw(st.lists(st.integers(0, width), min_size=batch, max_size=batch)))
        return (lambda z: nn.cross_entropy(z, labels)), [logits]
    shape = draw(st.sampled_from([(batch, width), (batch,)]))
    pred, target = values(draw, shape), values(draw, shape)
    if name == "binary_cross_entropy_with_logits":
        target = (target > 0).astype(float)
    fn = {"half_squared_error": nn.half_squared_error, "mse": nn.mse,
          "binary_cross_entropy_with_logits": nn.binary_cross_entropy_with_logits}[name]
    return fn, [pred, target]


CASES = {
    "add": binary(ad.add),
    "subtract": binary(ad.subtract),
    "multiply": binary(ad.multiply),
    "divide": binary(ad.divide, b_low=0.5, b_high=2.0),
    "negative": unary(ad.negative),
    "power": power_case(),
    "matmul": matmul_case(),
    "maximum": extremum_pair(ad.maximum),
    "minimum": extremum_pair(ad.minimum),
    "where": where_case(),
    "exp": unary(ad.exp),
    "log": unary(ad.log, 0.1, 3.0),
    "sqrt": unary(ad.sqrt, 0.1, 3.0),
    "abs": unary(ad.abs, away_from=[0]),
    "tanh": unary(ad.tanh),
    "sigmoid": unary(ad.sigmoid, -8, 8),
    "relu": unary(ad.relu, away_from=[0]),
    "leaky_relu": unary(ad.leaky_relu, away_from=[0]),
    "clip": clip_case(),
    "sum": reduction(ad.sum),
    "mean": reduction(ad.mean),
    "var": var_case(),
    "max": reduction(ad.max),
    "min": reduction(ad.min),
    "reshape": shape_case("reshape"),
    "transpose": shape_case("transpose"),
    "expand_dims": shape_case("expand_dims"),
    "squeeze": shape_case("squeeze"),
    "getitem": getitem_case(),
    "concatenate": join_case(ad.concatenate),
    "stack": join_case(ad.stack),
    "softmax": softmax_family(ad.softmax),
    "log_softmax": softmax_family(ad.log_softmax),
    "logsumexp": softmax_family(ad.logsumexp),
    "half_squared_error": loss_case("half_squared_error"),
    "mse": loss_case("mse"),
    "cross_entropy": loss_case("cross_entropy"),
    "binary_cross_entropy_with_logits": loss_case("binary_cross_entropy_with_logits"),
}


def test_every_registered_op_has_a_gradcheck_case():
    missing = sorted(set(ad.registry) - set(CASES))
    assert not missing, f"ops without a gradcheck case: {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_gradcheck(name, data):
    fn, inputs = data.draw(CASES[name])
    out = fn(*[ad.Tensor(x) for x in inputs])
    assert np.all(np.isfinite(out.data))
    ad.gradcheck(fn, inputs)


@pytest.mark.parametrize("op", [ad.softmax, ad.log_softmax, ad.logsumexp])
def test_softmax_family_finite_for_huge_logits(op):
    x = ad.Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]), requires_grad=True)
    out = op(x, axis=-1)
    out.sum().backward()
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(x.grad))


def test_softmax_values():
    p = ad.softmax(ad.Tensor([1.0, 2.0, 3.0])).data
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(ad.logsumexp(ad.Tensor([1.0, 2.0, 3.0])).item(), np.log(e.sum()), rtol=1e-15)


def test_repeated_indices_accumulate():
    x = ad.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])


def test_ties_split_the_gradient_evenly():
    x = ad.Tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5])
    a, b = ad.Tensor(2.0, requires_grad=True), ad.Tensor(2.0, requires_grad=True)
    ad.maximum(a, b).backward()
    assert a.grad == 0.5 and b.grad == 0.5


def test_losses_against_their_definitions():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert nn.half_squared_error(ad.Tensor(pred), target).item() == pytest.approx(
        0.5 * np.mean(np.sum((pred - target) ** 2, axis=1)), rel=1e-14)
    assert nn.mse(ad.Tensor(pred), target).item() == pytest.approx(np.mean((pred - target) ** 2), rel=1e-14)
    labels = np.array([0, 2, 1, 1, 0])
    p = np.exp(pred) / np.exp(pred).sum(axis=1, keepdims=True)
    assert nn.cross_entropy(ad.Tensor(pred), labels).item() == pytest.approx(
        -np.mean(np.log(p[np.arange(5), labels])), rel=1e-14)
    y = (target > 0).astype(float)
    s = 1 / (1 + np.exp(-pred))
    assert nn.binary_cross_entropy_with_logits(ad.Tensor(pred), y).item() == pytest.approx(
        -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)), rel=1e-12)
