"""The writer process itself (``python -m service.store.writer_child FD``): it receives a job's
batches from the training process over the socket FD and writes each in one transaction (see
service.store.writer_process, the parent's end, for the protocol)."""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection

from service.store.engine import open_engine
from service.store.write import HistoryWriter

# The child runs at a lower priority: on a machine whose cores the training keeps busy (BLAS uses
# them all), starting a Python process at full priority cost the training as much time as the
# child's imports took (~0.5 s); at +10 it waits for idle moments, and its writes still keep up.
NICE = 10


def main(fd: int) -> None:
    """Open the database, then write every batch received until None or end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICE)  # the training process's work comes first, its own start-up included
    conn = Connection(fd)
    try:
        url, job_id, names, owner = conn.recv()
    except EOFError:
        return
    engine, checkpointer = open_engine(url)
    try:
        writer = HistoryWriter(engine, url, job_id, names, None, owner=owner)
        try:
            conn.send(("ready",))
        except OSError:  # the parent finished before we were ready
            return
        serve(conn, writer)
    finally:
        if checkpointer is not None:
            checkpointer.stop()
        engine.dispose()


def serve(conn: Connection, writer: HistoryWriter) -> None:
    """Write each (batch, checkpoint) received and reply with the job's status or the error."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        try:
            reply = ("ok", writer.write(*message))
        except Exception as e:  # reported, and the parent writes the batch itself
            reply = ("error", f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            break


if __name__ == "__main__":
    main(int(sys.argv[1]))
