"""Where a server's jobs run: ``make_executor(kind, store, workers)`` and the executors it makes.

``ProcessExecutor`` (service.runtime.processes) runs each job in a worker process of its own, the
default; ``ThreadExecutor`` (service.runtime.pool) on threads of the server's process (tests, or a
machine without fork/spawn). Both are the pool of service.runtime.pool behind the ``Executor``
interface, which is all the API knows of them.
"""

from __future__ import annotations

from service.runtime.pool import Executor, PoolExecutor, ThreadExecutor
from service.runtime.processes import ProcessExecutor

__all__ = ["Executor", "ProcessExecutor", "ThreadExecutor", "make_executor"]


def make_executor(kind: str, store, workers: int) -> PoolExecutor:
    if kind == "process":
        return ProcessExecutor(store, workers)
    if kind == "thread":
        return ThreadExecutor(store, workers)
    raise ValueError(f"executor: expected process or thread, got {kind!r}")
