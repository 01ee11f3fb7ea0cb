"""The parent's end of a writer process: a job's history written by a process of its own, so that
training never waits on the database (the child is service.store.writer_child).

A flush in the training loop costs ~2-3% of a step's time on a 100k-parameter model (building rows,
SQLite's inserts, the rollups), and it waits whenever another process holds the database's write
lock. A :class:`~service.store.write.HistoryWriter` made with ``background_after`` hands its
batches to a child process instead, once it has been open that long (a short job never pays the
child's start-up):

    parent (training loop)                    child (python -m service.store.writer_child FD)
    flush k:   send batch k          ---->    write batch k in one transaction
    flush k+1: receive k's result    <----    reply ("ok", job status) or ("error", message)
               send batch k+1        ---->    ...

One batch is in flight at a time, so memory stays bounded and a slow database slows the loop down
rather than queueing without end; a cancellation is seen one flush late. When the child fails or
dies, the parent gets the batch back (:class:`WriterProcessError`) and writes it itself from then
on: nothing is lost, and the error the parent meets, if any, is the database's own.

The child ignores SIGINT and SIGTERM (it ends when the parent closes the pipe, after its last write)
and exits on end of file, so it dies with its parent. A write it started before a SIGKILL of the
parent may still land, but only while the job is running under the parent's owner id (the
writer's owner check): a later run that took the job over never gets a stale batch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path


class WriterProcessError(Exception):
    """The child could not write, died, or was abandoned. ``batch`` and ``checkpoint``: the write it
    was given before and may or may not have made (None when there was none in flight; a batch
    being handed over when it failed stays the caller's)."""

    def __init__(self, message: str, batch=None, checkpoint=None):
        super().__init__(message)
        self.batch = batch
        self.checkpoint = checkpoint


class WriterProcess:
    """The parent's end: starts the child (without waiting for it), then one write in flight.

    Anything that interrupts a send or a receive (KeyboardInterrupt from SIGINT/SIGTERM, a lost
    child) leaves the stream in an unknown state: the child is killed at once (a write it had not
    committed is rolled back by the database) and every later call raises WriterProcessError with
    the batch that was in flight, for the caller to check and write itself.
    """

    def __init__(self, url: str, job_id: int, param_names: list[str], owner: str | None):
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the child imports service from here too
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "service.store.writer_child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path},
                # A session of its own: a Ctrl-C or a process group's SIGTERM is the parent's to handle,
                # and reaching the child mid-start (before it sets them aside) would kill it. It still
                # ends with its parent, at the end of file of its socket.
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._ready = False
        self._in_flight: tuple | None = None  # (batch, checkpoint) sent, its reply not yet read
        self._broken: str | None = None  # why the child was abandoned
        self._talk(self._conn.send, (url, job_id, list(param_names), owner))  # a URL may hold a password

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def alive(self) -> bool:
        """Whether the child process is still running (neither ended nor killed)."""
        return self._child.poll() is None

    def answered(self, timeout: float = 0.0) -> bool:
        """Whether the child has replied to the write in flight (waits up to ``timeout`` seconds);
        the reply stays unread for the next call."""
        return self._in_flight is not None and self._talk(self._conn.poll, timeout)

    def ready(self) -> bool:
        """True once the child has its store open; never waits."""
        if not self._ready and self._talk(self._conn.poll):
            self._ready = self._talk(self._conn.recv) == ("ready",)
        return self._ready

    def write(self, batch, checkpoint) -> str | None:
        """Hand over a batch; return the job's status after the previous write (None for the first).
        Waits while the previous write is still running."""
        status = self._collect()
        self._talk(self._conn.send, (batch, checkpoint))
        self._in_flight = (batch, checkpoint)
        return status

    def finish(self) -> str | None:
        """Wait for the last write, then end the child; the job's status after that write."""
        if not self._ready and self._in_flight is None and self._broken is None:
            self.kill()  # it has nothing of ours
            return None
        status = self._collect()
        try:
            self._conn.send(None)
        except OSError:
            pass  # already gone, after its last write
        self._conn.close()
        # It has nothing left to write: reaped in the background rather than waited for (an exiting
        # interpreter takes ~0.1 s).
        threading.Thread(target=self._child.wait, name="writer-process-reaper", daemon=True).start()
        return status

    def kill(self) -> None:
        self._conn.close()
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()

    def _collect(self) -> str | None:
        """The in-flight write's result (None if there is none). The batch stays in flight until its
        reply is read, so an interrupted wait leaves it for the next call to hand back."""
        if self._broken is not None:
            batch, checkpoint = self._in_flight or (None, None)
            self._in_flight = None
            raise WriterProcessError(self._broken, batch, checkpoint)
        if self._in_flight is None:
            return None
        reply = self._talk(self._conn.recv)
        batch, checkpoint = self._in_flight
        self._in_flight = None
        if reply[0] != "ok":
            raise WriterProcessError(reply[1], batch, checkpoint)
        return reply[1]

    def _talk(self, operation, *args):
        """``operation(*args)`` on the connection; when it fails or is interrupted, abandon the
        child. A lost connection becomes WriterProcessError; anything else (KeyboardInterrupt)
        goes on."""
        if self._broken is not None:
            raise WriterProcessError(self._broken)
        try:
            return operation(*args)
        except BaseException as e:
            self.kill()
            lost = isinstance(e, EOFError | OSError)
            self._broken = (f"the writer process ended (exit code {self._child.returncode})" if lost
                            else f"the writer process was abandoned ({type(e).__name__})")
            if lost:
                batch, checkpoint = self._in_flight or (None, None)
                self._in_flight = None
                raise WriterProcessError(self._broken, batch, checkpoint) from None
            raise
