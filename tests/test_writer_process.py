"""A job's history written by a writer process (service.writer_process): the same book as one
written in the training loop, a cancellation still seen, nothing lost when the process dies, and
no write for a job that left the writer's owner."""

import os
import signal
import time

import numpy as np
import pytest

import service.writer_process as writer_process
from service import presets
from service.spec import make_plan, parse_spec
from service.store import Store
from service.store_writer import HistoryWriter
from service.trainer import Trainer, run_job
from tests.test_trainer import same

STEPS = 1200


@pytest.fixture
def store(tmp_path):
    s = Store(url=f"sqlite:///{tmp_path / 'gradbook.db'}")
    yield s
    s.close()


@pytest.fixture
def writes(monkeypatch):
    """Counts the batches handed to writer processes."""
    count = {"batches": 0, "processes": 0}  # and each process is ready when it is made
    write, start = writer_process.WriterProcess.write, writer_process.WriterProcess.__init__

    def counted_write(self, *args):
        count["batches"] += 1
        return write(self, *args)

    def counted_start(self, *args):
        count["processes"] += 1
        start(self, *args)
        deadline = time.monotonic() + 60
        while not self.ready():  # it writes from the next flush on, however fast the job
            assert time.monotonic() < deadline, "the writer process did not start within 60 s"
            time.sleep(0.01)

    monkeypatch.setattr(writer_process.WriterProcess, "write", counted_write)
    monkeypatch.setattr(writer_process.WriterProcess, "__init__", counted_start)
    return count


def spec(steps: int = STEPS) -> dict:
    doc = presets.get("sine")  # 1-16-16-1 tanh, Adam, minibatches
    doc.update(steps=steps, batch_size=32, checkpoint_every=100, snapshot_every=10)
    return doc


def book(store, job_id) -> dict:
    """Everything stored about a job's run that a user can read back."""
    job = store.get_job(job_id)
    names = job["param_names"]
    return {
        "status": job["status"], "steps_done": job["steps_done"], "last_loss": job["last_loss"],
        "rows": list(store.export_rows(job_id)),
        "history": store.history(job_id, max_points=37),
        "gradients": [store.gradients(job_id, n, max_points=37) for n in names],
        "steps": [store.step(job_id, s) for s in (0, 10, 590, STEPS - 10)],
        "checkpoint": store.last_checkpoint(job_id).__dict__,
    }


def test_a_job_written_by_a_writer_process_keeps_the_same_book(store, writes, monkeypatch):
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "40")  # many batches
    monkeypatch.setenv("GRADBOOK_WRITER_PROCESS_AFTER", "inf")
    in_loop = store.create_job("in the loop", spec())
    assert run_job(store, in_loop).status == "succeeded"
    assert writes == {"batches": 0, "processes": 0}

    monkeypatch.setenv("GRADBOOK_WRITER_PROCESS_AFTER", "1e-9")  # from the first flush on
    background = store.create_job("writer process", spec())
    assert run_job(store, background).status == "succeeded"
    assert writes["processes"] == 1 and writes["batches"] >= STEPS // 40
    assert same(book(store, background), book(store, in_loop))


def test_a_short_job_starts_no_writer_process(store, writes):
    assert run_job(store, store.create_job("seed", presets.get("seed"))).status == "succeeded"
    assert writes["processes"] == 0


def test_an_in_memory_database_is_written_in_the_loop(writes):
    with Store(url="sqlite://") as memory:
        job = memory.create_job("j", {})
        writer = memory.writer(job, ["w"], background_after=1e-9)
        writer.add_step(0, 1.0, 0.1, 1.0, np.zeros((1, 6)))
        assert writer.flush() is not None and writer.pending == 0
        writer.close()
    assert writes["processes"] == 0  # another process could not open it


