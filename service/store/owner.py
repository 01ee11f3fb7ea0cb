"""Who runs a job ("pid@hostname") and whether that process is still there."""

from __future__ import annotations

import os
import socket
from datetime import datetime

# A process that started this long after the job's last heartbeat cannot be the job's owner.
_CLOCK_SLACK_S = 2.0


def current_owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def parse_owner(owner: str | None) -> tuple[int, str] | None:
    if not owner or "@" not in owner:
        return None
    pid, _, host = owner.partition("@")
    return (int(pid), host) if pid.isdigit() else None


def _linux_process(pid: int) -> tuple[str, float] | None:
    """(state letter, start time as a Unix timestamp) from /proc, or None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    # Fields after the command name: state is the 1st, starttime (clock ticks after boot) the 20th.
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_gone(pid: int, last_seen: datetime | None) -> bool:
    """True when no live process ``pid`` on this host can be the one last seen at ``last_seen``."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    info = _linux_process(pid)
    if info is None:
        return False
    state, started = info
    if state in ("Z", "X"):  # killed but not yet reaped by its parent
        return True
    # The pid was reused by a process born after the owner's last sign of life.
    return last_seen is not None and started > last_seen.timestamp() + _CLOCK_SLACK_S
