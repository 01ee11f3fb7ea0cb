"""Stopping `gradbook train` and `gradbook resume` with SIGINT (Ctrl-C) or SIGTERM: at a step
boundary, with the steps recorded so far written whole. (The job's writer process runs in a session
of its own, so a terminal's Ctrl-C or a process group's SIGTERM does not reach it.)"""

from __future__ import annotations

import contextlib
import signal

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
        yield should_stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
