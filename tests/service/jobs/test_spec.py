"""Job spec validation: every bad field is reported with its path and what was expected."""

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.jobs import presets
from service.jobs.plan import default_snapshot_every, make_plan
from service.jobs.spec import JobSpec, SpecError, parse_spec

SEED = {
    "name": "seed",
    "model": {"layers": [{"units": 1, "activation": "relu"}, {"units": 1, "activation": "relu"}],
              "init": {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}},
    "data": {"x": [[1.0]], "y": [[5.0]]},
    "loss": "half_squared_error",
    "optimizer": {"name": "sgd", "lr": 0.1},
    "steps": 100,
}


def errors_of(doc) -> str:
    with pytest.raises(SpecError) as info:
        make_plan(parse_spec(doc))
    return str(info.value)


def changed(path: str, value, base=SEED):
    """A copy of base with the dotted path set to value (value None deletes it)."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def test_the_issue_example_parses_and_plans():
    plan = make_plan(parse_spec(SEED))
    assert plan.sizes == [1, 1, 1] and plan.n_params == 4
    assert plan.total_steps == 100 and plan.batch_size == 1 and plan.batches_per_epoch == 1
    assert plan.snapshot_every == 1  # small model: every step
    assert plan.param_shapes() == {"w1": (1, 1), "b1": (1,), "w2": (1, 1), "b2": (1,)}
    assert np.array_equal(plan.train.x, [[1.0]]) and np.array_equal(plan.train.y, [[5.0]])


def test_the_normalised_spec_round_trips():
    spec = parse_spec(SEED)
    dumped = spec.model_dump(mode="json")
    assert parse_spec(json.loads(json.dumps(dumped))).model_dump(mode="json") == dumped
    assert dumped["model"]["init"]["w1"] == [[2.0]]


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_is_valid(name):
    plan = make_plan(parse_spec(presets.get(name)))
    assert plan.total_steps >= 1


@pytest.mark.parametrize("path, value, message", [
    ("model.init.w1", [2.0], r"model.init.w1: expected shape \(1, 1\), got \(1,\)"),
    ("model.init.w1", [[2.0, 1.0]], r"model.init.w1: expected shape \(1, 1\), got \(1, 2\)"),
    ("model.init.w3", [[1.0]], "model.init.w3: this model has parameters w1, b1, w2, b2"),
    ("model.init.bias", [1.0], "model.init.bias: unknown key; expected scheme, seed or parameter names"),
    ("model.init.b1", [[1.0], [2.0, 3.0]], "model.init.b1: must be a number or nested lists of numbers"),
    ("model.init.scheme", "orthogonal", "model.init.scheme: Input should be 'he', 'xavier' or 'normal'"),
    ("model.layers.0.activation", "gelu", r"model.layers\[0\].activation: Input should be 'relu', 'tanh'"),
    ("model.layers.1.units", 0, r"model.layers\[1\].units: Input should be greater than or equal to 1"),
    ("model.layers.0.size", 3, r"model.layers\[0\].size: unknown field"),
    ("model.layers", [], "model.layers: List should have at least 1 item"),
    ("optimizer", None, "optimizer: required field is missing"),
    ("optimizer.name", "sgdd", "optimizer.name: unknown optimizer 'sgdd'; choose from .*sgd"),
    ("loss", "hinge", "loss: Input should be 'half_squared_error', 'mse', 'cross_entropy'"),
    ("steps", 0, "steps: Input should be greater than or equal to 1"),
    ("steps", None, "steps: give exactly one of steps or epochs"),
    ("epochs", 3, "steps: give exactly one of steps or epochs"),
    ("batch_size", 2, "batch_size: 2 is more than the 1 training rows"),
    ("dtype", "float16", "dtype: Input should be 'float64' or 'float32'"),
    ("colour", "red", "colour: unknown field"),
    ("data", {"x": [[1.0]]}, "data.y: required field is missing"),
    ("data", {"x": [[1.0]], "y": [[5.0, 1.0]]}, r"data.y: has 2 column\(s\) but the last layer has 1 unit"),
    ("data", {"x": [[1.0], [2.0]], "y": [[5.0]]}, "data.y: has 1 rows but x has 2"),
    ("data", {"x": [["a"]], "y": [[5.0]]}, r"data.x\[0\]\[0\]: Input should be a valid number"),
    ("data", {"dataset": "circles"}, "data.dataset: unknown dataset 'circles'; choose from xor, moons"),
    ("data", {"dataset": "moons", "n": 1}, "data.n: Input should be greater than or equal to 2"),
    ("data", {"dataset": "moons", "classes": 3}, "data.classes: unknown field"),
    ("data", {"rows": []}, "data: expected .*dataset"),
    ("data", [1, 2], "data: must be an object"),
    ("validation", {"fraction": 1.5}, "validation.fraction: Input should be less than 1"),
    ("validation", {"fraction": 0.5}, "validation.fraction: 0.5 of 1 rows leaves 1 for training and 0"),
])
def test_bad_fields_are_named(path, value, message):
    assert _search(message, errors_of(changed(path, value)))


def _search(pattern, text):
    import re

    if not re.search(pattern, text):
        raise AssertionError(f"{pattern!r} not in {text!r}")
    return True


def test_non_finite_numbers_in_data_and_init_are_refused():
    doc = json.loads(json.dumps(SEED).replace('"x": [[1.0]]', '"x": [[NaN]]'))
    assert _search(r"data.x\[0\]\[0\]: Input should be a finite number", errors_of(doc))
    assert _search("model.init.w2: values must be finite", errors_of(changed("model.init.w2", [[math.inf]])))


def test_cross_entropy_labels_must_fit_the_output_layer():
    doc = changed("loss", "cross_entropy", changed("model.layers.1.units", 2))
    doc["model"]["init"] = {"scheme": "he"}
    doc["data"] = {"x": [[0.0], [1.0]], "y": [0, 2]}
    expected = r"data.y: cross_entropy labels must be integers in \[0, 2\).*got 2 in row 2"
    assert _search(expected, errors_of(doc))
    doc["data"]["y"] = [0, 1]
    assert list(make_plan(parse_spec(doc)).train.y) == [0, 1]


def test_every_error_is_reported_at_once():
    doc = changed("model.layers.0.activation", "gelu", changed("loss", "hinge"))
    text = errors_of(doc)
    assert "model.layers[0].activation" in text and "loss:" in text


def test_every_bad_optimizer_field_is_reported_at_once():
    text = errors_of(changed("optimizer", {"name": "adam", "lr": -1, "betas": [0.9], "eps": -5}))
    assert "optimizer.lr:" in text and "optimizer.betas:" in text and "optimizer.eps:" in text


@pytest.mark.parametrize("path, value", [
    ("optimizer.name", "x" * 1_000_000),
    ("optimizer.lr", "x" * 1_000_000),
    ("optimizer.schedule", {"name": "x" * 1_000_000}),
    ("data", {"dataset": "x" * 1_000_000}),
    ("x" * 1_000_000, 1),
    ("model.init." + "x" * 1_000_000, [1.0]),
])
def test_errors_never_echo_a_huge_value_whole(path, value):
    with pytest.raises(SpecError) as info:
        make_plan(parse_spec(changed(path, value)))
    assert len(str(info.value)) < 1000 and "characters)" in str(info.value)
    assert all(len(e["msg"]) < 1000 and all(len(str(p)) < 300 for p in e["loc"]) for e in info.value.errors)


@pytest.mark.parametrize("path, value", [
    ("steps", True), ("steps", "3"), ("steps", 3.0), ("batch_size", True), ("seed", False),
    ("model.layers.0.units", True), ("model.layers.0.units", "1"), ("model.init.seed", True),
    ("model.init.w1", [[True]]), ("model.init.w1", [["2"]]), ("model.init.b1", "0"),
    ("data.x", [[True]]), ("data.x", [["1.0"]]), ("data.y", [["5"]]), ("data.y", [False]),
    ("optimizer.lr", True), ("optimizer.lr", "0.1"), ("optimizer.name", 1), ("shuffle", 1),
    ("data", {"dataset": "moons", "n": True}), ("data", {"dataset": "moons", "noise": "0.1"}),
    ("validation", {"fraction": True}), ("validation", {"fraction": 0.5, "every": "1"}),
])
def test_booleans_and_strings_are_not_numbers(path, value):
    errors_of(changed(path, value))


def test_ints_stay_accepted_where_floats_are_expected():
    plan = make_plan(parse_spec(changed("data.x", [[1]], changed("optimizer.lr", 1))))
    assert plan.train.x.dtype == np.float64


def test_a_schedule_longer_than_the_run_is_checked_against_the_run():
    schedule = {"name": "warmup_cosine", "warmup_steps": 150}
    assert _search(r"optimizer.schedule.warmup_steps: .*total_steps=100\], got 150",
                   errors_of(changed("optimizer.schedule", schedule)))
    schedule["total_steps"] = 200  # given: kept
    assert make_plan(parse_spec(changed("optimizer.schedule", schedule))).total_steps == 100


def test_the_loss_is_named_as_the_engine_names_it_and_the_old_name_stays_accepted():
    doc = changed("model.init", {"scheme": "he"}, changed("data.y", [[1.0]]))
    for name in ("binary_cross_entropy_with_logits", "binary_cross_entropy"):
        spec = parse_spec(changed("loss", name, doc))
        assert spec.loss == "binary_cross_entropy_with_logits"
        dumped = spec.model_dump(mode="json")
        assert parse_spec(dumped).model_dump(mode="json") == dumped
    assert _search("data.y: binary_cross_entropy_with_logits targets must be 0 or 1",
                   errors_of(changed("loss", "binary_cross_entropy", changed("data.y", [[0.5]], doc))))


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRADBOOK_MAX_STEPS", "10")
    assert _search(r"steps: 100 steps exceed the limit of 10 \(GRADBOOK_MAX_STEPS\)", errors_of(SEED))
    monkeypatch.setenv("GRADBOOK_MAX_STEPS", "1000")
    monkeypatch.setenv("GRADBOOK_MAX_PARAMS", "3")
    assert _search("model.layers: the model has 4 parameters, over the limit of 3", errors_of(SEED))
    monkeypatch.setenv("GRADBOOK_MAX_DATA_VALUES", "100")
    doc = changed("data", {"dataset": "sine", "n": 60})
    doc["model"]["init"] = {}
    assert _search("data.n: 60 rows make 120 values, over the limit of 100", errors_of(doc))


def test_epochs_count_minibatches_per_epoch():
    doc = changed("steps", None)
    doc.update(epochs=3, batch_size=4, validation={"fraction": 0.2})
    doc["data"] = {"dataset": "linear", "n": 50, "features": 1}
    doc["model"]["init"] = {"b2": [0.5]}
    plan = make_plan(parse_spec(doc))
    assert plan.train.x.shape[0] == 40 and plan.val.x.shape[0] == 10
    assert plan.batches_per_epoch == 10 and plan.total_steps == 30


def test_large_models_snapshot_every_hundred_steps_by_default():
    doc = changed("model", {"layers": [{"units": 200}, {"units": 100}, {"units": 1}]})
    plan = make_plan(parse_spec(doc))
    assert plan.n_params == 1 * 200 + 200 + 200 * 100 + 100 + 100 + 1
    assert plan.snapshot_every == 100
    assert make_plan(parse_spec(dict(doc, snapshot_every=7))).snapshot_every == 7


@pytest.mark.parametrize(("n_params", "every"), [(10_000, 1), (10_001, 100), (50_000, 100), (50_001, 200),
                                                 (101_770, 500), (250_001, 1000), (2_000_000, 5000)])
def test_default_snapshot_interval_keeps_about_a_thousand_stored_values_a_step(n_params, every):
    assert default_snapshot_every(n_params) == every
    if every > 1:  # gradients and parameters, every `every` steps
        assert 2 * n_params / every <= 1000 or every == 100


def test_uploaded_datasets_are_accepted_but_need_the_service():
    doc = changed("data", {"dataset_id": 12})
    spec = parse_spec(doc)  # valid as a document
    assert spec.data.dataset_id == 12
    with pytest.raises(SpecError, match="data.dataset_id: uploaded datasets are only available through"):
        make_plan(spec)
    plan = make_plan(spec, resolve_dataset=lambda i: ([[1.0], [2.0]], [[5.0], [6.0]]))
    assert plan.train.x.shape == (2, 1)


def test_csv_data_is_checked_when_loaded(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,5\n2,7\n")
    plan = make_plan(parse_spec(changed("data", {"csv": str(path)})))
    assert np.array_equal(plan.train.x, [[1], [2]]) and np.array_equal(plan.train.y, [[5], [7]])
    path.write_text("x,y\n1,5\n2,oops\n")
    with pytest.raises(SpecError, match="data.csv: row 3 column 2: 'oops' is not a number"):
        make_plan(parse_spec(changed("data", {"csv": str(path)})))


def test_a_spec_must_be_an_object():
    with pytest.raises(SpecError, match="a job spec is a JSON object, got list"):
        parse_spec([1])


@settings(max_examples=30, deadline=None)
@given(n_in=st.integers(1, 4), hidden=st.integers(1, 4), n_out=st.integers(1, 3),
       rows=st.integers(1, 4), cols=st.integers(1, 4))
def test_explicit_weights_are_shape_checked(n_in, hidden, n_out, rows, cols):
    doc = {"model": {"layers": [{"units": hidden}, {"units": n_out, "activation": "linear"}],
                     "init": {"w1": np.ones((rows, cols)).tolist()}},
           "data": {"x": [[0.0] * n_in], "y": [[0.0] * n_out]},
           "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 1}
    if (rows, cols) == (n_in, hidden):
        assert make_plan(parse_spec(doc)).sizes == [n_in, hidden, n_out]
    else:
        assert _search(rf"model.init.w1: expected shape \({n_in}, {hidden}\), got \({rows}, {cols}\)",
                       errors_of(doc))


def test_validation_errors_keep_pydantic_locations_for_the_rest_api():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(changed("model.init.w1", [2.0]))
    [error] = info.value.errors()
    assert error["loc"] == ("model", "init", "w1") and error["msg"] == "expected shape (1, 1), got (1,)"


SCALARS = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=4)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(presets.names()), st.data(), JSON)
def test_any_mangled_spec_is_accepted_or_refused_with_a_spec_error(name, data, value):
    doc = presets.get(name)
    path = data.draw(st.sampled_from(list(_paths(doc))[1:]))
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    try:
        parse_spec(doc)
    except SpecError as e:
        assert all(isinstance(err["msg"], str) and err["msg"] for err in e.errors)
