"""``ProcessExecutor``: the pool (service.runtime.pool) with one job per worker process.

There is one worker per core by default. Each worker gets its jobs over its own pipe, so the parent
always knows which worker runs which job; the cancellation flags are slots in shared memory. Workers
are forked from a forkserver that has the training code imported, so a new worker is ready in
milliseconds. Workers die with the server - they watch a pipe only the server holds open - so after
a SIGKILL of the server no worker keeps a job "running" and the next start marks it interrupted. A
worker that dies is replaced; its job is marked interrupted (running) or queued again (not yet
started). A job that runs longer than GRADBOOK_WRITER_PROCESS_AFTER has its history written by a
process of its own (service.store.writer_process), a child of the worker that ends with it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import wait as wait_for

import optim
from service.runtime.pool import PoolExecutor, Slot, work
from service.store import Store, StoreError

log = logging.getLogger("gradbook.executor")

# Imported once in the forkserver, so that each worker forked from it starts in milliseconds.
PRELOAD = ["service.runtime.processes", "service.store", "optim"]


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
    optim.available()  # discover the optimizer entry points once, before the first job
    store = Store(database_url, migrate=False)
    conn.send(("ready", None, None))

    def receive() -> tuple | None:
        try:
            return conn.recv()
        except (EOFError, OSError):
            return None

    work(store, index, flags, receive, lambda job_id, status: conn.send(("finished", job_id, status)))
    store.close()


def _context():
    """A forkserver context where there is one (never fork the threaded server itself), else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


class ProcessExecutor(PoolExecutor):
    kind = "process"

    def __init__(self, store, workers: int | None = None):
        super().__init__(store, workers or os.cpu_count() or 1)
        self._ctx = _context()
        self._flags = self._ctx.RawArray("q", self.workers)  # worker -> id of the job told to stop
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        # Held open for the workers' lives; see _exit_with_server.
        self._lifeline_r, self._lifeline_w = self._ctx.Pipe(duplex=False)
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

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(OSError):
            self._wake_w.send(None)

    def _launch(self, slot: Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_process_worker, name=f"gradbook-worker-{slot.index}",
            args=(slot.index, self.store.url, child, self._flags, self._lifeline_r), daemon=True,
        )
        process.start()
        child.close()
        slot.handle, slot.conn, slot.ready, slot.broken = process, parent, False, False
        self._wake()  # the monitor listens to the new worker from now on

    def _send(self, slot: Slot, message: tuple) -> None:
        slot.conn.send(message)

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

    def _receive(self, slot: Slot) -> None:
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

    def _replace(self, slot: Slot) -> None:
        """A worker process ended: recover its job and start a new worker unless shutting down."""
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
            self._recover(job_id, requeue=not closing)
        if closing:
            return
        if not was_ready:
            # It died while starting (a broken install, a database it cannot open): do not spin.
            log.error("worker %s exited with code %s before it was ready; restarting it in 1 s",
                      slot.index, process.exitcode)
            time.sleep(1.0)
        self._start_worker(slot)

    def _recover(self, job_id: int, requeue: bool) -> None:
        """The job of a worker that died: interrupted if it was running, else (queued) pending again."""
        try:
            job = self.store.get_job(job_id)
            if job is not None and job["status"] == "running":
                self.store.recover_orphans()  # its owner pid is gone: interrupted
            elif job is not None and job["status"] == "queued" and requeue:
                with self._lock:
                    self._pending[job_id] = job["started_at"] is not None
                    self._pending.move_to_end(job_id, last=False)
        except StoreError:
            log.exception("could not recover job %s", job_id)

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
