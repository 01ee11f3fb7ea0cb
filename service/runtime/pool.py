"""The executor interface, the worker pool both executors are, and the pool on threads.

    executor.submit(job_id, resume=False)  # run a job the store has as queued; False if already here
    executor.cancel(job_id)                # stop it if it runs or waits here; True once it is stopped
    executor.status(job_id)                # "pending", "running", or None when it is not here

The store is the source of truth for job states: callers change a job's state there (queued,
cancelled, ...) and use the executor only to start and stop the work, so another backend (a
distributed queue) can replace these pools without touching the API.

A pool keeps pending jobs in FIFO order and gives each worker one job at a time. Cancellation is a
per-worker flag that the training loop polls every step (the trainer also sees a cancelled status
at its next flush, so a job stops even if a flag were missed). ``ThreadExecutor`` runs the workers on
threads of this process (tests, or a machine without fork/spawn); ``ProcessExecutor``
(service.runtime.processes) runs them in processes of their own.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable

from service.runtime.datasets import dataset_resolver
from service.runtime.runner import run_job
from service.store.errors import JobNotFound, JobStateError, StoreError

log = logging.getLogger("gradbook.executor")


class Executor(ABC):
    """Start and stop jobs; the store keeps their states."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def submit(self, job_id: int, resume: bool = False) -> bool:
        """Queue the job (the store must have it as queued). False if it is already pending or
        running here."""

    @abstractmethod
    def cancel(self, job_id: int, timeout: float = 0.0) -> bool:
        """Stop the job if it is pending or running here; wait up to ``timeout`` seconds for a running
        job to stop. True when it is no longer here."""

    @abstractmethod
    def status(self, job_id: int) -> str | None:
        """"pending", "running", or None."""

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; running jobs are marked interrupted (resumable)."""

    @abstractmethod
    def info(self) -> dict:
        """Workers, ready workers, pending and running job ids (for /health)."""


# --- what a worker does ---------------------------------------------------------------------------------


class ServerShutdown(KeyboardInterrupt):
    """Raised inside a job's training loop when the server shuts down: the trainer treats it as
    Ctrl-C, so the job ends interrupted (resumable), never cancelled."""


def stop_check(flags, index: int, job_id: int) -> Callable[[], bool]:
    """The trainer's should_stop for a job on worker ``index``: True once the job is cancelled (the
    flag holds its id), ServerShutdown when the server stops (the flag holds minus its id)."""

    def should_stop() -> bool:
        flag = flags[index]
        if flag == -job_id:
            raise ServerShutdown
        return flag == job_id

    return should_stop


def execute_job(store, job_id: int, resume: bool, should_stop: Callable[[], bool]) -> str:
    """Run one job to its end with the trainer; return the status it ended in.

    A job that was cancelled or deleted before the worker got to it is skipped (the trainer's
    first state change fails); an unexpected error marks the job failed, never leaves it running.
    """
    try:
        run_job(store, job_id, resume=resume, should_stop=should_stop,
                resolve_dataset=dataset_resolver(store))
    except ServerShutdown:
        pass  # the trainer flushed and marked the job interrupted
    except (JobStateError, JobNotFound, KeyError):
        pass  # changed from outside meanwhile (cancelled, deleted): its state is already right
    except Exception as e:  # noqa: BLE001 - a worker must survive any job
        log.exception("job %s failed in the worker", job_id)
        with contextlib.suppress(StoreError):
            store.transition(job_id, "failed", reason="worker error", error=f"{type(e).__name__}: {e}")
    job = store.get_job(job_id)
    return "deleted" if job is None else job["status"]


def work(store, index: int, flags, receive: Callable[[], tuple | None],
         report: Callable[[int, str], None]) -> None:
    """A worker's loop, on a thread or in a process: run each ``(job_id, resume)`` that ``receive()``
    gives until it gives None, and ``report(job_id, status)`` after each."""
    while (message := receive()) is not None:
        job_id, resume = message
        report(job_id, execute_job(store, job_id, resume, stop_check(flags, index, job_id)))


# --- the pool -------------------------------------------------------------------------------------------


class Slot:
    """One worker of a pool and the job it runs."""

    def __init__(self, index: int):
        self.index = index
        self.job: int | None = None
        self.ready = False
        self.broken = False  # its channel failed: skipped until the worker is replaced
        self.handle = None  # the process or thread
        self.conn = None    # the parent's end of the worker's pipe (processes)


class PoolExecutor(Executor):
    """Pending jobs in FIFO order, one job per worker, dispatch to idle workers, waiting for stops.

    A pool provides ``_launch`` (start slot's worker), ``_send`` (give it a message) and
    ``_stop_workers``, and sets ``self._flags`` (worker index -> id of the job told to stop)."""

    kind: str
    _flags: list | object

    def __init__(self, store, workers: int):
        if workers < 1:
            raise ValueError(f"workers: expected at least 1, got {workers}")
        self.store = store
        self.workers = workers
        self._slots = [Slot(i) for i in range(workers)]
        self._pending: OrderedDict[int, bool] = OrderedDict()  # job id -> resume
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._started = False

    @abstractmethod
    def _launch(self, slot: Slot) -> None: ...

    @abstractmethod
    def _send(self, slot: Slot, message: tuple) -> None: ...

    @abstractmethod
    def _stop_workers(self, timeout: float) -> None: ...

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self._launch_all()

    def _launch_all(self) -> None:
        for slot in self._slots:
            self._start_worker(slot)

    def _start_worker(self, slot: Slot) -> None:
        """Start ``slot``'s worker and hand it a pending job, retrying until it starts or the pool closes."""
        while True:
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._launch(slot)
                    self._dispatch()
                return
            except OSError:  # e.g. a killed forkserver; multiprocessing starts a new one next time
                log.exception("could not start worker %s; retrying", slot.index)
                time.sleep(1.0)

    def submit(self, job_id: int, resume: bool = False) -> bool:
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is shut down")
            if job_id in self._pending or any(s.job == job_id for s in self._slots):
                return False
            self._pending[job_id] = resume
            self._dispatch()
            return True

    def _dispatch(self) -> None:
        """Hand pending jobs to idle workers (lock held)."""
        for slot in self._slots:
            if not self._pending:
                return
            if slot.job is None and slot.handle is not None and not slot.broken:
                job_id, resume = self._pending.popitem(last=False)
                slot.job = job_id
                try:
                    self._flags[slot.index] = 0
                    self._send(slot, (job_id, resume))
                except OSError:  # the worker just died; the job waits for the next one
                    slot.job, slot.broken = None, True
                    self._pending[job_id] = resume
                    self._pending.move_to_end(job_id, last=False)

    def _finished(self, slot: Slot, job_id: int) -> None:
        with self._lock:
            if slot.job == job_id:
                slot.job = None
            self._changed.notify_all()
            if not self._closed:
                self._dispatch()

    def cancel(self, job_id: int, timeout: float = 0.0) -> bool:
        with self._lock:
            if self._pending.pop(job_id, None) is not None:
                return True
            slot = next((s for s in self._slots if s.job == job_id), None)
            if slot is None:
                return True
            self._flags[slot.index] = job_id
            return self._wait(lambda: slot.job != job_id, timeout)

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait (lock held) until ``done()`` or ``timeout`` seconds have passed; whether it is done."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.wait(left)
        return True

    def status(self, job_id: int) -> str | None:
        with self._lock:
            if job_id in self._pending:
                return "pending"
            if any(s.job == job_id for s in self._slots):
                return "running"
            return None

    def info(self) -> dict:
        with self._lock:
            return {
                "kind": self.kind,
                "workers": self.workers,
                "ready": sum(s.ready for s in self._slots),
                "running": sorted(s.job for s in self._slots if s.job is not None),
                "pending": list(self._pending),
            }

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until every worker has started (tests and benchmarks)."""
        with self._lock:
            return self._wait(lambda: all(s.ready for s in self._slots), timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is pending or running (tests)."""
        with self._lock:
            return self._wait(lambda: not self._pending and all(s.job is None for s in self._slots), timeout)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()  # they stay queued in the store; the next start picks them up
            running = [s.job for s in self._slots if s.job is not None]
            for slot in self._slots:
                if slot.job is not None:
                    # The worker's trainer stops as on Ctrl-C: it flushes and marks the job interrupted.
                    self._flags[slot.index] = -slot.job
        self._stop_workers(10.0 if wait else 1.0)
        for job_id in running:  # a worker that did not stop in time
            with contextlib.suppress(StoreError):
                if self.store.get_job(job_id)["status"] == "running":
                    self.store.transition(job_id, "interrupted", reason="server shut down")


class ThreadExecutor(PoolExecutor):
    """The pool on threads of this process (tests; no isolation from a crashing job)."""

    kind = "thread"

    def __init__(self, store, workers: int = 1):
        super().__init__(store, workers)
        self._flags = [0] * self.workers
        self._inboxes: list[queue.SimpleQueue | None] = [None] * self.workers

    def _launch(self, slot: Slot) -> None:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inboxes[slot.index] = inbox

        def report(job_id: int, _status: str) -> None:
            self._finished(slot, job_id)

        args = (self.store, slot.index, self._flags, inbox.get, report)
        slot.handle = threading.Thread(target=work, args=args, name=f"gradbook-worker-{slot.index}",
                                       daemon=True)
        slot.ready = True
        slot.handle.start()

    def _send(self, slot: Slot, message: tuple) -> None:
        self._inboxes[slot.index].put(message)

    def _stop_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for inbox in self._inboxes:
            if inbox is not None:
                inbox.put(None)
        for slot in self._slots:
            if slot.handle is not None:
                slot.handle.join(max(0.0, deadline - time.monotonic()))
                slot.ready = False
