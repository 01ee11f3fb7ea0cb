"""Every public op takes the call forms its NumPy namesake takes: options by position or keyword.

The calls are derived from each op's own signature: the array inputs come from SAMPLES, the options
(axis, shape, slope, bounds...) are given once positionally in signature order and once by
keyword. Both forms must agree with NumPy called the same positional way (or with a reference for
ops NumPy lacks), and backprop must match central differences with the options never
differentiated.
"""

import inspect

import numpy as np
import pytest

import autodiff as ad

RNG = np.random.default_rng(0)
X = RNG.uniform(0.5, 2.0, size=(2, 3))  # positive, away from every kink
Y = RNG.uniform(0.5, 2.0, size=(2, 3))
SQUARE = RNG.uniform(-1.0, 1.0, size=(3, 3))


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# name -> (array inputs, options to pass (non-default where that changes the result), reference
# for ops NumPy has no function of the same name)
SAMPLES = {
    "abs": ([X - 1.3], {}, None),
    "add": ([X, Y], {}, None),
    "clip": ([X], {"a_min": 0.8, "a_max": 1.6}, None),
    "concatenate": ([[X, Y]], {"axis": 1}, None),
    "divide": ([X, Y], {}, None),
    "exp": ([X], {}, None),
    "expand_dims": ([X], {"axis": 2}, None),
    "getitem": ([X], {"index": (1, slice(0, 2))}, lambda x, index: x[index]),
    "leaky_relu": ([X - 1.3], {"slope": 0.2}, lambda x, slope: np.where(x > 0, x, slope * x)),
    "log": ([X], {}, None),
    "log_softmax": ([X], {"axis": 0}, lambda x, axis: np.log(_softmax(x, axis))),
    "logsumexp": ([X], {"axis": 1, "keepdims": True},
                  lambda x, axis, keepdims: np.log(np.exp(x).sum(axis=axis, keepdims=keepdims))),
    "matmul": ([X, SQUARE], {}, None),
    "max": ([X], {"axis": 1, "keepdims": True}, None),
    "maximum": ([X, Y], {}, None),
    "mean": ([X], {"axis": 1, "keepdims": True}, None),
    "min": ([X], {"axis": 0, "keepdims": True}, None),
    "minimum": ([X, Y], {}, None),
    "multiply": ([X, Y], {}, None),
    "negative": ([X], {}, None),
    "power": ([X, Y], {}, None),
    "relu": ([X - 1.3], {}, lambda x: np.maximum(x, 0)),
    "reshape": ([X], {"shape": (3, 2)}, None),
    "sigmoid": ([X], {}, lambda x: 1 / (1 + np.exp(-x))),
    "softmax": ([X], {"axis": 0}, _softmax),
    "sqrt": ([X], {}, None),
    "squeeze": ([X[:1]], {"axis": 0}, None),
    "stack": ([[X, Y]], {"axis": 2}, None),
    "subtract": ([X, Y], {}, None),
    "sum": ([X], {"axis": 0, "keepdims": True}, None),
    "tanh": ([X], {}, None),
    "transpose": ([X], {"axes": (1, 0)}, None),
    "var": ([X], {"axis": 1, "ddof": 1, "keepdims": True}, None),
    "where": ([X > 1.2, X, Y], {}, None),
}

PUBLIC_OPS = sorted(name for name in ad.__all__ if name in ad.registry)


def call_forms(name):
    """(positional options, keyword options) for the op, read from its signature: every option up
    to the last one given, in order, defaults filling the gaps."""
    inputs, options, _ = SAMPLES[name]
    params = [p for p in inspect.signature(getattr(ad, name)).parameters.values()
              if p.default is not p.empty]
    positional_names = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    last = max((positional_names.index(k) for k in options), default=-1)
    positional = [options.get(p.name, p.default) for p in params[: last + 1]]
    assert set(options) <= set(positional_names), f"{name}: options outside the positional ones"
    return positional, options


def test_every_public_op_has_a_sample():
    assert sorted(SAMPLES) == PUBLIC_OPS


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_positional_and_keyword_options_match_numpy(name):
    inputs, options, reference = SAMPLES[name]
    op = getattr(ad, name)
    positional, keywords = call_forms(name)
    expected = (reference(*inputs, **options) if reference is not None
                else getattr(np, name)(*inputs, *positional))
    tensors = [[ad.Tensor(a) for a in x] if isinstance(x, list) else ad.Tensor(x) for x in inputs]
    np.testing.assert_allclose(op(*tensors, *positional).data, expected, rtol=1e-12)
    np.testing.assert_allclose(op(*tensors, **keywords).data, expected, rtol=1e-12)


@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_gradients_of_both_call_forms(name):
    inputs, options, _ = SAMPLES[name]
    op = getattr(ad, name)
    positional, keywords = call_forms(name)
    if isinstance(inputs[0], list):  # a sequence op: differentiate each array of the sequence
        arrays = inputs[0]
        ad.gradcheck(lambda *ts: op(list(ts), *positional), arrays)
        ad.gradcheck(lambda *ts: op(list(ts), **keywords), arrays)
        return
    if name == "where":  # the condition is not differentiable
        ad.gradcheck(lambda a, b: op(inputs[0], a, b), inputs[1:])
        return
    ad.gradcheck(lambda *ts: op(*ts, *positional), inputs)
    ad.gradcheck(lambda *ts: op(*ts, **keywords), inputs)


@pytest.mark.parametrize("call", [
    lambda x: ad.sum(x, 0, None, np.zeros(3)),
    lambda x: ad.concatenate([x, x], 0, np.zeros((4, 3))),
])
def test_out_is_refused_in_its_numpy_position(call):
    with pytest.raises(TypeError, match="out= is not supported"):
        call(ad.Tensor(X))


def test_too_many_positional_arguments_name_the_op():
    with pytest.raises(TypeError, match="^squeeze: .*too many positional"):
        ad.squeeze(ad.Tensor(X), 0, 1)


def test_clip_keeps_its_lo_hi_keywords():
    np.testing.assert_array_equal(ad.clip(ad.Tensor(X), lo=0.8, hi=1.6).data, np.clip(X, 0.8, 1.6))
