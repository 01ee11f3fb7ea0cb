"""A job's snapshots stay within its budget however long it runs, and every step without one is
replayed bit for bit: what a snapshot would have held, compared with a run that kept them all."""

import sqlite3

import numpy as np
import pytest

from service.domain import SnapshotBudget
from service.jobs import presets
from service.jobs.replay import step_record
from service.runtime.runner import run_job
from service.store import Store

# moons: a 2-16-16-1 network (337 parameters) with Adam (2 state arrays), float64: a kept step may
# hold 337 x 8 bytes x (parameters, gradients, and a checkpoint's parameters and 2 state arrays)
BYTES_PER_KEPT_STEP = 337 * 8 * 5


def test_the_spacing_doubles_once_the_budget_is_full():
    budget = SnapshotBudget.of(every=1, budget_bytes=20 * 1000, bytes_per_snapshot=1000)
    assert budget.capacity == 20
    assert [budget.spacing(n) for n in (1, 20, 21, 40, 41, 80, 81, 600)] == [1, 1, 2, 2, 4, 4, 8, 32]
    assert [s for s in range(100) if budget.keeps(s)] == list(range(20)) + list(range(20, 40, 2)) \
        + list(range(40, 80, 4)) + list(range(80, 100, 8))
    big = SnapshotBudget.of(every=500, budget_bytes=10, bytes_per_snapshot=1000)  # room for one at least
    assert big.capacity == 1 and big.spacing(1) == 500 and big.spacing(501) == 1000


@pytest.fixture
def store(tmp_path):
    s = Store(url=f"sqlite:///{tmp_path / 'gradbook.db'}")
    yield s
    s.close()


def moons(store, **changes) -> int:
    doc = presets.get("moons")
    doc.pop("epochs")
    doc.update(steps=600, checkpoint_every=50, **changes)
    job_id = store.create_job(doc["name"], doc)
    assert run_job(store, job_id).status == "succeeded"
    return job_id


def test_thinned_steps_replay_bit_for_bit(store, tmp_path):
    everything = moons(store)  # the default budget holds every one of its 600 steps
    budget_mb = 20 * BYTES_PER_KEPT_STEP / 2**20
    thinned = moons(store, snapshot_budget_mb=budget_mb)

    assert store.snapshot_steps(everything, limit=10_000) == list(range(600))
    # room for 20: the spacing doubled to 32 (600 steps in 19 blocks)
    assert store.snapshot_steps(thinned, limit=10_000) == list(range(0, 600, 32))
    db = sqlite3.connect(tmp_path / "gradbook.db")
    stored = db.execute("SELECT SUM(LENGTH(data)) FROM step_arrays WHERE job_id = ?", (thinned,)).fetchone()
    assert stored[0] <= budget_mb * 2**20
    checkpoints = [s for (s,) in db.execute("SELECT step FROM checkpoints WHERE job_id = ? ORDER BY step",
                                            (thinned,))]
    assert checkpoints == list(range(50, 601, 50))  # every one is the first of its 32-step block

    for step in (1, 31, 33, 49, 50, 99, 311, 575, 599):
        replayed = step_record(store, thinned, step)
        kept = store.step(everything, step)
        assert replayed["replayed"]["matches_record"]
        assert replayed["replayed"]["from_step"] == step // 50 * 50
        assert replayed["replayed"]["steps"] == step % 50
        for key in ("params", "gradients"):
            for name, value in kept[key].items():
                assert value.dtype == replayed[key][name].dtype
                assert np.array_equal(value, replayed[key][name]), (step, key, name)
    assert step_record(store, thinned, 64)["replayed"] is None


def test_storage_stays_within_the_budget_however_long_the_job_runs(store, tmp_path):
    budget_mb = 10 * BYTES_PER_KEPT_STEP / 2**20
    sizes = []
    db = sqlite3.connect(tmp_path / "gradbook.db")
    for steps in (300, 3000):
        doc = presets.get("moons")
        doc.pop("epochs")
        doc.update(steps=steps, snapshot_budget_mb=budget_mb)
        job_id = store.create_job(doc["name"], doc)
        assert run_job(store, job_id).status == "succeeded"
        sizes.append(db.execute("SELECT SUM(LENGTH(data)) FROM step_arrays WHERE job_id = ?",
                                (job_id,)).fetchone()[0])
        snapshots = store.snapshot_steps(job_id, limit=10_000)
        assert len(snapshots) <= 10 and snapshots[0] == 0
        assert len(set(np.diff(snapshots))) == 1  # evenly spaced
    assert max(sizes) <= budget_mb * 2**20
