"""A job's history written by a writer process (service.store.writer_process and writer_child): the
same book as one written in the training loop, a cancellation still seen, nothing lost when the
process dies, and no write for a job that left the writer's owner."""

import faulthandler
import os
import signal
import time
from multiprocessing.connection import Connection

import numpy as np
import pytest

import service.store.writer_process as writer_process
from service.domain import Checkpoint
from service.jobs import presets
from service.jobs.plan import make_plan
from service.jobs.spec import parse_spec
from service.jobs.trainer import Trainer
from service.runtime.runner import run_job
from service.store import Store, write
from service.store.write import HistoryWriter
from tests.service.jobs.test_trainer import same

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
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "40")  # many batches, the same in both runs
    monkeypatch.setenv("GRADBOOK_FLUSH_SECONDS", "1e9")
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
    # contiguous, up to the step the cancel names; what the loop made after it is not recorded
    done = store.get_job(job)["steps_done"]
    assert steps == list(range(done)) and store.job_events(job)[-1]["steps_done"] == done
    assert outcome.steps_done >= done


@pytest.mark.parametrize("when", ["while idle", "busy"])
def test_a_writer_process_that_dies_loses_nothing(store, writes, monkeypatch, when):
    monkeypatch.setenv("GRADBOOK_FLUSH_ROWS", "30")
    monkeypatch.setenv("GRADBOOK_FLUSH_SECONDS", "1e9")
    monkeypatch.setenv("GRADBOOK_WRITER_PROCESS_AFTER", "inf")
    reference = store.create_job("reference", spec())
    assert run_job(store, reference).status == "succeeded"

    job = store.create_job("victim", spec())
    store.transition(job, "running")
    killed = []

    def kill(writer, flushes):
        if flushes == 6:
            process = writer.writer_process()
            if when == "while idle":  # once it replied; "busy": just handed a batch, which it may have
                assert process.answered(10)  # written or not when it dies
            os.kill(process.pid, signal.SIGKILL)
            killed.append(process.pid)

    outcome, _ = run_with(store, job, kill)
    assert killed and outcome.status == "succeeded" and outcome.steps_done == STEPS
    store.transition(job, "succeeded")
    # the training process wrote what the writer process had not, once; bit for bit, the buckets
    # too, though the lost batch went in with the next one
    assert same(book(store, job), book(store, reference))


def test_a_writer_writes_nothing_for_a_job_that_left_its_owner(store):
    job = store.create_job("taken", {})
    store.transition(job, "running", owner="1@here")
    stats = np.zeros((1, 6))

    def write(owner, step):
        last = None if step == 0 else step - 1
        writer = HistoryWriter(store.engine, store.url, job, ["w"], last, owner=owner)
        writer.add_step(step, 1.0, 0.1, 1.0, stats)
        return writer.flush()

    assert write("1@here", 0) == "running"
    assert write("2@elsewhere", 1) == "running"  # not the owner: rolled back
    store.transition(job, "interrupted", reason="its process is gone")
    assert write("1@here", 1) == "interrupted"  # its owner, but no longer running
    assert [r["step"] for r in store.export_rows(job)] == [0]
    assert store.get_job(job)["steps_done"] == 1


class DiesBeforeReplying:
    """Stands in for a WriterProcess whose child commits the batch it is given (or not: ``commits``)
    and dies before it can reply: the parent learns it at its next call, with the batch handed back
    as the real proxy hands it back (WriterProcessError)."""

    pid = 0
    alive = False

    def __init__(self, engine, commits: bool, url, job_id, param_names, owner):
        self.child = HistoryWriter(engine, url, job_id, param_names, None, owner=owner) if commits else None
        self.in_flight = None

    def ready(self) -> bool:
        return True

    def write(self, batch, checkpoint):
        self.finish()
        if self.child is not None:
            self.child.write(batch, checkpoint)
        self.in_flight = (batch, checkpoint)
        return None

    def finish(self):
        if self.in_flight is not None:
            raise writer_process.WriterProcessError("the writer process ended (-9)", *self.in_flight)

    def kill(self) -> None:
        pass


