"""Where jobs run: a small executor interface and two pools behind it.

    executor.submit(job_id, resume=False)  # run a job the store has as queued; False if already here
    executor.cancel(job_id)                # stop it if it runs or waits here; True once it is stopped
    executor.status(job_id)                # "pending", "running", or None when it is not here

The store is the source of truth for job states: callers change a job's state there (queued,
cancelled, ...) and use the executor only to start and stop the work, so another backend (a
distributed queue) can replace these pools without touching the API.

``ProcessExecutor`` runs one job per worker process (default: one per core). Each worker gets its
jobs over its own pipe, so the parent always knows which worker runs which job; cancellation is a
slot in shared memory that the training loop polls every step (the trainer also sees a cancelled
status at its next flush, so a job stops even if a flag were missed). Workers are forked from a
forkserver that has the training code imported, so a new worker is ready in milliseconds. Workers
die with the server - they watch a pipe only the server holds open - so after a SIGKILL of the
server no worker keeps a job "running" and the next start marks it interrupted. A worker that dies
is replaced; its job is marked interrupted (running) or queued again (not yet started). A job that
runs longer than GRADBOOK_WRITER_PROCESS_AFTER has its history written by a process of its own
(service.store.writer_process), a child of the worker that ends with it.

``ThreadExecutor`` runs jobs on threads of this process (tests, or a machine without fork/spawn).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import wait as wait_for

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


# --- what a worker does with one job ----------------------------------------------------------------------


def execute_job(store, job_id: int, resume: bool, should_stop: Callable[[], bool]) -> str:
    """Run one job to its end with the trainer; return the status it ended in.

    A job that was cancelled or deleted before the worker got to it is skipped (the trainer's
    first state change fails); an unexpected error marks the job failed, never leaves it running.
    """
    from service.runtime.datasets import dataset_resolver
    from service.runtime.runner import run_job
    from service.store.errors import JobNotFound, JobStateError, StoreError

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


# --- the bookkeeping both pools share ----------------------------------------------------------------------


class _Slot:
    def __init__(self, index: int):
        self.index = index
        self.job: int | None = None
        self.ready = False
        self.broken = False  # its pipe failed: skipped until the monitor replaces it
        self.handle = None  # the process or thread
        self.conn = None    # the parent's end of the worker's pipe (processes)


class _PoolExecutor(Executor):
    """Pending jobs in FIFO order, one job per slot, dispatch to idle slots, waiting for stops."""

    def __init__(self, store, workers: int):
        if workers < 1:
            raise ValueError(f"workers: expected at least 1, got {workers}")
        self.store = store
        self.workers = workers
        self._slots = [_Slot(i) for i in range(workers)]
        self._pending: OrderedDict[int, bool] = OrderedDict()  # job id -> resume
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._started = False

    # transport, per pool
    @abstractmethod
    def _launch(self, slot: _Slot) -> None: ...

    @abstractmethod
    def _deliver(self, slot: _Slot, job_id: int, resume: bool) -> None: ...

    @abstractmethod
    def _flag(self, slot: _Slot, job_id: int) -> None: ...

    @abstractmethod
    def _stop_workers(self, timeout: float) -> None: ...

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            for slot in self._slots:
                self._launch(slot)

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
        """Hand pending jobs to idle slots (lock held)."""
        for slot in self._slots:
            if not self._pending:
                return
            if slot.job is None and slot.handle is not None and not slot.broken:
                job_id, resume = self._pending.popitem(last=False)
                slot.job = job_id
                try:
                    self._deliver(slot, job_id, resume)
                except OSError:  # the worker just died; the job waits for the next one
                    slot.job, slot.broken = None, True
                    self._pending[job_id] = resume
                    self._pending.move_to_end(job_id, last=False)

    def _finished(self, slot: _Slot, job_id: int) -> None:
        with self._lock:
            if slot.job == job_id:
                slot.job = None
            self._changed.notify_all()
            if not self._closed:
                self._dispatch()

    def cancel(self, job_id: int, timeout: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._pending.pop(job_id, None) is not None:
                return True
            slot = next((s for s in self._slots if s.job == job_id), None)
            if slot is None:
                return True
            self._flag(slot, job_id)
            while slot.job == job_id:
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
        deadline = time.monotonic() + timeout
        with self._lock:
            while not all(s.ready for s in self._slots):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is pending or running (tests)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or any(s.job is not None for s in self._slots):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def shutdown(self, wait: bool = True) -> None:
        from service.store.errors import StoreError

        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()  # they stay queued in the store; the next start picks them up
            running = [(s, s.job) for s in self._slots if s.job is not None]
            for slot, job_id in running:
                # The worker's trainer stops as on Ctrl-C: it flushes and marks the job interrupted.
                self._flag(slot, -job_id)
        self._stop_workers(10.0 if wait else 1.0)
        for _, job_id in running:  # a worker that did not stop in time
            with contextlib.suppress(StoreError):
                if self.store.get_job(job_id)["status"] == "running":
                    self.store.transition(job_id, "interrupted", reason="server shut down")


class ServerShutdown(KeyboardInterrupt):
    """Raised inside a job's training loop when the server shuts down: the trainer treats it as
    Ctrl-C, so the job ends interrupted (resumable), never cancelled."""


def stop_check(flags, index: int, job_id: int) -> Callable[[], bool]:
    """The trainer's should_stop for a job on slot ``index``: True once the job is cancelled (the flag
    holds its id), ServerShutdown when the server stops (the flag holds minus its id)."""

    def should_stop() -> bool:
        flag = flags[index]
        if flag == -job_id:
            raise ServerShutdown
        return flag == job_id

    return should_stop


# --- worker processes -------------------------------------------------------------------------------------


def _exit_with_server(lifeline) -> None:
    """End this process the moment the server is gone, however it went (SIGKILL included).

    ``lifeline`` is the read end of a pipe whose write end only the server holds: when the server
    dies the kernel closes it and the read returns EOF. A worker left training after its server
    died would keep its job "running" and out of reach of the next server's recovery.
    """

    def watch():
        try:
            wait_for([lifeline])
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="server-lifeline", daemon=True).start()


def _process_worker(index: int, database_url: str, conn, flags, lifeline) -> None:
    """Body of a worker process: open the store, then run the jobs sent over ``conn`` one by one."""
    _exit_with_server(lifeline)
    # Ctrl-C or a service manager's SIGTERM reaches the whole process group; the server decides
    # what happens to running jobs (interrupted, resumable) and then ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import optim
    from service.runtime.datasets import dataset_resolver  # noqa: F401 - imported now, so the first job starts fast
    from service.runtime.runner import run_job  # noqa: F401
    from service.store import Store

    optim.available()  # discover the optimizer entry points once, before the first job
    store = Store(database_url, migrate=False)
    conn.send(("ready", None, None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        job_id, resume = message
        conn.send(("started", job_id, None))
        status = execute_job(store, job_id, resume, stop_check(flags, index, job_id))
        conn.send(("finished", job_id, status))
    store.close()


# Imported once in the forkserver, so that each worker forked from it starts in milliseconds.
PRELOAD = ["service.runtime.executor", "service.runtime.runner", "service.runtime.datasets", "service.store",
           "optim"]


def _context():
    """A forkserver context where there is one (never fork the threaded server itself), else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


