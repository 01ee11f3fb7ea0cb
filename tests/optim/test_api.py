"""The optimizer API: parameter forms and names, groups, views, zero_grad, skipping, validation, registry."""

import json

import numpy as np
import pytest

import autodiff as ad
import optim
from autodiff import Tensor
from optim import functional


def _params(*shapes, names=None, seed=0):
    rng = np.random.default_rng(seed)
    return [Tensor(rng.standard_normal(s), requires_grad=True, name=None if names is None else names[i])
            for i, s in enumerate(shapes)]


# ---- parameters, names, views ---------------------------------------------------------------------


def test_mapping_names_and_data_views_into_one_buffer():
    model = ad.nn.MLP([3, 4, 2], activations=["tanh", "linear"], seed=0)
    before = {k: v.data.copy() for k, v in model.parameters().items()}
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert opt.param_names == ["w1", "b1", "w2", "b2"]
    for k, t in model.parameters().items():
        np.testing.assert_array_equal(t.data, before[k])  # values survive the move
        assert t.data.base is not None and t.data.base is opt.params["w1"].data.base  # one shared buffer


def test_iterable_names_from_tensor_names_or_positions():
    assert optim.SGD(_params((2,), (3,), names=["a", "b"])).param_names == ["a", "b"]
    assert optim.SGD(_params((2,), (3,))).param_names == ["0", "1"]
    assert optim.SGD(_params((2,), (3,), names=["a", "a"])).param_names == ["0", "1"]  # not unique
    groups = [{"params": _params((2,))}, {"params": _params((3,), (1,)), "lr": 0.5}]
    assert optim.SGD(groups).param_names == ["0.0", "1.0", "1.1"]


def test_bad_params_are_refused_with_clear_messages():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="position 1.*ndarray"):
        optim.Adam([_params((2,))[0], np.zeros(2)])
    with pytest.raises(TypeError, match="dtype int64"):
        optim.Adam([Tensor(np.arange(3))])
    t = _params((2,))[0]
    with pytest.raises(ValueError, match="same tensor appears twice"):
        optim.Adam([t, t])
    with pytest.raises(TypeError, match="group 1 has no 'params'"):
        optim.Adam([{"params": [t]}, {"lr": 0.1}])


