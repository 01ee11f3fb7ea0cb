"""Stopping `gradbook train` and `gradbook resume` with SIGINT (Ctrl-C) or SIGTERM: at a step
boundary, with the steps recorded so far written whole, and without the processes the job started
hearing of it."""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_at_step_boundary():
    """While training, SIGINT and SIGTERM stop the job at the next step boundary: the steps recorded
    so far are flushed whole (never a step without its snapshot) and the job is marked interrupted.
    Yields the ``should_stop`` the training loop polls each step; a second signal stops at once."""
    requested = False

    def handler(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True

    def should_stop() -> bool:
        if requested:
            raise KeyboardInterrupt
        return False

    try:
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    except ValueError:  # not in the main thread: leave signals alone
        yield None
        return
    try:
        with stop_signals_kept_from_children():
            yield should_stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def stop_signals_kept_from_children():
    """The processes a job starts (its history's writer process) inherit the starting thread's
    signal mask. A Ctrl-C or a process group's SIGTERM reaching one before it sets these signals
    aside killed it mid-start, and its failure was printed. So this thread blocks them meanwhile, and
    a thread that does not receives them for the process: Python runs the handler in this thread all
    the same (a blocking call here is no longer cut short, which the first signal never needed)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    finished = threading.Event()
    receiver = threading.Thread(target=finished.wait, name="stop-signal-receiver", daemon=True)
    receiver.start()  # before blocking: a new thread starts with its creator's mask
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        finished.set()
        receiver.join()
