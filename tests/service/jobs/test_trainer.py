"""The training loop against independent expectations: the lecture's numbers, a hand-written NumPy
XOR network (with its gradient statistics recomputed per parameter), determinism, divergence and
resume."""

import copy
import math

import numpy as np
import pytest

from service.jobs import presets
from service.jobs.plan import make_plan
from service.jobs.spec import parse_spec
from service.jobs.trainer import Trainer, join_arrays, split_arrays
from service.runtime.runner import run_job
from service.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(url=f"sqlite:///{tmp_path / 'gradbook.db'}")
    yield s
    s.close()


def train(store, doc, **kwargs):
    job_id = store.create_job(doc.get("name", "job"), doc)
    outcome = run_job(store, job_id, **kwargs)
    return job_id, outcome


def rows(store, job_id):
    return list(store.export_rows(job_id))


def same(a, b) -> bool:
    """Bit-for-bit equality of nested rows (NaN equal to NaN, arrays by bytes)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


# --- the lecture's network ----------------------------------------------------------------------------


def test_seed_preset_first_step_is_the_lecture(store):
    job_id, outcome = train(store, presets.get("seed"))
    assert outcome.status == "succeeded" and outcome.steps_done == 100
    step0 = store.step(job_id, 0)
    assert step0["loss"] == 2.0 and step0["lr"] == 0.1
    grads = {k: v.item() for k, v in step0["gradients"].items()}
    assert grads == {"w1": 6.0, "b1": 6.0, "w2": 4.0, "b2": 2.0}
    assert {k: v.item() for k, v in step0["params"].items()} == {"w1": 2.0, "b1": 0.0, "w2": 3.0, "b2": 1.0}
    assert step0["grad_norm"] == pytest.approx(math.sqrt(36 + 36 + 16 + 4), rel=1e-15)
    # one SGD step with lr 0.1: w1 = 2 - 0.6, b1 = -0.6, w2 = 3 - 0.4, b2 = 1 - 0.2
    step1 = store.step(job_id, 1)
    assert {k: v.item() for k, v in step1["params"].items()} == pytest.approx(
        {"w1": 1.4, "b1": -0.6, "w2": 2.6, "b2": 0.8}, rel=1e-15)
    # a2 = relu(w2 relu(w1 + b1) + b2) = 2.6 * 0.8 + 0.8 = 2.88; J = (2.88 - 5)² / 2
    assert step1["loss"] == pytest.approx((2.88 - 5) ** 2 / 2, rel=1e-14)
    job = store.get_job(job_id)
    assert job["status"] == "succeeded" and job["steps_done"] == 100
    assert job["param_names"] == ["w1", "b1", "w2", "b2"]


# --- XOR against a hand-written NumPy network -------------------------------------------------------


def xor_reference(w1, b1, w2, b2, steps, lr, momentum):
    """2-4-1 tanh network, logistic loss on logits, SGD with torch's momentum; forward, backward and
    update written out by hand. Yields (loss, grads, params before the update) per step."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    params = {"w1": w1.copy(), "b1": b1.copy(), "w2": w2.copy(), "b2": b2.copy()}
    buf = None
    for _ in range(steps):
        a1 = np.tanh(x @ params["w1"] + params["b1"])
        z2 = a1 @ params["w2"] + params["b2"]
        loss = np.mean(np.maximum(z2, 0) - z2 * y + np.log1p(np.exp(-np.abs(z2))))
        dz2 = (1 / (1 + np.exp(-z2)) - y) / y.size       # d mean(BCE) / d logit
        da1 = dz2 @ params["w2"].T
        dz1 = da1 * (1 - a1 ** 2)                          # tanh' = 1 - tanh²
        grads = {"w1": x.T @ dz1, "b1": dz1.sum(0), "w2": a1.T @ dz2, "b2": dz2.sum(0)}
        yield loss, grads, {k: v.copy() for k, v in params.items()}
        if buf is None:
            buf = {k: g.copy() for k, g in grads.items()}   # torch: first buffer is the gradient
        else:
            buf = {k: momentum * buf[k] + grads[k] for k in grads}
        for k in params:
            params[k] = params[k] - lr * buf[k]


