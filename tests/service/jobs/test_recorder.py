"""What a step records, through the recorder's public face: statistics recomputed per parameter with
NumPy, every step handed to a writer with its snapshots at the plan's cadence, gradients read where
the optimizer keeps them, and a recorded run updating the parameters exactly as an unrecorded one."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autodiff as ad
from service.domain import STAT_SERIES
from service.jobs import presets
from service.jobs.plan import make_plan
from service.jobs.recorder import GradStats
from service.jobs.spec import parse_spec
from service.jobs.trainer import Trainer


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40) | st.integers(8_000, 20_000), min_size=1, max_size=6),
       st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.05, 0.3]))
def test_grad_stats_equal_per_parameter_numpy(sizes, seed, bad_fraction):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(sum(sizes)) * rng.choice([1e-3, 1.0, 1e3])
    bad = rng.random(g.size) < bad_fraction
    g[bad] = rng.choice([np.nan, np.inf, -np.inf], bad.sum())
    out, total = GradStats(sizes)(g)
    assert out.shape == (len(sizes), len(STAT_SERIES)) == (len(sizes), 6)
    parts = np.split(g, np.cumsum(sizes)[:-1])
    for row, part in zip(out, parts, strict=True):
        with np.errstate(invalid="ignore", over="ignore"):
            expected = [np.linalg.norm(part), part.mean(), part.std(), part.min(), part.max(),
                        np.count_nonzero(~np.isfinite(part))]
            np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    finite = np.isfinite(g).all()
    assert (total == pytest.approx(np.linalg.norm(g), rel=1e-12)) if finite else not math.isfinite(total)


class ListWriter:
    """A writer that keeps what it is handed, as copies (the recorder hands views)."""

    def __init__(self):
        self.steps, self.snapshots = [], {}

    pending = 0
    empty = True

    def add_step(self, step, loss, lr, grad_norm, stats, val_loss=None, val_accuracy=None):
        self.steps.append({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                           "stats": np.array(stats), "val_loss": val_loss, "val_accuracy": val_accuracy})

    def add_snapshot(self, step, gradients, params):
        self.snapshots[step] = ({n: np.array(g) for n, g in gradients.items()},
                                {n: np.array(p) for n, p in params.items()})

    def flush(self, checkpoint=None):
        return None


def moons(**changes):
    doc = presets.get("moons")
    doc.pop("epochs")
    doc.update(steps=12, **changes)
    return doc


def test_every_step_is_handed_to_the_writer_with_snapshots_at_the_plan_cadence():
    doc = moons(snapshot_every=5, validation={"fraction": 0.2, "every": 4},
                optimizer={"name": "adam", "lr": 0.01, "schedule": {"name": "step", "step_size": 3}})
    trainer = Trainer(make_plan(parse_spec(doc)))
    writer = ListWriter()
    outcome = trainer.run(writer)
    assert outcome.status == "succeeded" and outcome.steps_done == 12
    assert [r["step"] for r in writer.steps] == list(range(12))
    assert sorted(writer.snapshots) == [0, 5, 10]
    assert [r["val_loss"] is not None for r in writer.steps] == [s % 4 == 0 for s in range(12)]
    assert [r["lr"] for r in writer.steps] == [0.01 * 0.1 ** (s // 3) for s in range(12)]
    for step, (grads, params) in writer.snapshots.items():
        row = writer.steps[step]
        assert list(grads) == list(params) == trainer.names
        flat = np.concatenate([g.ravel() for g in grads.values()])
        assert row["grad_norm"] == pytest.approx(np.linalg.norm(flat), rel=1e-12)
        expected, norm = GradStats([g.size for g in grads.values()])(flat)
        assert np.array_equal(row["stats"], expected) and row["grad_norm"] == norm
        at_snapshot = {n: ad.Tensor(p) for n, p in params.items()}
        assert row["loss"] == float(trainer.loss(*trainer.batch(step), params=at_snapshot).data)


def test_recording_reads_the_optimizer_buffer_and_leaves_the_updates_as_they_are():
    doc = moons()
    recorded, unrecorded = (Trainer(make_plan(parse_spec(doc))) for _ in range(2))
    assert recorded.run(ListWriter()).status == unrecorded.run(None).status == "succeeded"
    for name in recorded.names:  # the recorder's norm spared the optimizer its own, nothing else
        assert recorded.params[name].data.tobytes() == unrecorded.params[name].data.tobytes()
    [buffer] = recorded.optimizer.grad_buffers
    assert recorded.recorder.flat_gradients() is buffer  # read in place, not copied