def test_dtypes_get_separate_buffers_and_keep_their_dtype():
    a = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    a.grad, b.grad = np.ones(3, dtype=np.float32), np.ones(2)
    opt.step()
    assert a.data.dtype == np.float32 and b.data.dtype == np.float64
    # Adam's first step is lr·g/(|g| + eps)
    np.testing.assert_allclose(a.data, 1 - 0.1 / (1 + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(b.data, 1 - 0.1 / (1 + 1e-8), rtol=1e-14)


# ---- zero_grad, skipping, replaced arrays ---------------------------------------------------------


def test_zero_grad_keeps_views_so_backward_accumulates_in_place():
    model = ad.nn.MLP([2, 3, 1], activations=["tanh", "linear"], seed=1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    views = {k: t.grad for k, t in model.parameters().items()}
    x = ad.Tensor(np.array([[0.5, -1.0]]))
    ad.nn.mse(model(x), np.array([[1.0]])).backward()
    for k, t in model.parameters().items():
        assert t.grad is views[k]  # accumulated into the flat buffer
        assert np.any(t.grad != 0)
    opt.zero_grad()
    assert all(np.all(t.grad == 0) for t in model.parameters().values())


def test_backward_gradients_drive_the_step():
    # f(w) = sum(w²)/2 has gradient w: one SGD step with lr 0.25 scales w by 0.75
    w = Tensor(np.array([1.0, -2.0]), requires_grad=True, name="w")
    opt = optim.SGD([w], lr=0.25)
    for _ in range(2):
        opt.zero_grad()
        (ad.sum(w * w) * 0.5).backward()
        opt.step()
    np.testing.assert_allclose(w.data, [0.5625, -1.125], rtol=1e-15)


def test_parameter_with_grad_none_is_skipped_and_its_counter_lags():
    a, b = _params((2,), (2,), names=["a", "b"])
    opt = optim.Adam([a, b], lr=0.1)
    b_before = b.data.copy()
    a.grad, b.grad = np.ones(2), None
    opt.step()
    np.testing.assert_array_equal(b.data, b_before)
    meta = opt.state_dict()["meta"]["params"]
    assert meta["a"]["step"] == 1 and meta["b"]["step"] == 0
    # b's first real step is its own step 1: a full-size Adam first step lr·g/(|g| + eps)
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(b.data, b_before - 0.1 / (1 + 1e-8), rtol=1e-13)


def test_zero_grad_set_to_none_then_fresh_gradients_are_adopted():
    w = Tensor(np.array([1.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.5)
    opt.zero_grad(set_to_none=True)
    assert w.grad is None
    opt.step()  # nothing to do
    assert w.data[0] == 1.0
    w.grad = np.array([2.0])  # a foreign array, as backward would assign
    opt.step()
    assert w.data[0] == 0.0


def test_gather_grads_moves_backward_arrays_into_the_flat_buffer_before_the_step():
    a, b, unused = _params((3,), (2, 2), (2,), names=["a", "b", "unused"])
    opt = optim.Adam([a, b, unused], lr=0.1)
    twin = [Tensor(p.data.copy(), requires_grad=True) for p in (a, b, unused)]
    twin_opt = optim.Adam(twin, lr=0.1)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        (ad.sum(a * a) + ad.sum(b * b * b)).backward()
        expected = [2 * a.data, 3 * b.data ** 2]
        opt.gather_grads()
        [flat] = opt.grad_buffers  # one dtype, one buffer
        assert a.grad.base is flat and b.grad.base is flat  # read from the buffer the step uses
        np.testing.assert_array_equal(a.grad, expected[0])
        np.testing.assert_array_equal(b.grad, expected[1])
        assert unused.grad is None  # backward did not reach it: the step skips it, as torch does
        opt.step()
        twin[0].grad, twin[1].grad, twin[2].grad = expected[0], expected[1], None
        twin_opt.step()  # the same step without gather_grads
    for p, q in zip((a, b, unused), twin, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert opt.state_dict()["meta"]["params"]["unused"]["step"] == 0


def test_replaced_data_is_copied_back_into_the_buffer():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    w.data = np.array([10.0, 20.0])
    w.grad = np.array([1.0, 1.0])
    opt.step()
    np.testing.assert_array_equal(w.data, [9.0, 19.0])
    assert w.data.base is not None
    w.data = np.zeros(3)
    with pytest.raises(ValueError, match="shape \\(3,\\).*holds shape \\(2,\\)"):
        opt.step()


def test_wrong_gradient_shape_is_an_error():
    w = Tensor(np.zeros(2), requires_grad=True, name="w")
    opt = optim.SGD([w])
    w.grad = np.zeros(3)
    with pytest.raises(ValueError, match="'w': gradient has shape \\(3,\\), parameter has shape \\(2,\\)"):
        opt.step()


def test_closure_value_is_returned():
    w = Tensor(np.array([3.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = ad.sum(w * w)
        loss.backward()
        return loss.item()

    assert opt.step(closure) == 9.0
    assert w.data[0] == pytest.approx(3.0 - 0.1 * 6.0)


# ---- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ctor", "kwargs", "message"), [
    (optim.Adam, dict(lr=-0.1), r"Adam: lr must be a number in \[0, inf\), got -0.1"),
    (optim.Adam, dict(betas=(0.9, 1.0)),
     r"betas must be a pair of numbers, each in \[0, 1\), got \(0.9, 1.0\)"),
    (optim.Adam, dict(betas=(0.9,)), r"betas must be a pair"),
    (optim.Adam, dict(eps="small"), r"eps must be a number in \[0, inf\), got 'small'"),
    (optim.Adam, dict(amsgrad=1), r"amsgrad must be true or false"),
    (optim.SGD, dict(momentum=-1), r"momentum must be a number in \[0, inf\)"),
    (optim.SGD, dict(nesterov=True), r"nesterov=True needs momentum > 0 and dampening = 0"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), r"needs momentum > 0 and dampening = 0"),
    (optim.RMSprop, dict(alpha=1.5), r"alpha must be a number in \[0, 1\]"),
    (optim.Adagrad, dict(lr_decay=-1), r"lr_decay must be a number in \[0, inf\)"),
    (optim.Adam, dict(lr=float("nan")), r"lr must be a number"),
    (optim.Adam, dict(clip_grad_norm=0), r"clip_grad_norm must be a number in \(0, inf\) or null"),
    (optim.Adam, dict(nonfinite="warn"), r"nonfinite must be one of 'raise', 'skip', 'ignore'"),
    (optim.Adam, dict(momentum=0.9), r"unknown hyperparameter 'momentum'; known: lr, betas, eps"),
    (optim.Adam, dict(schedule={"name": "cosine"}), r"schedule 'cosine': missing required parameter 't_max'"),
    (optim.Adam, dict(schedule={"name": "sawtooth"}), r"unknown name 'sawtooth'; known schedules: constant"),
])
def test_validation_names_the_field_and_the_range(ctor, kwargs, message):
    with pytest.raises(optim.HyperparameterError, match=message):
        ctor(_params((2,)), **kwargs)


def test_group_overrides_are_validated_with_the_group_named():
    with pytest.raises(optim.HyperparameterError, match="group 1: lr must be"):
        optim.SGD([{"params": _params((2,))}, {"params": _params((2,), seed=1), "lr": -1}])
    with pytest.raises(optim.HyperparameterError, match="unknown hyperparameter 'lrr'"):
        optim.SGD([{"params": _params((2,)), "lrr": 0.1}])


def test_hyperparameter_error_carries_fields():
    with pytest.raises(optim.HyperparameterError) as info:
        optim.Adam(_params((2,)), lr=-1)
    assert (info.value.name, info.value.allowed, info.value.value) == ("lr", "a number in [0, inf)", -1)
    assert isinstance(info.value, ValueError)


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(optim.HyperparameterError) as info:
        optim.Adam(_params((2,)), lr=-1, betas=[0.9], eps=-5, nonfinite="warn", schedule={"name": "cosine"})
    assert [e.name for e in info.value.errors] == ["nonfinite", "t_max", "lr", "betas", "eps"]
    assert info.value.errors[0] is info.value


def test_set_hyperparameters_validates_and_allocates_new_state():
    w = _params((3,))[0]
    opt = optim.Adam([w], lr=0.1)
    with pytest.raises(optim.HyperparameterError):
        opt.set_hyperparameters(lr=-1)
    opt.set_hyperparameters(amsgrad=True, lr=0.2)
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["amsgrad"]
    with pytest.raises(TypeError):
        opt.param_groups[0]["lr"] = 0.5  # read-only: torch's idiom must not silently do nothing
    w.grad = np.ones(3)
    opt.step()
    assert "state.0.max_exp_avg_sq" in opt.state_dict()["arrays"]


# ---- registry ---------------------------------------------------------------------------------------


def test_builtins_come_from_entry_points():
    names = [d["name"] for d in optim.available()]
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam", "radam"} <= set(names)
    adam = next(d for d in optim.available() if d["name"] == "adam")
    assert adam["source"].startswith("entry point adam = optim.adam:Adam")
    assert optim.get("adam") is optim.Adam


def test_available_is_json_with_types_defaults_and_ranges():
    described = json.loads(json.dumps(optim.available(), allow_nan=False))
    adam = next(d for d in described if d["name"] == "adam")
    by_name = {h["name"]: h for h in adam["hyperparameters"]}
    assert by_name["lr"] == {**by_name["lr"], "type": "float", "default": 0.001, "min": 0.0, "max": None,
                             "min_inclusive": True}
    assert by_name["betas"]["default"] == [0.9, 0.999] and by_name["betas"]["allowed"] == \
        "a pair of numbers, each in [0, 1)"
    assert by_name["amsgrad"]["type"] == "bool"
    options = {o["name"] for o in adam["options"]}
    assert options == {"schedule", "clip_grad_norm", "clip_grad_value", "nonfinite"}
    adamw = next(d for d in described if d["name"] == "adamw")
    assert {h["name"]: h["default"] for h in adamw["hyperparameters"]}["weight_decay"] == 0.01
    scheds = json.loads(json.dumps(optim.available_schedules(), allow_nan=False))
    assert {s["name"] for s in scheds} == {"constant", "step", "multistep", "exponential", "cosine",
                                          "linear_warmup", "warmup_cosine", "one_cycle"}


def test_defaults_match_torch():
    defaults = {d["name"]: {h["name"]: h["default"] for h in d["hyperparameters"]} for d in optim.available()}
    assert defaults["sgd"] == dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                                   maximize=False)
    assert defaults["adam"] == dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False,
                                    maximize=False)
    assert defaults["rmsprop"] == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                                       centered=False, maximize=False)
    assert defaults["adagrad"] == dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                                       eps=1e-10, maximize=False)


def test_create_unknown_name_lists_the_known_ones():
    with pytest.raises(optim.UnknownOptimizerError,
                       match="unknown optimizer 'adamm'; known optimizers: .*adam"):
        optim.create("adamm", _params((2,)))


def test_register_decorator_and_clashes():
    @optim.register("test_signsgd")
    class SignSGD(optim.Optimizer):
        """Sign SGD: θ ← θ − lr·sign(g)."""

        hyperparameters = (optim.Hyper("lr", "float", 0.1, low=0.0),)
        n_scratch = 1

        def __init__(self, params, lr=0.1, **options):
            super().__init__(params, dict(lr=lr), **options)

        @staticmethod
        def update(p, g, state, scratch, step, lr, hp, scalars):
            np.sign(g, out=scratch[0])
            scratch[0] *= -lr
            p += scratch[0]

    try:
        w = Tensor(np.array([1.0, 1.0]), requires_grad=True)
        opt = optim.create("test_signsgd", [w], lr=0.25)
        w.grad = np.array([3.0, -0.1])
        opt.step()
        np.testing.assert_array_equal(w.data, [0.75, 1.25])
        assert opt.state_dict()["meta"]["optimizer"] == "test_signsgd"
        assert "test_signsgd" in [d["name"] for d in optim.available()]
        with pytest.raises(optim.RegistryError, match="taken by"):
            optim.register("adam")(SignSGD)
        with pytest.raises(optim.RegistryError, match="not a subclass"):
            optim.register("test_bad")(object)
    finally:
        optim.unregister("test_signsgd")  # other tests list the registry
    assert "test_signsgd" not in [d["name"] for d in optim.available()]


def test_whether_step_takes_a_precomputed_norm_follows_its_signature():
    class OwnStep(optim.SGD):
        def step(self, closure=None):  # a plug-in's override, without the keyword
            return super().step(closure)

    class ForwardsKeywords(optim.SGD):
        def step(self, closure=None, **kwargs):
            return super().step(closure, **kwargs)

    class SaysSo(OwnStep):
        accepts_grad_norm = True

    class Inherits(OwnStep):
        pass

    assert optim.Optimizer.accepts_grad_norm and optim.SGD.accepts_grad_norm and optim.AdamW.accepts_grad_norm
    assert not OwnStep.accepts_grad_norm and not Inherits.accepts_grad_norm
    assert ForwardsKeywords.accepts_grad_norm and SaysSo.accepts_grad_norm
    w = Tensor(np.array([1.0]), requires_grad=True)
    opt = ForwardsKeywords([w], lr=0.5)
    w.grad = np.array([2.0])
    opt.step(grad_norm=2.0)
    assert w.data[0] == 0.0 and opt.last_grad_norm == 2.0


def test_docstrings_share_the_pieces_every_optimizer_takes():
    for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad, optim.RAdam):
        doc = cls.__doc__
        own = doc.split("\n\n")[0]
        assert "Arguments:" not in own and "params: a mapping name -> Tensor" in doc
        for h in cls.hyperparameters:
            assert f"    {h.name} (default {h.default!r}): {h.doc}; {h.allowed()}" in doc
        for option in ("schedule", "clip_grad_norm", "clip_grad_value", "nonfinite"):
            assert f"\n    {option} (default " in doc
    summaries = {d["name"]: d["summary"] for d in optim.available()}
    assert summaries["adam"] == " ".join(optim.Adam.__doc__.split("\n\n")[0].split())
    assert "Arguments" not in "".join(summaries.values())


# ---- the functional core ---------------------------------------------------------------------------


def test_functional_update_is_pure_and_equals_the_class():
    rng = np.random.default_rng(3)
    theta0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    w = Tensor(theta0.copy(), requires_grad=True)
    opt = optim.NAdam([w], lr=0.01, weight_decay=0.1)
    theta, state = theta0.copy(), functional.init("nadam", theta0, lr=0.01, weight_decay=0.1)
    for g in grads:
        w.grad = g
        opt.step()
        keep = theta.copy()
        theta, state = functional.update("nadam", theta, g, state, lr=0.01, weight_decay=0.1)
        assert not np.shares_memory(theta, keep)
    np.testing.assert_array_equal(theta, w.data)
    assert state["step"] == 4 and state["scalars"]["mu_product"] < 1


# ---- learning rate and counters --------------------------------------------------------------------


def test_lr_counters_and_group_lrs():
    a, b = _params((2,), (2,))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1,
                    schedule={"name": "step", "step_size": 1, "gamma": 0.5})
    assert opt.lr == 0.1 and opt.lrs() == [0.1, 0.5] and opt.last_lr is None and opt.step_count == 0
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    assert opt.last_lrs == [0.1, 0.5] and opt.lr == 0.05 and opt.step_count == 1


def test_frozen_tensors_are_skipped_even_with_weight_decay():
    live = Tensor(np.ones(2), requires_grad=True)
    frozen = Tensor(np.ones(2), requires_grad=False)
    opt = optim.AdamW([live, frozen], lr=0.1, weight_decay=0.5)
    opt.zero_grad()
    assert frozen.grad is None and live.grad is not None
    live.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(frozen.data, [1.0, 1.0])
    assert np.all(live.data < 1.0)