def test_xor_preset_matches_a_hand_written_numpy_network(store):
    doc = presets.get("xor")
    job_id, outcome = train(store, doc)
    assert outcome.status == "succeeded"
    steps, lr, momentum = doc["steps"], doc["optimizer"]["lr"], doc["optimizer"]["momentum"]

    # initial weights: Xavier uniform, bound sqrt(6 / (fan_in + fan_out)), drawn in order w1, w2
    rng = np.random.default_rng(doc["model"]["init"]["seed"])
    w1 = rng.uniform(-math.sqrt(6 / 6), math.sqrt(6 / 6), (2, 4))
    w2 = rng.uniform(-math.sqrt(6 / 5), math.sqrt(6 / 5), (4, 1))
    first = store.step(job_id, 0)["params"]
    assert np.array_equal(first["w1"], w1) and np.array_equal(first["w2"], w2)
    assert not first["b1"].any() and not first["b2"].any()

    history = store.history(job_id, max_points=steps)
    stats = {name: store.gradients(job_id, name, max_points=steps) for name in ("w1", "b1", "w2", "b2")}
    assert [h["step"] for h in history] == list(range(steps))
    reference = xor_reference(w1, np.zeros(4), w2, np.zeros(1), steps, lr, momentum)
    for s, (loss, grads, params) in enumerate(reference):
        recorded = store.step(job_id, s)
        assert recorded["loss"] == pytest.approx(loss, rel=1e-12, abs=1e-15)
        assert history[s]["lr"] == lr
        for name in grads:
            np.testing.assert_allclose(recorded["gradients"][name], grads[name], rtol=1e-9, atol=1e-15)
            np.testing.assert_allclose(recorded["params"][name], params[name], rtol=1e-9, atol=1e-15)
            g = grads[name]
            row = stats[name][s]
            assert row["step"] == s
            assert row["norm"] == pytest.approx(np.linalg.norm(g), rel=1e-9, abs=1e-15)
            assert row["mean"] == pytest.approx(g.mean(), rel=1e-9, abs=1e-15)
            assert row["std"] == pytest.approx(g.std(), rel=1e-7, abs=1e-15)
            assert row["min"] == pytest.approx(g.min(), rel=1e-9, abs=1e-15)
            assert row["max"] == pytest.approx(g.max(), rel=1e-9, abs=1e-15)
            assert row["nonfinite"] == 0
        total = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        assert history[s]["grad_norm"] == pytest.approx(total, rel=1e-9)
    assert history[-1]["loss"] < 0.05  # it learns XOR


# --- checkpoints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule, field", [
    ({"name": "cosine"}, "t_max"),
    ("cosine", "t_max"),
    ({"name": "one_cycle"}, "total_steps"),
    ({"name": "warmup_cosine", "warmup_steps": 2}, "total_steps"),
])
def test_a_schedule_without_its_run_length_runs_over_the_plan(schedule, field):
    doc = copy.deepcopy(presets.get("moons"))
    doc.pop("steps", None)
    doc.update(epochs=3, batch_size=40, validation=None)
    doc["optimizer"] = {"name": "sgd", "lr": 0.1, "schedule": schedule}
    plan = make_plan(parse_spec(doc))
    assert plan.total_steps == 3 * math.ceil(doc["data"].get("n", 200) / 40)
    assert Trainer(plan).optimizer.schedule.values[field] == plan.total_steps


def test_checkpoint_state_round_trips_through_json():
    import json

    state = {"meta": {"betas": (0.9, 0.999), "max": float("inf"), "count": np.int64(3)},
             "arrays": {"state.w1.exp_avg": np.arange(6.0).reshape(2, 3)}, 1: [np.float32(2.5)]}
    arrays = {}
    meta = json.loads(json.dumps(split_arrays(state, arrays, "optim."), allow_nan=False))
    back = join_arrays(meta, arrays)
    assert back["meta"] == {"betas": (0.9, 0.999), "max": float("inf"), "count": 3}
    assert np.array_equal(back["arrays"]["state.w1.exp_avg"], np.arange(6.0).reshape(2, 3))
    assert back[1] == [2.5]


# --- determinism, divergence, cancellation, resume ---------------------------------------------------------


def moons_short(**changes):
    doc = presets.get("moons")
    doc.pop("epochs")
    doc.update(steps=40, checkpoint_every=7, **changes)
    return doc


def test_same_spec_gives_a_bit_identical_history(store):
    doc = moons_short()
    a, _ = train(store, doc)
    b, _ = train(store, copy.deepcopy(doc))
    ra, rb = rows(store, a), rows(store, b)
    assert len(ra) == 40 and same(ra, rb)
    assert same(store.step(a, 21), store.step(b, 21))
    assert ra[0]["val_loss"] is not None and 0 <= ra[0]["val_accuracy"] <= 1
    c, _ = train(store, moons_short(seed=1))  # another shuffle seed: another history
    assert not same(ra, rows(store, c))


