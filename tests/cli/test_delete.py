"""`gradbook delete` on the local database (one line per job, refusals on stderr with exit code 1,
the others still deleted), `gradbook db vacuum` shrinking the file, and `gradbook db stats`."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from typer.testing import CliRunner

from cli.main import app
from service import domain
from service.jobs import presets
from service.runtime.runner import run_job
from service.store import Store

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "gradbook.db"
    with Store(url=f"sqlite:///{path}") as store:
        yield path, store


def run(path, *args):
    return runner.invoke(app, [*map(str, args), "--database-url", f"sqlite:///{path}"],
                         env={"GRADBOOK_DATABASE_URL": "", "GRADBOOK_URL": ""})


def finished(store, preset="seed", steps=20) -> int:
    doc = presets.get(preset)
    doc["steps"] = steps
    job = store.create_job(doc["name"], doc)
    run_job(store, job)
    return job


def running(store) -> int:
    """A job running under this (live) process: no one marks it interrupted."""
    job = store.create_job("busy", presets.get("seed"))
    store.transition(job, "running")
    return job


def test_delete_deletes_each_job_and_refuses_unknown_and_running_ones(db):
    path, store = db
    first, second, busy = finished(store), finished(store), running(store)
    result = run(path, "delete", first, 999, busy, second)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"deleted job {first}", f"deleted job {second}"]
    assert "error: no job 999 in this database" in result.stderr
    assert f"error: {domain.refusal('delete', busy, 'running')}" in result.stderr
    assert "Traceback" not in result.output
    assert [j["id"] for j in store.list_jobs()] == [busy]

    result = run(path, "delete", first)
    assert result.exit_code == 1 and f"no job {first}" in result.stderr


def test_delete_json(db):
    path, store = db
    job, busy = finished(store), running(store)
    result = run(path, "delete", job, busy, "--json")
    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    refused = domain.refusal("delete", busy, "running")
    assert answer["jobs"] == [{"id": job, "deleted": True}, {"id": busy, "deleted": False, "error": refused}]
    assert "returned_bytes" in answer


def test_delete_from_a_database_that_does_not_exist_is_a_usage_error(tmp_path):
    result = run(tmp_path / "none.db", "delete", 1)
    assert result.exit_code == 2 and "no database at" in result.stderr
    assert not (tmp_path / "none.db").exists()


def on_disk(path) -> int:
    wal = f"{path}-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


def test_vacuum_then_delete_shrink_the_file(db):
    path, store = db
    big = finished(store, "spirals", steps=150)  # a snapshot every step: about 3 MB
    finished(store)
    before = on_disk(path)
    assert run(path, "delete", big).exit_code == 0
    result = run(path, "db", "vacuum")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("vacuumed: ") and "returned" in result.stdout
    assert on_disk(path) < before

    big = finished(store, "spirals", steps=150)  # the database now returns a delete's space itself
    before = on_disk(path)
    result = run(path, "delete", big)
    assert result.exit_code == 0 and "to the file system" in result.stderr, result.output
    assert on_disk(path) < before


def test_stats_by_job_and_kind(db):
    path, store = db
    job = finished(store, "spirals", steps=30)
    result = run(path, "db", "stats", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [row] = report["jobs"]
    assert (row["id"], row["name"], row["status"], row["steps"]) == (job, "spirals", "succeeded", 30)
    with sqlite3.connect(path) as conn:
        payload = conn.execute("SELECT SUM(LENGTH(data)) FROM step_arrays WHERE kind IN ('param', 'gradient')"
                               ).fetchone()[0]
    assert row["snapshots"] >= payload > 0
    assert row["total"] == sum(row[k] for k in ("history", "param_stats", "snapshots", "checkpoints",
                                                "rollups"))

    text = run(path, "db", "stats").stdout
    header, _, line, total = text.splitlines()[:4]
    assert header.split() == ["id", "name", "status", "steps", "history", "param_stats", "snapshots",
                              "checkpoints", "rollups", "total"]
    assert line.split()[:4] == [str(job), "spirals", "succeeded", "30"] and total.startswith("total")
    assert " kB" in line or " MB" in line
    assert "free inside" in text
