"""Several processes writing one SQLite database at once: no "database is locked", nothing lost.

The writers start together on a fresh file, so they also race to create the schema.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

from service.domain import Checkpoint
from service.store import Store
from service.store.engine import WRITER_AUTOCHECKPOINT_PAGES, WalCheckpointer, open_engine
from service.store.write import HistoryWriter

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from service.domain import Checkpoint
    from service.store import Store

    url, index, steps, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    while not __import__("os").path.exists(go):  # start all writers at the same moment
        time.sleep(0.005)
    store = Store(url)
    job = store.create_job(f"writer-{index}", {"writer": index})
    store.transition(job, "running")
    w = store.writer(job, ["w", "b"])
    for s in range(steps):
        stats = np.full((2, 6), float(index * 100_000 + s))
        stats[:, 5] = s % 2
        w.add_step(s, index + s / steps, 0.1, float(s), stats)
        if s % 10 == 0:
            w.add_snapshot(s, {"w": np.full(3, s, np.float32)}, {"w": np.zeros(3)})
        if w.pending == 25:
            w.flush(Checkpoint(s, {"w": np.zeros(2)}, {"s": s}) if s % 100 == 99 else None)
            store.heartbeat(job)
    w.flush()
    store.transition(job, "succeeded", reason="done")
    print(job)
    """
)


def test_four_processes_write_at_once_and_nothing_is_lost(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    go = tmp_path / "go"
    steps = 400
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(i), str(steps), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    go.touch()

    # Meanwhile this process reads: readers must neither fail nor block the writers.
    reader_errors = []
    done = threading.Event()

    def read_while_writing():
        store = Store(url)
        try:
            while not done.is_set():
                for job in store.list_jobs():
                    store.history(job["id"], max_points=50)
                    store.gradients(job["id"], "w", max_points=50) if job["param_names"] else None
                done.wait(0.02)
        except Exception as exc:  # noqa: BLE001 - reported below
            reader_errors.append(repr(exc))
        finally:
            store.close()

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    outputs = [p.communicate(timeout=120) for p in procs]
    done.set()
    reader.join()

    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    assert reader_errors == []

    store = Store(url)
    jobs = {int(out.strip()) for out, _ in outputs}
    assert len(jobs) == 4
    for job_id in jobs:
        job = store.get_job(job_id)
        index = job["spec"]["writer"]
        assert job["status"] == "succeeded" and job["steps_done"] == steps
        rows = list(store.export_rows(job_id))
        assert [r["step"] for r in rows] == list(range(steps))
        np.testing.assert_array_equal([r["loss"] for r in rows], [index + s / steps for s in range(steps)])
        expected_mean = [index * 100_000 + s for s in range(steps)]
        np.testing.assert_array_equal([r["b_mean"] for r in rows], expected_mean)
        assert store.snapshot_steps(job_id) == list(range(0, steps, 10))
        assert store.last_checkpoint(job_id).meta == {"s": 399}
        assert [e["to_status"] for e in store.job_events(job_id)] == ["queued", "running", "succeeded"]
        buckets = store.gradients(job_id, "w", max_points=7)
        assert sum(b["count"] for b in buckets) == steps
    store.close()


def checkpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "gradbook-wal-checkpoint"}


def test_wal_is_checkpointed_by_the_store_thread_not_by_committing_writers(tmp_path):
    """A commit leaves the WAL alone below WRITER_AUTOCHECKPOINT_PAGES; the checkpointer thread that
    comes with the engine a store (or a writer process) writes through copies it into the database
    file soon after (the file grows without any further write). Closing the store ends its thread."""
    path = tmp_path / "wal.db"
    url = f"sqlite:///{path}"
    others = checkpoint_threads()
    store = Store(url)
    try:
        [thread] = checkpoint_threads() - others  # the store's own
        with store.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == WRITER_AUTOCHECKPOINT_PAGES
        job = store.create_job("big", {"n": 1})
        store.transition(job, "running")
    finally:
        store.close()
    assert not thread.is_alive()

    engine, checkpointer = open_engine(url)  # what a store writes through
    try:
        checkpointer.stop()  # paused: the write below must leave the database file as it is
        before = os.path.getsize(path)
        writer = HistoryWriter(engine, url, job, ["w"], None)
        writer.flush(Checkpoint(0, {"w": np.random.default_rng(0).standard_normal(1_000_000)}, {}))  # 8 MB
        assert os.path.getsize(path) == before  # the commit did not checkpoint
        checkpointer = WalCheckpointer(engine, interval=0.05)
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < before + 8_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) >= before + 8_000_000
    finally:
        checkpointer.stop()
        engine.dispose()
    with Store(url) as store:
        assert store.last_checkpoint(job).arrays["w"].size == 1_000_000
