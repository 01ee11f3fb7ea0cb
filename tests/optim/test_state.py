"""State dicts: JSON metadata plus named arrays, matched by name, strict about mismatches, and a
resume in a fresh process that continues bit for bit."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import optim
from autodiff import Tensor

# The training loop shared by this process and the resumed one (exec'd in both).
TRAIN = textwrap.dedent('''
    import numpy as np
    import autodiff as ad
    import optim

    SIZES = [3, 5, 2]

    def make_params(values=None):
        model = ad.nn.MLP(SIZES, activations=["tanh", "linear"], seed=0, values=values)
        return model, model.parameters()

    def train(model, opt, start, stop):
        for step in range(start, stop):
            rng = np.random.default_rng(1000 + step)
            x = rng.standard_normal((8, SIZES[0]))
            y = rng.standard_normal((8, SIZES[-1]))
            opt.zero_grad()
            ad.nn.mse(model(ad.Tensor(x)), y).backward()
            opt.step()
''')

CASES = [
    ("adam", dict(lr=0.05, amsgrad=True, clip_grad_norm=0.5,
                  schedule={"name": "warmup_cosine", "warmup_steps": 3, "total_steps": 12})),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, clip_grad_value=0.2,
                 schedule={"name": "multistep", "milestones": [4, 8], "gamma": 0.5})),
    ("nadam", dict(lr=0.01, clip_grad_norm=1.0, schedule={"name": "one_cycle", "total_steps": 12})),
    ("rmsprop", dict(lr=0.01, momentum=0.5, centered=True, schedule={"name": "cosine", "t_max": 7})),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                     schedule={"name": "exponential", "gamma": 0.9})),
]
N, K = 12, 5

RESUME = TRAIN + textwrap.dedent('''
    import json, sys
    cases, n, k, folder = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    for i, (name, hp) in enumerate(cases):
        values = dict(np.load(f"{folder}/params{i}.npz"))
        model, params = make_params(values)
        opt = optim.create(name, params, **hp)
        opt.load_state_dict(optim.load_state(f"{folder}/opt{i}.bin"))
        train(model, opt, k, n)
        np.savez(f"{folder}/resumed{i}.npz", **{key: t.data for key, t in params.items()})
        assert opt.step_count == n, opt.step_count
''')


def _run_here():
    scope = {}
    exec(TRAIN, scope)
    return scope


def test_resume_in_a_fresh_process_is_bit_for_bit(tmp_path):
    scope = _run_here()
    straight = []
    for i, (name, hp) in enumerate(CASES):
        model, params = scope["make_params"]()
        opt = optim.create(name, params, **hp)
        scope["train"](model, opt, 0, N)
        straight.append({key: t.data.copy() for key, t in params.items()})

        model, params = scope["make_params"]()
        opt = optim.create(name, params, **hp)
        scope["train"](model, opt, 0, K)
        optim.save_state(opt.state_dict(), tmp_path / f"opt{i}.bin")
        np.savez(tmp_path / f"params{i}.npz", **{key: t.data for key, t in params.items()})

    subprocess.run([sys.executable, "-c", RESUME, json.dumps(CASES), str(N), str(K), str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    for i, (name, _) in enumerate(CASES):
        resumed = dict(np.load(tmp_path / f"resumed{i}.npz"))
        for key, value in straight[i].items():
            assert resumed[key].tobytes() == value.tobytes(), f"{name}: {key} differs after resume"


def _adam_after_steps(names=("w", "b"), shapes=((2, 3), (3,)), steps=2, **hp):
    rng = np.random.default_rng(0)
    ps = {n: Tensor(rng.standard_normal(s), requires_grad=True) for n, s in zip(names, shapes, strict=True)}
    opt = optim.Adam(ps, lr=0.1, **hp)
    for _ in range(steps):
        for t in ps.values():
            t.grad = rng.standard_normal(t.shape)
        opt.step()
    return opt, ps


def test_state_dict_is_json_metadata_plus_named_arrays():
    opt, ps = _adam_after_steps(schedule={"name": "cosine", "t_max": 10}, clip_grad_norm=2.0)
    sd = opt.state_dict()
    meta = json.loads(json.dumps(sd["meta"], allow_nan=False))
    assert meta["format"] == "gradbook.optim.state" and meta["version"] == 1 and meta["optimizer"] == "adam"
    assert meta["step_count"] == 2 and meta["schedule"] == {"name": "cosine", "t_max": 10, "eta_min": 0.0}
    assert meta["options"]["clip_grad_norm"] == 2.0
    assert meta["groups"][0]["params"] == ["w", "b"] and meta["groups"][0]["hyperparameters"]["lr"] == 0.1
    w = meta["params"]["w"]
    assert w["shape"] == [2, 3] and w["dtype"] == "float64" and w["step"] == 2
    assert set(w["arrays"]) == {"exp_avg", "exp_avg_sq"}
    arr = sd["arrays"][w["arrays"]["exp_avg"]]
    assert arr.shape == (2, 3)
    arr[...] = 123.0  # a copy: the optimizer is not affected
    assert not np.any(opt.state_dict()["arrays"][w["arrays"]["exp_avg"]] == 123.0)


def test_loading_matches_by_name_not_position():
    opt, ps = _adam_after_steps()
    sd = opt.state_dict()
    reordered = {"b": Tensor(ps["b"].data.copy(), requires_grad=True),
                 "w": Tensor(ps["w"].data.copy(), requires_grad=True)}
    fresh = optim.Adam(reordered, lr=0.1)
    fresh.load_state_dict(sd)
    grads = {"w": np.ones((2, 3)), "b": np.full(3, -1.0)}
    for n in ("w", "b"):
        ps[n].grad, reordered[n].grad = grads[n], grads[n].copy()
    opt.step()
    fresh.step()
    for n in ("w", "b"):
        np.testing.assert_array_equal(ps[n].data, reordered[n].data)


def test_mismatches_are_all_reported_and_nothing_is_loaded():
    opt, _ = _adam_after_steps()
    sd = opt.state_dict()
    other = {"w": Tensor(np.zeros((3, 2)), requires_grad=True), "c": Tensor(np.zeros(1), requires_grad=True)}
    target = optim.Adam(other, lr=0.5)
    with pytest.raises(optim.StateDictError) as info:
        target.load_state_dict(sd)
    err = info.value
    assert err.missing == ["c"] and err.unexpected == ["b"] and err.reshaped == [("w", (2, 3), (3, 2))]
    assert "missing from the state dict: c" in str(err) and "unexpected in the state dict: b" in str(err)
    assert "w has shape [2, 3] in the state dict, the parameter has [3, 2]" in str(err)
    assert target.param_groups[0]["lr"] == 0.5 and target.step_count == 0  # untouched


def test_non_strict_load_reports_missing_and_unexpected():
    opt, ps = _adam_after_steps()
    sd = opt.state_dict()
    target = optim.Adam({"w": Tensor(ps["w"].data.copy(), requires_grad=True),
                         "c": Tensor(np.zeros(1), requires_grad=True)})
    report = target.load_state_dict(sd, strict=False)
    assert report.missing == ["c"] and report.unexpected == ["b"]
    meta = target.state_dict()["meta"]
    assert meta["params"]["w"]["step"] == 2 and meta["params"]["c"]["step"] == 0
    assert target.param_groups[0]["lr"] == 0.1  # hyperparameters come from the checkpoint


def test_dtype_change_is_never_loaded():
    opt, _ = _adam_after_steps()
    target = optim.Adam({"w": Tensor(np.zeros((2, 3), dtype=np.float32), requires_grad=True),
                         "b": Tensor(np.zeros(3), requires_grad=True)})
    with pytest.raises(optim.StateDictError,
                       match="w has dtype float64 in the state dict, the parameter has"):
        target.load_state_dict(opt.state_dict(), strict=False)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda sd: sd["meta"].update(version=2), "version 2 is not supported"),
    (lambda sd: sd["meta"].update(format="torch"), "not an optimizer state dict"),
    (lambda sd: sd["meta"].update(optimizer="sgd"), "state dict is for optimizer 'sgd', not 'adam'"),
    (lambda sd: sd["arrays"].pop("state.w.exp_avg"), "lacks the 'exp_avg' array of parameter 'w'"),
    (lambda sd: sd["meta"]["groups"][0]["hyperparameters"].update(lr=-1), "lr must be a number"),
    (lambda sd: sd["meta"]["params"]["w"].pop("shape"), "malformed state dict \\(KeyError: 'shape'\\)"),
])
def test_corrupt_state_dicts_are_refused(edit, message):
    opt, _ = _adam_after_steps()
    sd = opt.state_dict()
    edit(sd)
    fresh, _ = _adam_after_steps(steps=0)
    with pytest.raises(optim.OptimError, match=message):
        fresh.load_state_dict(sd)


def test_pack_and_unpack_round_trip(tmp_path):
    opt, _ = _adam_after_steps(amsgrad=True, shapes=((2, 3), ()))
    sd = opt.state_dict()
    blob = optim.pack_state(sd)
    back = optim.unpack_state(blob)
    assert back["meta"] == json.loads(json.dumps(sd["meta"]))
    assert set(back["arrays"]) == set(sd["arrays"])
    for k, v in sd["arrays"].items():
        assert back["arrays"][k].dtype == v.dtype and back["arrays"][k].tobytes() == v.tobytes()
    optim.save_state(sd, tmp_path / "s.bin")
    assert optim.load_state(tmp_path / "s.bin")["arrays"].keys() == sd["arrays"].keys()
    with pytest.raises(optim.StateDictError, match="truncated"):
        optim.unpack_state(blob[:20])


def test_big_endian_arrays_are_stored_little_endian():
    sd = {"meta": {"format": "x"}, "arrays": {"a": np.arange(3, dtype=">f8")}}
    blob = optim.pack_state(sd)
    assert np.arange(3, dtype="<f8").tobytes() in blob
    np.testing.assert_array_equal(optim.unpack_state(blob)["arrays"]["a"], [0.0, 1.0, 2.0])


def test_nadam_scalar_state_survives_a_round_trip():
    w = Tensor(np.ones(2), requires_grad=True, name="w")
    opt = optim.NAdam([w], lr=0.01)
    for _ in range(3):
        w.grad = np.ones(2)
        opt.step()
    meta = optim.unpack_state(optim.pack_state(opt.state_dict()))["meta"]
    mu = meta["params"]["w"]["scalars"]["mu_product"]
    beta1, psi = 0.9, 4e-3
    expected = 1.0
    for t in (1, 2, 3):
        expected *= beta1 * (1 - 0.5 * 0.96 ** (t * psi))
    assert mu == pytest.approx(expected, rel=1e-15)
