"""Job records: creation, the status machine, events, orphan recovery, idempotency, deletion."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest
from sqlalchemy import event

from service.store import IdempotencyConflict, JobNotFound, JobStateError, Store
from service.store.owner import current_owner

SPEC = {"name": "seed", "steps": 3, "optimizer": {"name": "sgd", "lr": 0.1}}


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield s
    s.close()


def test_new_job_is_queued_and_json_able(store):
    job_id = store.create_job("seed", SPEC, param_names=["w1", "b1"])
    job = store.get_job(job_id)
    assert json.loads(json.dumps(job)) == job
    assert job["id"] == job_id and job["status"] == "queued" and job["steps_done"] == 0
    assert job["spec"] == SPEC and job["param_names"] == ["w1", "b1"]
    assert job["last_loss"] is None and job["started_at"] is None and job["finished_at"] is None
    assert job["total_steps"] is None  # not given: unknown
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
    assert store.get_job(job_id + 1) is None


def test_total_steps_given_at_submission_is_in_every_job_dict(store):
    job_id = store.create_job("seed", SPEC, total_steps=3)
    assert store.get_job(job_id)["total_steps"] == 3
    store.transition(job_id, "running")
    store.transition(job_id, "succeeded")
    assert store.get_job(job_id)["total_steps"] == 3
    assert store.list_jobs()[0]["total_steps"] == 3
    assert store.list_jobs(include_spec=False)[0]["total_steps"] == 3
    assert store.list_jobs(status="succeeded")[0]["total_steps"] == 3


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "", "spec": SPEC}, "name"),
        ({"name": "x", "spec": [1]}, "spec"),
        ({"name": "x", "spec": {"a": float("nan")}}, "spec"),
        ({"name": "x", "spec": SPEC, "param_names": ["w", "w"]}, "param_names"),
        ({"name": "x", "spec": SPEC, "status": "succeeded"}, "status"),
        ({"name": "x", "spec": SPEC, "total_steps": 0}, "total_steps"),
        ({"name": "x", "spec": SPEC, "total_steps": 2.0}, "total_steps"),
        ({"name": "x", "spec": SPEC, "total_steps": True}, "total_steps"),
    ],
)
def test_bad_job_input_names_the_field(store, kwargs, field):
    with pytest.raises(ValueError, match=field):
        store.create_job(**kwargs)


def test_lifecycle_records_every_transition(store):
    job_id = store.create_job("seed", SPEC)
    store.transition(job_id, "running", reason="worker 1", owner="123@elsewhere")
    job = store.get_job(job_id)
    assert job["status"] == "running" and job["owner"] == "123@elsewhere" and job["started_at"]
    store.transition(job_id, "failed", reason="diverged", error="diverged at step 2: loss is nan")
    job = store.get_job(job_id)
    assert job["status"] == "failed" and job["error"] == "diverged at step 2: loss is nan"
    assert job["finished_at"] is not None
    events = store.job_events(job_id)
    assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
        (None, "queued", "created"),
        ("queued", "running", "worker 1"),
        ("running", "failed", "diverged"),
    ]
    assert events[1]["owner"] == "123@elsewhere"
    assert store.job_events(job_id, after_id=events[1]["id"]) == events[2:]


@pytest.mark.parametrize("final", ["succeeded", "failed", "cancelled"])
def test_terminal_states_never_change(store, final):
    job_id = store.create_job("seed", SPEC)
    store.transition(job_id, "running")
    store.transition(job_id, final)
    for target in ("queued", "running", "succeeded", "failed", "cancelled", "interrupted"):
        with pytest.raises(JobStateError, match=f"{final}, a final state"):
            store.transition(job_id, target)
    assert store.get_job(job_id)["status"] == final
    assert len(store.job_events(job_id)) == 3


def test_interrupted_job_resumes_and_illegal_moves_are_refused(store):
    job_id = store.create_job("seed", SPEC)
    with pytest.raises(JobStateError, match="from queued to succeeded"):
        store.transition(job_id, "succeeded")
    with pytest.raises(ValueError, match="to_status"):
        store.transition(job_id, "paused")
    store.transition(job_id, "running")
    first_start = store.get_job(job_id)["started_at"]
    store.transition(job_id, "interrupted", reason="server restart")
    store.transition(job_id, "queued", reason="resume requested")
    store.transition(job_id, "running", reason="resumed")
    job = store.get_job(job_id)
    assert job["status"] == "running" and job["started_at"] == first_start
    with pytest.raises(JobNotFound):
        store.transition(job_id + 99, "running")


def test_claim_next_takes_the_oldest_queued_job_once(store):
    a = store.create_job("a", SPEC)
    b = store.create_job("b", SPEC)
    assert store.claim_next(owner="1@h") == a
    assert store.claim_next(owner="1@h") == b
    assert store.claim_next() is None
    assert store.get_job(a)["status"] == "running"


def test_list_and_count_jobs(store):
    ids = [store.create_job(f"j{i}", SPEC) for i in range(5)]
    store.transition(ids[1], "running")
    assert [j["id"] for j in store.list_jobs()] == ids[::-1]
    assert [j["id"] for j in store.list_jobs(limit=2, offset=1)] == [ids[3], ids[2]]
    assert [j["id"] for j in store.list_jobs(status="running")] == [ids[1]]
    assert "spec" not in store.list_jobs(include_spec=False)[0]
    assert store.count_jobs() == 5 and store.count_jobs("queued") == 4
    with pytest.raises(ValueError, match="status"):
        store.list_jobs(status="nope")
    with pytest.raises(ValueError, match="limit"):
        store.list_jobs(limit=0)


def statements_of(store) -> list[str]:
    """The SQL statements ``store`` runs from now on, as sent to the database."""
    statements = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: statements.append(statement))
    return statements


def test_listing_without_specs_does_not_read_the_spec_column(store):
    store.create_job("seed", SPEC, total_steps=3)
    statements = statements_of(store)
    [job] = store.list_jobs(include_spec=False)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 and "FROM jobs" in selects[0]
    assert not re.search(r"\bspec\b", selects[0]), selects[0]
    assert "spec" not in job and job["total_steps"] == 3
    statements.clear()
    assert store.list_jobs()[0]["spec"] == SPEC  # asked for: read
    assert re.search(r"\bspec\b", statements[-1])


def test_listing_with_a_huge_spec_present_answers_every_job(store):
    huge = {**SPEC, "data": {"x": "1" * 28_000_000}}  # as big as the inline data that made listing slow
    ids = [store.create_job(f"j{i}", SPEC, total_steps=3) for i in range(2)]
    ids.append(store.create_job("huge", huge, total_steps=5))
    ids += [store.create_job(f"j{i}", SPEC) for i in range(2, 5)]
    jobs = store.list_jobs(include_spec=False)
    assert [j["id"] for j in jobs] == ids[::-1]
    assert [(j["name"], j["total_steps"]) for j in jobs] == [
        ("j4", None), ("j3", None), ("j2", None), ("huge", 5), ("j1", 3), ("j0", 3)]
    assert all("spec" not in j and j["status"] == "queued" for j in jobs)
    assert [j["id"] for j in store.list_jobs(include_spec=False, limit=2, offset=2)] == [ids[3], ids[2]]
    assert store.get_job(ids[2])["spec"] == huge


def test_idempotency_key_returns_the_same_job_or_conflicts(store):
    a = store.create_job("seed", SPEC, idempotency_key="k1")
    assert store.create_job("seed", dict(SPEC), idempotency_key="k1") == a
    with pytest.raises(IdempotencyConflict, match="k1"):
        store.create_job("seed", {**SPEC, "steps": 4}, idempotency_key="k1")
    assert store.create_job("seed", SPEC, idempotency_key="k2") != a
    assert store.count_jobs() == 2


def test_heartbeat_and_unknown_jobs(store):
    job_id = store.create_job("seed", SPEC)
    store.heartbeat(job_id)
    assert store.get_job(job_id)["heartbeat_at"] is not None
    with pytest.raises(JobNotFound, match="job 999 not found"):
        store.heartbeat(999)
    for call in (lambda: store.history(999), lambda: store.writer(999, ["w"]), lambda: store.step(999, 0)):
        with pytest.raises(JobNotFound):
            call()


def test_recover_orphans_interrupts_jobs_of_dead_processes_only(store):
    host = current_owner().partition("@")[2]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is free
    orphan = store.create_job("orphan", SPEC)
    store.transition(orphan, "running", owner=f"{dead.pid}@{host}")
    mine = store.create_job("mine", SPEC)
    store.transition(mine, "running")  # owned by this live process
    remote = store.create_job("remote", SPEC)
    store.transition(remote, "running", owner="1@some-other-host")

    assert store.recover_orphans() == [orphan]
    job = store.get_job(orphan)
    assert job["status"] == "interrupted"
    assert f"{dead.pid}@{host}" in store.job_events(orphan)[-1]["reason"]
    assert store.get_job(mine)["status"] == "running"
    assert store.get_job(remote)["status"] == "running"
    assert store.recover_orphans() == []
    # other hosts are judged by heartbeat age, only when asked to
    assert store.recover_orphans(stale_after=0.0) == [remote]


def test_recover_orphans_sees_zombies(store):
    host = current_owner().partition("@")[2]
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        job_id = store.create_job("z", SPEC)
        store.transition(job_id, "running", owner=f"{child.pid}@{host}")
        assert store.recover_orphans() == [job_id]
    finally:
        child.wait()


def test_delete_job_only_when_finished_and_removes_everything(store, monkeypatch):
    import service.store.jobs as store_jobs

    monkeypatch.setattr(store_jobs, "DELETE_CHUNK_ROWS", 1)  # exercise several chunks
    job_id = store.create_job("seed", SPEC)
    store.transition(job_id, "running")
    w = store.writer(job_id, ["w"])
    for s in range(2500):
        w.add_step(s, 1.0, 0.1, 1.0, np.ones((1, 6)))
    w.add_snapshot(3, {"w": np.ones(2)}, {"w": np.zeros(2)})
    w.flush()
    with pytest.raises(JobStateError, match="cancel it first"):
        store.delete_job(job_id)
    store.transition(job_id, "cancelled")
    store.delete_job(job_id)
    assert store.get_job(job_id) is None
    with store.engine.connect() as conn:
        for table in ("history", "param_stats", "history_rollup", "param_stats_rollup", "step_arrays",
                      "job_events"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0, table
    # ids are never reused
    assert store.create_job("next", SPEC) == job_id + 1