class ProcessExecutor(_PoolExecutor):
    kind = "process"

    def __init__(self, store, workers: int | None = None):
        super().__init__(store, workers or os.cpu_count() or 1)
        self._ctx = _context()
        self._flags = self._ctx.RawArray("q", self.workers)  # slot -> id of the job told to stop
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._lifeline_r, self._lifeline_w = self._ctx.Pipe(duplex=False)  # see _exit_with_server
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        """Start the workers in the background: the server answers at once, and jobs submitted
        meanwhile wait in the queue until a worker is up."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._monitor = threading.Thread(target=self._watch, name="executor-monitor", daemon=True)
        self._monitor.start()
        threading.Thread(target=self._launch_all, name="executor-start", daemon=True).start()

    def _launch_all(self) -> None:
        for slot in self._slots:
            while True:
                try:
                    with self._lock:
                        if self._closed:
                            return
                        self._launch(slot)
                        self._dispatch()
                    break
                except OSError:
                    log.exception("could not start worker %s; retrying", slot.index)
                    time.sleep(1.0)
            self._wake()  # the monitor listens to the new worker from now on

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(OSError):
            self._wake_w.send(None)

    def _launch(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_process_worker, name=f"gradbook-worker-{slot.index}",
            args=(slot.index, self.store.url, child, self._flags, self._lifeline_r), daemon=True,
        )
        process.start()
        child.close()
        slot.handle, slot.conn, slot.ready, slot.broken = process, parent, False, False

    def _deliver(self, slot: _Slot, job_id: int, resume: bool) -> None:
        self._flags[slot.index] = 0
        slot.conn.send((job_id, resume))

    def _flag(self, slot: _Slot, job_id: int) -> None:
        self._flags[slot.index] = job_id

    def _watch(self) -> None:
        """Read what workers report and replace workers that die."""
        while True:
            with self._lock:
                if self._closed:  # shutdown joins the workers itself
                    return
                by_conn = {s.conn: s for s in self._slots if s.conn is not None}
                by_sentinel = {s.handle.sentinel: s for s in self._slots if s.handle is not None}
            ready = wait_for([*by_conn, *by_sentinel, self._wake_r], timeout=1.0)
            for item in ready:
                if item is self._wake_r:
                    with contextlib.suppress(EOFError, OSError):
                        self._wake_r.recv()
                elif item in by_conn:
                    self._receive(by_conn[item])
            for item in ready:
                if item in by_sentinel:
                    self._replace(by_sentinel[item])

    def _receive(self, slot: _Slot) -> None:
        try:
            while slot.conn is not None and slot.conn.poll():
                kind, job_id, status = slot.conn.recv()
                if kind == "ready":
                    with self._lock:
                        slot.ready = True
                        self._changed.notify_all()
                elif kind == "finished":
                    log.info("job %s ended %s on worker %s", job_id, status, slot.index)
                    self._finished(slot, job_id)
        except (EOFError, OSError):
            pass  # the worker is gone; its sentinel tells the rest

    def _replace(self, slot: _Slot) -> None:
        """A worker process ended: recover its job and start a new worker unless shutting down."""
        from service.store.errors import StoreError

        self._receive(slot)  # what it said before it went
        with self._lock:
            process, job_id, was_ready = slot.handle, slot.job, slot.ready
            if process is None or process.is_alive():
                return
            process.join()
            slot.handle, slot.ready, slot.job = None, False, None
            with contextlib.suppress(OSError):
                slot.conn.close()
            slot.conn = None
            closing = self._closed
            self._changed.notify_all()
        if job_id is not None:
            log.warning("worker %s died (exit code %s) with job %s", slot.index, process.exitcode, job_id)
            try:
                job = self.store.get_job(job_id)
                if job is not None and job["status"] == "running":
                    self.store.recover_orphans()  # its owner pid is gone: interrupted
                elif job is not None and job["status"] == "queued" and not closing:
                    with self._lock:
                        self._pending[job_id] = job["started_at"] is not None
                        self._pending.move_to_end(job_id, last=False)
            except StoreError:
                log.exception("could not recover job %s", job_id)
        if not was_ready and not closing:
            # It died while starting (a broken install, a database it cannot open): do not spin.
            log.error("worker %s exited with code %s before it was ready; restarting it in 1 s",
                      slot.index, process.exitcode)
            time.sleep(1.0)
        while not closing:
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._launch(slot)
                    self._dispatch()
                return
            except OSError:  # e.g. the forkserver was killed with us; mp starts a new one next time
                log.exception("could not start worker %s; retrying", slot.index)
                time.sleep(1.0)
                closing = self._closed

    def _stop_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            slots = list(self._slots)
            for slot in slots:
                if slot.conn is not None:
                    with contextlib.suppress(OSError, ValueError):
                        slot.conn.send(None)
        for slot in slots:
            process = slot.handle
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
        self._wake()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(5.0)
        for slot in slots:
            with self._lock:
                slot.handle, slot.ready = None, False
                if slot.conn is not None:
                    with contextlib.suppress(OSError):
                        slot.conn.close()
                    slot.conn = None
        self.store.recover_orphans()  # a worker that had to be killed left its job running


# --- worker threads ---------------------------------------------------------------------------------------


class ThreadExecutor(_PoolExecutor):
    """The same pool on threads of this process (tests; no isolation from a crashing job)."""

    kind = "thread"

    def __init__(self, store, workers: int = 1):
        super().__init__(store, workers)
        self._flags = [0] * self.workers
        self._inboxes: list = [None] * self.workers

    def _launch(self, slot: _Slot) -> None:
        import queue

        inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inboxes[slot.index] = inbox
        slot.handle = threading.Thread(target=self._run, args=(slot, inbox), daemon=True,
                                       name=f"gradbook-worker-{slot.index}")
        slot.ready = True
        slot.handle.start()

    def _run(self, slot: _Slot, inbox) -> None:
        flags = self._flags
        while True:
            message = inbox.get()
            if message is None:
                return
            job_id, resume = message
            execute_job(self.store, job_id, resume, stop_check(flags, slot.index, job_id))
            self._finished(slot, job_id)

    def _deliver(self, slot: _Slot, job_id: int, resume: bool) -> None:
        self._flags[slot.index] = 0
        self._inboxes[slot.index].put((job_id, resume))

    def _flag(self, slot: _Slot, job_id: int) -> None:
        self._flags[slot.index] = job_id

    def _stop_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for inbox in self._inboxes:
            if inbox is not None:
                inbox.put(None)
        for slot in self._slots:
            if slot.handle is not None:
                slot.handle.join(max(0.0, deadline - time.monotonic()))
                slot.ready = False


def make_executor(kind: str, store, workers: int) -> _PoolExecutor:
    if kind == "process":
        return ProcessExecutor(store, workers)
    if kind == "thread":
        return ThreadExecutor(store, workers)
    raise ValueError(f"executor: expected process or thread, got {kind!r}")
