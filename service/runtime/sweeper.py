"""Keeping a server's jobs moving: running jobs whose process is gone marked interrupted (at start and
then periodically), and queued jobs handed to the executor at start."""

from __future__ import annotations

import logging
import threading

from service.runtime.executor import Executor
from service.store import Store

log = logging.getLogger("gradbook.server")


def recover(store: Store) -> list[int]:
    """Mark the running jobs whose process is gone (a server or worker killed mid-job) as interrupted,
    and say so in the log; their ids."""
    recovered = store.recover_orphans()
    if recovered:
        log.warning("jobs %s were running in a process that is gone: marked interrupted; "
                    "POST /jobs/{id}/resume continues them", recovered)
    return recovered


def requeue(store: Store, executor: Executor) -> list[int]:
    """Hand the executor every job the store has as queued, oldest first."""
    found: list[dict] = []
    while True:
        page = store.list_jobs(status="queued", limit=1000, offset=len(found), include_spec=False)
        found += page
        if len(page) < 1000:
            break
    ids = []
    for job in sorted(found, key=lambda j: j["id"]):
        # A job that ran before (resumed, then the server stopped) continues from its checkpoint.
        if executor.submit(job["id"], resume=job["started_at"] is not None):
            ids.append(job["id"])
    return ids


class Sweeper:
    """Marks running jobs whose process is gone as interrupted, every ``interval`` seconds."""

    def __init__(self, store: Store, interval: float):
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orphan-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                recover(self.store)
            except Exception:  # noqa: BLE001 - a locked or briefly unreachable database: try again
                log.exception("orphan sweep failed")