def run_with(store, job_id, on_flush) -> tuple:
    """Train ``job_id`` through a writer that goes to a writer process at once; ``on_flush(writer,
    flushes)`` after each flush."""
    trainer = Trainer(make_plan(parse_spec(store.get_job(job_id)["spec"])))
    writer = store.writer(job_id, trainer.names, background_after=1e-9)
    flushes = 0

    def flushed(done, loss):
        nonlocal flushes
        flushes += 1
        on_flush(writer, flushes)

    outcome = trainer.run(writer, 0, on_flush=flushed)
    writer.close()
    return outcome, flushes


def test_a_cancellation_is_seen_one_flush_late(store, writes, monkeypatch):
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "20")
    job = store.create_job("cancelled", spec())
    store.transition(job, "running")
    cancelled_at = []

    def cancel(writer, flushes):
        if flushes == 4:  # a user cancels from outside while the job runs
            store.transition(job, "cancelled", reason="by a user")
            cancelled_at.append(flushes)

    outcome, flushes = run_with(store, job, cancel)
    assert outcome.status == "cancelled"
    assert flushes <= cancelled_at[0] + 2  # the next write says so; the loop stops at the one after
    steps = [r["step"] for r in store.export_rows(job)]
    assert steps == list(range(outcome.steps_done))  # contiguous, every step it made is stored


@pytest.mark.parametrize("when", ["while idle", "busy"])
def test_a_writer_process_that_dies_loses_nothing(store, writes, monkeypatch, when):
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "30")
    monkeypatch.setenv("GRADBOOK_WRITER_PROCESS_AFTER", "inf")
    reference = store.create_job("reference", spec())
    assert run_job(store, reference).status == "succeeded"

    job = store.create_job("victim", spec())
    store.transition(job, "running")
    killed = []

    def kill(writer, flushes):
        if flushes == 6:
            process = writer._process
            if when == "while idle":  # once it replied; "busy": just handed a batch, which it may have
                process._conn.poll(10)  # written or not when it dies
            os.kill(process.pid, signal.SIGKILL)
            killed.append(process.pid)

    outcome, _ = run_with(store, job, kill)
    assert killed and outcome.status == "succeeded" and outcome.steps_done == STEPS
    store.transition(job, "succeeded")
    a, b = book(store, job), book(store, reference)
    assert same(a, b)  # the training process wrote what the writer process had not, once


def test_a_writer_writes_nothing_for_a_job_that_left_its_owner(store):
    job = store.create_job("taken", {})
    store.transition(job, "running", owner="1@here")
    stats = np.zeros((1, 6))

    def write(owner, step):
        writer = HistoryWriter(store, job, ["w"], None if step == 0 else step - 1, owner=owner)
        writer.add_step(step, 1.0, 0.1, 1.0, stats)
        return writer.flush()

    assert write("1@here", 0) == "running"
    assert write("2@elsewhere", 1) == "running"  # not the owner: rolled back
    store.transition(job, "interrupted", reason="its process is gone")
    assert write("1@here", 1) == "interrupted"  # its owner, but no longer running
    assert [r["step"] for r in store.export_rows(job)] == [0]
    assert store.get_job(job)["steps_done"] == 1


def test_a_batch_the_process_wrote_before_it_died_is_not_written_again(store):
    job = store.create_job("j", {})
    writer = store.writer(job, ["w"])
    for step in range(3):
        writer.add_step(step, 1.0, 0.1, 1.0, np.zeros((1, 6)))
    writer.add_snapshot(2, {"w": np.ones(2)}, {"w": np.zeros(2)})
    written = writer._take()
    writer.write(written, None)  # as the writer process did, before it died without replying
    writer.add_snapshot(2, {"w2": np.ones(2)}, {})
    arrays_written = writer._take()
    writer.write(arrays_written, None)
    writer.add_step(3, 1.0, 0.1, 1.0, np.zeros((1, 6)))
    not_written = writer._take()

    for batch, in_db in ((written, True), (arrays_written, True), (not_written, False)):
        lost, _ = writer._take_back(writer_process.WriterProcessError("died", batch, None))
        assert (lost is None) == in_db
    writer.write(not_written, None)
    assert [r["step"] for r in store.export_rows(job)] == [0, 1, 2, 3]
