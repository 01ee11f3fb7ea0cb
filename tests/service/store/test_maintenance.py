"""Space: a deleted job's pages go back to the file system (a full vacuum, or an incremental one
after deletes once the database is in that mode), and the sizes per job and kind of data agree
with counts made directly in SQLite."""

from __future__ import annotations

import os
import sqlite3

import pytest

from service.jobs import presets
from service.runtime.runner import run_job
from service.store import Store, maintenance


def snapshot_job(store: Store, steps: int = 150) -> int:
    """A finished job with a snapshot at every step (1,251 parameters: about 20 kB a step)."""
    doc = presets.get("spirals")
    doc["steps"] = steps
    job = store.create_job(doc["name"], doc)
    run_job(store, job)
    assert store.get_job(job)["status"] == "succeeded"
    return job


def on_disk(path) -> int:
    """The database file and its write-ahead log, as the file system counts them."""
    wal = f"{path}-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "space.db"
    with Store(url=f"sqlite:///{path}") as store:
        yield path, store


def older_database(path) -> Store:
    """A database made without incremental auto-vacuum, as every one was before it: its first page
    written by a connection that did not ask for it."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    return Store(url=f"sqlite:///{path}")


def test_vacuum_returns_a_deleted_jobs_space_and_turns_on_incremental_vacuum(tmp_path):
    path = tmp_path / "older.db"
    with older_database(path) as store:
        first = snapshot_job(store)
        snapshot_job(store)
        assert maintenance.auto_vacuum_mode(store.engine) == "none"
        store.delete_job(first)
        assert store.reclaim_space() is None  # this database keeps freed pages until a vacuum
        before = on_disk(path)
        sizes = store.vacuum()
        assert on_disk(path) < before
        assert sizes["after"]["free_bytes"] == 0 and sizes["after"]["wal_bytes"] == 0
        assert sizes["before"]["bytes"] > sizes["after"]["bytes"]
        assert maintenance.auto_vacuum_mode(store.engine) == "incremental"


def test_deletes_in_incremental_mode_return_their_space(db):
    path, store = db
    store.vacuum()
    first = snapshot_job(store)
    snapshot_job(store)
    before = on_disk(path)
    store.delete_job(first)  # the older job: its pages lie before the newer job's
    returned = store.reclaim_space()
    assert returned and returned > 0
    assert on_disk(path) < before
    assert maintenance.sizes(store.engine)["free_bytes"] == 0
    assert store.get_job(first) is None and store.list_jobs()[0]["status"] == "succeeded"


def test_a_new_database_returns_a_deleted_jobs_space(db):
    path, store = db
    assert maintenance.auto_vacuum_mode(store.engine) == "incremental"  # no vacuum needed first
    first = snapshot_job(store)
    snapshot_job(store)
    before = on_disk(path)
    store.delete_job(first)
    assert store.reclaim_space() > 0 and on_disk(path) < before


def direct_counts(path, job_id: int) -> dict:
    """What the stats should say of a job, counted with sqlite3 alone."""
    with sqlite3.connect(path) as conn:
        def one(sql):
            return conn.execute(sql, (job_id,)).fetchone()[0] or 0

        return {
            "snapshots": one("SELECT SUM(LENGTH(data)) FROM step_arrays WHERE job_id = ? "
                             "AND kind IN ('param', 'gradient')"),
            "checkpoints": one("SELECT SUM(LENGTH(data)) FROM step_arrays WHERE job_id = ? "
                               "AND kind = 'checkpoint'"),
            "history_rows": one("SELECT COUNT(*) FROM history WHERE job_id = ?"),
            "param_stats_rows": one("SELECT COUNT(*) FROM param_stats WHERE job_id = ?"),
        }


def dbstat_bytes(path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                            "(SELECT name FROM sqlite_schema WHERE tbl_name = ?)", (table,)).fetchone()[0]


def test_estimated_stats_count_array_payloads_and_rows(db, monkeypatch):
    path, store = db
    jobs = [snapshot_job(store, steps=40), snapshot_job(store, steps=60)]
    queued = store.create_job("waiting", presets.get("seed"))
    monkeypatch.setattr(maintenance, "table_bytes", lambda engine: (None, "estimate"))
    report = store.storage_stats()
    assert report["method"] == "estimate" and report["tables"] is None
    by_id = {j["id"]: j for j in report["jobs"]}
    history_row = maintenance.estimated_row_bytes(maintenance.History.__table__)
    for job in jobs:
        counted = direct_counts(path, job)
        assert by_id[job]["snapshots"] == counted["snapshots"] > 0
        assert by_id[job]["checkpoints"] == counted["checkpoints"] > 0
        assert by_id[job]["history"] == counted["history_rows"] * history_row
        assert by_id[job]["steps"] == store.get_job(job)["steps_done"]
    assert by_id[queued]["total"] == 0 and by_id[queued]["status"] == "queued"
    assert report["totals"]["snapshots"] == sum(direct_counts(path, j)["snapshots"] for j in jobs)
    assert report["totals"]["total"] == sum(j["total"] for j in report["jobs"])


def test_measured_stats_share_each_tables_size_among_its_jobs(db):
    path, store = db
    jobs = [snapshot_job(store, steps=40), snapshot_job(store, steps=80)]
    try:
        dbstat_bytes(path, "history")
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table")
    report = store.storage_stats()
    assert report["method"] == "dbstat"
    totals = report["totals"]
    slack = len(report["jobs"])  # each job's share is rounded to a byte
    assert abs(totals["history"] - dbstat_bytes(path, "history")) <= slack
    assert abs(totals["param_stats"] - dbstat_bytes(path, "param_stats")) <= slack
    assert abs(totals["snapshots"] + totals["checkpoints"] - dbstat_bytes(path, "step_arrays")) <= 2 * slack
    assert report["tables"]["step_arrays"] == dbstat_bytes(path, "step_arrays")
    small, large = (next(j for j in report["jobs"] if j["id"] == job) for job in jobs)
    assert large["history"] > small["history"] and large["snapshots"] > small["snapshots"]
    for job in (small, large):
        assert job["snapshots"] >= direct_counts(path, job["id"])["snapshots"]  # payload and row overhead
    database = report["database"]  # (the store's checkpointer thread moves bytes from log to file)
    assert database["bytes"] == database["file_bytes"] + database["wal_bytes"] > 0
    assert database["free_bytes"] == 0
