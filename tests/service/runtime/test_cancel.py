"""A cancel names one step: the transition that records it, the job's steps_done, the stored history
and the answer all agree, whether the job's history is written in its training loop or by its writer
process, and however many steps the loop computed after the cancel before it noticed."""

from __future__ import annotations

import threading
import time

import pytest

from service.jobs import presets
from service.runtime.runner import run_job
from service.store import Store

LONG = 10_000_000  # the job runs until the test cancels it


def long_spec() -> dict:
    doc = presets.get("sine")
    doc.update(name="cancelled", steps=LONG, batch_size=32)
    return doc


def wait_for(check, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited 300 s for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("writer_process_after", ["inf", "1e-9"])
def test_cancel_from_outside_names_the_step_the_history_ends_at(tmp_path, monkeypatch, writer_process_after):
    monkeypatch.setenv("GRADBOOK_MAX_STEPS", str(LONG))
    monkeypatch.setenv("GRADBOOK_FLUSH_SECONDS", "0.05")
    monkeypatch.setenv("GRADBOOK_WRITER_PROCESS_AFTER", writer_process_after)
    store = Store(url=f"sqlite:///{tmp_path / 'cancel.db'}")
    try:
        job_id = store.create_job("cancelled", long_spec(), total_steps=LONG)
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(o=run_job(store, job_id)))
        runner.start()
        try:
            # several flushes in, as a user cancelling a job they watch (gradbook cancel, POST /cancel)
            wait_for(lambda: store.get_job(job_id)["steps_done"] >= 200, "200 steps")
            store.transition(job_id, "cancelled", reason="cancelled by request")
        finally:
            runner.join(timeout=300)
        assert not runner.is_alive()

        job = store.get_job(job_id)
        cancelled = [e for e in store.job_events(job_id) if e["to_status"] == "cancelled"]
        assert job["status"] == "cancelled" and outcome["o"].status == "cancelled"
        assert len(cancelled) == 1 and cancelled[0]["steps_done"] == job["steps_done"]
        steps = [r["step"] for r in store.export_rows(job_id)]
        assert steps == list(range(job["steps_done"]))  # nothing recorded after the cancel's step
    finally:
        store.close()
