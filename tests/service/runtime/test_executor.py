"""The executors behind the API: submit/cancel/status bookkeeping, cancellation of a running job,
shutdown leaving jobs resumable, and worker processes that die (SIGKILL) without stranding their job."""

from __future__ import annotations

import os
import signal
import time

import pytest

from service.jobs import presets
from service.runtime.executor import ProcessExecutor, ThreadExecutor
from service.runtime.runner import run_job
from service.store import Store


def seed(steps: int) -> dict:
    doc = presets.get("seed")
    doc["steps"] = steps
    return doc


def wait_until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)
    return value


@pytest.fixture
def store(tmp_path):
    s = Store(url=f"sqlite:///{tmp_path / 'gradbook.db'}")
    yield s
    s.close()


def status(store, job_id):
    return store.get_job(job_id)["status"]


def running_with_steps(store, job_id, steps=3):
    job = store.get_job(job_id)
    return job["status"] == "running" and job["steps_done"] >= steps


# --- bookkeeping (threads) ----------------------------------------------------------------------------------


def test_one_worker_takes_jobs_in_order_and_ignores_duplicates(store):
    ex = ThreadExecutor(store, workers=1)
    ex.start()
    try:
        long_job = store.create_job("long", seed(1_000_000))
        short = [store.create_job(f"short{i}", seed(3)) for i in range(2)]
        assert ex.submit(long_job)
        wait_until(lambda: running_with_steps(store, long_job))
        for job in short:
            assert ex.submit(job)
        assert not ex.submit(short[0]) and not ex.submit(long_job)  # already here
        assert ex.status(long_job) == "running" and ex.status(short[0]) == "pending"
        assert ex.info()["pending"] == short

        # a pending job that is cancelled never starts
        store.transition(short[0], "cancelled", reason="test")
        assert ex.cancel(short[0]) and ex.status(short[0]) is None
        store.transition(long_job, "cancelled", reason="test")
        assert ex.cancel(long_job, timeout=10.0)
        assert ex.wait_idle(30.0)
        assert status(store, short[1]) == "succeeded"
        assert status(store, short[0]) == "cancelled" and store.step(short[0], 0) is None
        assert ex.status(short[1]) is None
    finally:
        ex.shutdown()


def test_a_job_cancelled_before_its_turn_is_skipped_by_the_worker(store):
    ex = ThreadExecutor(store, workers=1)
    ex.start()
    try:
        job = store.create_job("gone", seed(3))
        store.transition(job, "cancelled", reason="test")
        ex.submit(job)  # the worker's first state change fails: the job is left as it is
        assert ex.wait_idle(30.0)
        assert status(store, job) == "cancelled" and store.step(job, 0) is None
    finally:
        ex.shutdown()


def test_shutdown_interrupts_running_jobs_and_they_resume_exactly(store, monkeypatch):
    monkeypatch.setenv("GRADBOOK_FLUSH_SECONDS", "0.02")  # progress visible every few steps
    doc = seed(600) | {"checkpoint_every": 7}
    straight = store.create_job("straight", doc)
    run_job(store, straight)
    ex = ThreadExecutor(store, workers=1)
    ex.start()
    job = store.create_job("cut", doc)
    ex.submit(job)
    wait_until(lambda: running_with_steps(store, job, 20))
    ex.shutdown()
    cut = store.get_job(job)
    assert cut["status"] == "interrupted" and cut["steps_done"] < 600
    assert "interrupted" in store.job_events(job)[-1]["reason"]
    assert run_job(store, job, resume=True).status == "succeeded"
    assert list(store.export_rows(job)) == list(store.export_rows(straight))


# --- worker processes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def process_pool(tmp_path_factory):
    s = Store(url=f"sqlite:///{tmp_path_factory.mktemp('pool') / 'gradbook.db'}")
    ex = ProcessExecutor(s, workers=2)
    ex.start()
    assert ex.wait_ready(60.0)
    yield s, ex
    ex.shutdown()
    s.close()


def owner_pid(store, job_id) -> int:
    return int(store.get_job(job_id)["owner"].partition("@")[0])


def test_jobs_run_in_worker_processes(process_pool):
    store, ex = process_pool
    jobs = [store.create_job(f"p{i}", seed(10)) for i in range(3)]
    for job in jobs:
        ex.submit(job)
    assert ex.wait_idle(60.0)
    for job in jobs:
        assert status(store, job) == "succeeded"
        assert owner_pid(store, job) != os.getpid()
        assert [r["step"] for r in store.export_rows(job)] == list(range(10))


def test_cancel_stops_a_running_worker_job(process_pool):
    store, ex = process_pool
    job = store.create_job("long", seed(1_000_000))
    ex.submit(job)
    wait_until(lambda: running_with_steps(store, job))
    store.transition(job, "cancelled", reason="test")
    assert ex.cancel(job, timeout=10.0)  # the worker let go of it
    done = store.get_job(job)["steps_done"]
    assert [r["step"] for r in store.export_rows(job)] == list(range(done))
    assert status(store, job) == "cancelled"


def test_a_killed_worker_is_replaced_and_its_job_interrupted(process_pool):
    store, ex = process_pool
    job = store.create_job("victim", seed(1_000_000))
    ex.submit(job)
    wait_until(lambda: running_with_steps(store, job))
    pid = owner_pid(store, job)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: status(store, job) == "interrupted")
    assert "gone" in store.job_events(job)[-1]["reason"]
    assert wait_until(lambda: ex.info()["ready"] == 2)
    after = store.create_job("after", seed(5))
    ex.submit(after)
    assert ex.wait_idle(60.0) and status(store, after) == "succeeded"
    # the history the dead worker flushed is intact and contiguous
    steps = [r["step"] for r in store.export_rows(job)]
    assert steps == list(range(len(steps)))
