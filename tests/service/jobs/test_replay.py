"""Numerical verification of recorded gradients, and the graph of a recorded step."""

import numpy as np
import pytest

from service.jobs import presets
from service.jobs.replay import GraphError, VerifyError, job_graph, preset_graph, relative_error, verify_step
from service.runtime.runner import run_job
from service.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(url=f"sqlite:///{tmp_path / 'gradbook.db'}")
    yield s
    s.close()


def trained(store, name, **changes):
    doc = presets.get(name)
    doc.update(changes)
    job_id = store.create_job(doc["name"], doc)
    assert run_job(store, job_id).status == "succeeded"
    return job_id


class Tampered:
    """The store, except that one recorded gradient entry is off by ``delta``."""

    def __init__(self, store, param, delta):
        self.store, self.param, self.delta = store, param, delta

    def __getattr__(self, name):
        return getattr(self.store, name)

    def step(self, job_id, step):
        record = self.store.step(job_id, step)
        record["gradients"][self.param].reshape(-1)[0] += self.delta
        return record


def test_recorded_gradients_agree_with_bumping(store):
    job_id = trained(store, "spirals", steps=3)
    report = verify_step(store, job_id, 2)
    assert report.n_params == 2 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3
    assert report.forward_passes == 2 * report.n_params
    assert set(report.per_param) == {"w1", "b1", "w2", "b2", "w3", "b3"}
    # central differences at eps 1e-6 are good to ~1e-10 absolute; relative to the smallest gradient
    # entries (~1e-7 here) that is ~1e-3, the usual bound for ReLU networks
    assert report.max_abs_error < 1e-8 and report.max_rel_error < 1e-2
    assert report.recorded_vs_replayed == 0.0  # replaying backprop at the snapshot gives the record


def test_a_wrong_recorded_gradient_is_caught(store):
    job_id = trained(store, "xor", steps=5)
    report = verify_step(Tampered(store, "w2", 1e-3), job_id, 3)
    assert report.worst_param == "w2" and report.max_rel_error > 1e-3
    assert max(e for name, e in report.per_param.items() if name != "w2") < 1e-6


def test_float32_jobs_are_checked_against_float64_bumping(store):
    job_id = trained(store, "sine", steps=3, dtype="float32")
    report = verify_step(store, job_id, 1)
    assert 0 < report.max_rel_error < 1e-2  # float32 rounding, not an error of backprop


def test_verify_refuses_what_it_cannot_check(store, monkeypatch):
    job_id = trained(store, "seed", steps=3)
    with pytest.raises(VerifyError, match="no recorded step 7"):
        verify_step(store, job_id, 7)
    with pytest.raises(VerifyError, match="no job 99"):
        verify_step(store, 99, 0)
    monkeypatch.setenv("GRADBOOK_VERIFY_MAX_PARAMS", "3")
    with pytest.raises(VerifyError, match="bumping each needs 8 forward passes, over the limit of 3"):
        verify_step(store, job_id, 0)


def test_relative_error_treats_two_zeros_as_agreement():
    assert relative_error(np.array([0.0, 1.0, -2.0]), np.array([0.0, 1.0 + 1e-9, -2.0])).tolist() == \
        pytest.approx([0.0, 1e-9, 0.0], abs=1e-15)


def test_steps_without_a_snapshot_are_replayed_from_the_nearest_state_before_them(store):
    job_id = trained(store, "sine", steps=25, snapshot_every=10, checkpoint_every=5)
    report = verify_step(store, job_id, 13)
    # checkpoints every 5 steps, one kept per block of 10 (the snapshot spacing): 5, 10, 20 and the end
    assert report.replayed["from_step"] == 10 and report.replayed["steps"] == 3
    assert report.replayed["matches_record"] and report.max_rel_error < 1e-6
    graph = job_graph(store, job_id, 24)
    assert float(graph.output.value) == store.step(job_id, 24)["loss"]
    assert verify_step(store, job_id, 20).replayed is None  # a snapshot step is read, not replayed
    with pytest.raises(VerifyError, match="no recorded step 25"):
        verify_step(store, job_id, 25)


def test_graph_of_a_recorded_minibatch_step_gives_its_loss(store):
    job_id = trained(store, "moons", epochs=2)
    for step in (0, 7):
        graph = job_graph(store, job_id, step)
        assert graph.output.name == "J"
        assert float(graph.output.value) == store.step(job_id, step)["loss"]
        assert graph.node("x").value.shape == (32, 2)  # the very minibatch of that step


def test_graphs_of_large_batches_are_refused(monkeypatch):
    monkeypatch.setenv("GRADBOOK_GRAPH_MAX_VALUES", "100")
    with pytest.raises(GraphError, match="over the limit of 100"):
        preset_graph("moons")


@pytest.mark.parametrize("loss, data, n_out", [
    ("half_squared_error", {"dataset": "linear", "n": 12, "features": 3, "outputs": 2}, 2),
    ("mse", {"dataset": "sine", "n": 12}, 1),
    ("cross_entropy", {"dataset": "spirals", "n": 12, "classes": 3}, 3),
    ("binary_cross_entropy", {"dataset": "moons", "n": 12}, 1),
])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "linear"])
def test_every_activation_and_loss_records_true_gradients(store, activation, loss, data, n_out):
    # b1 = 0.1, not 0: the spirals start at the origin, where z1 = x w1 + 0 would sit on the ReLU's
    # kink and bumping would see slope 1/2 where backprop (rightly) takes the subgradient 0
    layers = [{"units": 5, "activation": activation}, {"units": n_out, "activation": "linear"}]
    doc = {"model": {"layers": layers, "init": {"scheme": "xavier", "seed": 3, "b1": [0.1] * 5}},
           "data": data, "loss": loss, "optimizer": {"name": "adam", "lr": 0.05}, "steps": 3, "batch_size": 5}
    job_id = store.create_job("grid", doc)
    assert run_job(store, job_id).status == "succeeded"
    for step in (0, 2):
        report = verify_step(store, job_id, step)
        assert report.max_abs_error < 1e-8 and report.kink_inputs == 0, report


def test_inputs_on_a_relu_kink_are_counted(store):
    # every spiral arm starts at the origin: with b1 = 0 those 3 points' 5 ReLU inputs are exactly 0
    doc = {"model": {"layers": [{"units": 5, "activation": "relu"}, {"units": 3, "activation": "linear"}]},
           "data": {"dataset": "spirals", "n": 12}, "loss": "cross_entropy",
           "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 1}
    job_id = store.create_job("kink", doc)
    run_job(store, job_id)
    report = verify_step(store, job_id, 0)
    assert report.kink_inputs == 3 * 5