def test_minibatches_follow_the_seeded_permutation_of_each_epoch():
    plan = make_plan(parse_spec(moons_short(shuffle=True)))
    trainer = Trainer(plan)
    n, bs = plan.train.x.shape[0], plan.batch_size
    assert (n, bs, plan.batches_per_epoch) == (160, 32, 5)
    epoch1 = np.concatenate([trainer.batch_indices(s) for s in range(5, 10)])
    assert np.array_equal(np.sort(epoch1), np.arange(n))  # every row once per epoch
    assert np.array_equal(epoch1, np.random.default_rng([plan.spec.seed, 1]).permutation(n))


def geometric_divergence():
    """One linear unit, x = 1, y = 0, mse, SGD lr 3: the prediction p gets multiplied by
    1 - lr * 4 = -11 each step (dJ/dw = dJ/db = 2p), so the loss p² overflows after ~148 steps."""
    return {"name": "diverge", "model": {"layers": [{"units": 1, "activation": "linear"}],
                                         "init": {"w1": [[1.0]], "b1": [0.0]}},
            "data": {"x": [[1.0]], "y": [[0.0]]}, "loss": "mse",
            "optimizer": {"name": "sgd", "lr": 3.0}, "steps": 1000}


def test_divergence_fails_the_job_at_the_first_non_finite_loss(store):
    p, first_bad = 1.0, None
    for k in range(1000):  # the same recurrence in plain Python floats
        if not math.isfinite(p * p):
            first_bad = k
            break
        p = p - 3.0 * (2 * p + 2 * p)
    job_id, outcome = train(store, geometric_divergence())
    assert outcome.status == "failed"
    job = store.get_job(job_id)
    assert job["status"] == "failed"
    assert job["error"] == f"diverged at step {first_bad}: loss is inf"
    history = rows(store, job_id)
    assert [r["step"] for r in history] == list(range(first_bad + 1))  # kept up to and including it
    assert history[-1]["loss"] == math.inf and math.isfinite(history[-2]["loss"])