@pytest.mark.parametrize("batch", ["steps", "arrays only"])
@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not committed"])
def test_a_batch_a_dead_writer_process_was_given_is_written_exactly_once(store, monkeypatch, batch,
                                                                         committed):
    """Whether it committed or not, the batch a dying writer process had is stored once: the
    training process checks the database, writes it if it is missing, and never twice (a second
    insert of the same steps or arrays would fail on their primary keys)."""
    monkeypatch.setattr(write, "WriterProcess",
                        lambda *args: DiesBeforeReplying(store.engine, committed, *args))
    job = store.create_job("j", {})
    writer = store.writer(job, ["w"], background_after=1e-9)
    if batch == "steps":
        add_steps(writer, range(3))
    writer.add_snapshot(2, {"w": np.ones(2)}, {"w": np.zeros(2)})
    assert writer.flush() is None  # handed to the writer process
    add_steps(writer, [3])
    assert writer.flush() == "queued"  # it is found dead: written here, from now on
    assert writer.writer_process() is None and writer.close() is None
    steps = [0, 1, 2, 3] if batch == "steps" else [3]
    assert [r["step"] for r in store.export_rows(job)] == steps
    assert store.get_job(job)["steps_done"] == 4
    assert store.snapshot_steps(job) == [2]
    np.testing.assert_array_equal(store.step(job, 2)["gradients"]["w"], np.ones(2))


def started(store, job):
    """A background writer for ``job`` whose writer process is ready."""
    writer = store.writer(job, ["w"], background_after=1e-9)
    deadline = time.monotonic() + 60
    while writer.writer_process() is None:
        assert time.monotonic() < deadline, "the writer process did not start within 60 s"
        time.sleep(0.01)
    return writer


def add_steps(writer, steps):
    for step in steps:
        writer.add_step(step, 1.0, 0.1, 1.0, np.zeros((1, 6)))


def interrupt_once(monkeypatch, name, before=None):
    """Make the next ``<name>`` on a connection to a writer process raise KeyboardInterrupt (as
    SIGINT/SIGTERM does in the CLI), after ``before(connection)``."""
    original = getattr(Connection, name)

    def interrupted(conn, *args):
        monkeypatch.setattr(Connection, name, original)
        if before is not None:
            before(conn)
        raise KeyboardInterrupt

    monkeypatch.setattr(Connection, name, interrupted)


@pytest.fixture
def no_hang():
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails the run instead of stalling it
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("where", ["waiting for a reply", "in the middle of a send", "in close"])
def test_an_interruption_while_talking_to_the_writer_process_loses_and_repeats_nothing(
        store, monkeypatch, no_hang, where):
    job = store.create_job("interrupted", {})
    store.transition(job, "running")
    writer = started(store, job)
    process = writer.writer_process()
    add_steps(writer, range(0, 10))
    assert writer.flush() is None  # in flight
    add_steps(writer, range(10, 20))
    if where == "waiting for a reply":
        interrupt_once(monkeypatch, "recv")
    elif where == "in the middle of a send":  # a header promising bytes that never come
        interrupt_once(monkeypatch, "send", lambda c: os.write(c.fileno(), b"\x00\x01\x00\x00"))
    if where != "in close":
        with pytest.raises(KeyboardInterrupt):
            writer.flush()
        assert not process.alive  # abandoned: killed, its stream no longer trusted
        assert writer.pending == 10  # the batch being handed over is still buffered
        add_steps(writer, range(20, 30))
        assert writer.flush() == "running"  # written here, with what the process may not have written
        assert writer.writer_process() is None
        assert writer.close() is None  # no writer process left to wait for
    else:
        writer.flush()
        interrupt_once(monkeypatch, "recv")
        with pytest.raises(KeyboardInterrupt):
            writer.close()  # interrupted while waiting for the last write: written here, then raised
    last = 30 if where != "in close" else 20
    assert [r["step"] for r in store.export_rows(job)] == list(range(last))
    assert store.get_job(job)["steps_done"] == last


def test_close_returns_the_status_of_the_last_write(store):
    job = store.create_job("cancelled at the end", {})
    store.transition(job, "running")
    writer = started(store, job)
    add_steps(writer, range(5))
    writer.flush()
    store.transition(job, "cancelled", reason="by a user")  # while the last write is on its way
    assert writer.close() == "cancelled"
    # the write landed before the cancel or was rolled back after it: either way the history ends at
    # the step the cancel names
    done = store.get_job(job)["steps_done"]
    assert done in (0, 5) and store.job_events(job)[-1]["steps_done"] == done
    assert [r["step"] for r in store.export_rows(job)] == list(range(done))


def test_a_bad_checkpoint_is_refused_at_its_own_flush(store):
    job = store.create_job("bad checkpoint", {})
    store.transition(job, "running")
    writer = started(store, job)
    add_steps(writer, range(3))
    with pytest.raises(ValueError, match="checkpoint.meta"):
        writer.flush(Checkpoint(2, {}, {"loss": float("nan")}))  # not one flush later, from the process
    assert writer.pending == 3
    writer.flush()
    assert writer.close() == "running"
    assert [r["step"] for r in store.export_rows(job)] == [0, 1, 2]