def test_non_finite_gradient_entries_are_counted(store):
    # x2 = 1e308 times w = 10 overflows: the prediction, the loss and the gradients are infinite
    doc = {"model": {"layers": [{"units": 1, "activation": "linear"}], "init": {"w1": [[1.0], [10.0]]}},
           "data": {"x": [[1.0, 1e308]], "y": [[0.0]]}, "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 5}
    job_id, outcome = train(store, doc)
    assert outcome.status == "failed" and store.get_job(job_id)["error"] == "diverged at step 0: loss is inf"
    stats = {name: store.gradients(job_id, name)[0] for name in ("w1", "b1")}
    assert stats["w1"]["nonfinite"] == 2 and stats["b1"]["nonfinite"] == 1
    assert store.step(job_id, 0)["gradients"]["w1"].ravel().tolist() == [math.inf, math.inf]


def test_a_non_finite_gradient_with_a_finite_loss_fails_the_job(store):
    # pred = 1e308 * 0 = 0, J = (0 - 1)² = 1, but dJ/dw = x * 2 (pred - y) = -2e308 overflows to -inf
    doc = {"model": {"layers": [{"units": 1, "activation": "linear"}], "init": {"w1": [[0.0]]}},
           "data": {"x": [[1e308]], "y": [[1.0]]}, "loss": "mse",
           "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 5}
    job_id, outcome = train(store, doc)
    job = store.get_job(job_id)
    assert outcome.status == "failed" and job["error"] == "diverged at step 0: gradient of w1 is not finite"
    [row] = rows(store, job_id)
    assert row["loss"] == 1.0 and store.gradients(job_id, "w1")[0]["nonfinite"] == 1
    assert store.gradients(job_id, "b1")[0]["nonfinite"] == 0


def test_cancellation_keeps_the_history_so_far(store):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 12

    job_id, outcome = train(store, presets.get("seed"), should_stop=should_stop)
    job = store.get_job(job_id)
    assert outcome.status == "cancelled" and job["status"] == "cancelled"
    assert [r["step"] for r in rows(store, job_id)] == list(range(12))


def test_a_cancel_from_outside_is_noticed_at_the_next_flush(store, monkeypatch):
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "5")
    job_id = store.create_job("seed", presets.get("seed"))
    api = Store(url=store.url)  # another connection, as the REST process would have
    calls = []

    def cancel_from_the_api_at_step_20():
        calls.append(1)
        if len(calls) == 21:
            api.transition(job_id, "cancelled", reason="cancelled over REST")
        return False

    outcome = run_job(store, job_id, should_stop=cancel_from_the_api_at_step_20)
    api.close()
    job = store.get_job(job_id)
    assert outcome.status == "cancelled" and job["status"] == "cancelled" and job["error"] is None
    steps = [r["step"] for r in rows(store, job_id)]
    assert steps == list(range(len(steps))) and 20 <= len(steps) <= 25


def test_an_interruption_recorded_from_outside_is_not_overwritten_by_the_runner(store):
    """A server shutting down marks its jobs interrupted and stops them; the runner's own final
    transition (which would say cancelled) must leave that state alone, so resume stays possible."""
    job_id = store.create_job("seed", presets.get("seed"))
    other = Store(url=store.url)
    calls = []

    def interrupted_from_outside():
        calls.append(1)
        if len(calls) == 5:
            other.transition(job_id, "interrupted", reason="server shutting down")
            return True
        return False

    run_job(store, job_id, should_stop=interrupted_from_outside)
    other.close()
    assert store.get_job(job_id)["status"] == "interrupted"
    assert run_job(store, job_id, resume=True).status == "succeeded"


def test_resumed_history_equals_the_uninterrupted_one(store):
    doc = moons_short(optimizer={"name": "adam", "lr": 0.01,
                                 "schedule": {"name": "cosine", "t_max": 40}, "clip_grad_norm": 1.0})
    straight, _ = train(store, doc)

    calls = []

    def crash_at_step_23():
        calls.append(1)
        if len(calls) > 23:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM: pending rows are flushed, job interrupted
        return False

    job_id = store.create_job("moons", copy.deepcopy(doc))
    with pytest.raises(KeyboardInterrupt):
        run_job(store, job_id, should_stop=crash_at_step_23)
    assert store.get_job(job_id)["status"] == "interrupted"
    assert len(rows(store, job_id)) == 23 and store.last_checkpoint(job_id).step == 21
    outcome = run_job(store, job_id, resume=True)
    assert outcome.status == "succeeded"
    assert same(rows(store, job_id), rows(store, straight))
    for s in (0, 21, 22, 39):
        assert same(store.step(job_id, s), store.step(straight, s))


def test_float32_jobs_train_in_float32(store):
    doc = presets.get("sine")
    doc.update(steps=5, dtype="float32")
    job_id, outcome = train(store, doc)
    assert outcome.status == "succeeded"
    snap = store.step(job_id, 0)
    assert all(a.dtype == np.float32 for a in snap["gradients"].values())
    assert all(a.dtype == np.float32 for a in snap["params"].values())


# --- review fixes: nothing lost when stopping, plug-ins with their own step() ------------------------------


def test_a_snapshot_buffered_after_an_automatic_flush_is_written_when_the_job_stops(store, monkeypatch):
    """add_step flushes by itself every AUTOFLUSH_STEPS steps, before that step's snapshot is
    buffered: a stop right then has no steps pending but still a snapshot to write."""
    from service.store import write as store_writer

    monkeypatch.setattr(store_writer, "AUTOFLUSH_STEPS", 5)
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "100000")
    monkeypatch.setenv("GRADBOOK_FLUSH_SECONDS", "1000")
    calls = iter(range(100))
    job_id, outcome = train(store, presets.get("seed"), should_stop=lambda: next(calls) >= 5)
    assert outcome.status == "cancelled" and outcome.steps_done == 5
    assert [r["step"] for r in rows(store, job_id)] == list(range(5))
    assert store.snapshot_steps(job_id) == list(range(5))


def test_a_plugin_optimizer_that_overrides_step_without_grad_norm_still_trains(store):
    import optim

    @optim.register("plain_sgd_test")
    class PlainSGD(optim.SGD):
        def step(self, closure=None):  # the signature third-party code may well have
            return super().step(closure)

    try:
        doc = presets.get("seed")
        doc["optimizer"] = {"name": "plain_sgd_test", "lr": 0.1}
        doc["steps"] = 3
        job_id, outcome = train(store, doc)
        assert outcome.status == "succeeded"
        assert rows(store, job_id)[0]["loss"] == 2.0
    finally:
        optim.unregister("plain_sgd_test")
