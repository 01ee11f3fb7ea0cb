"""Every endpoint in-process (FastAPI TestClient, jobs on worker threads), against independent
expectations: the lecture's numbers for the seed network, raw points recomputed into buckets by hand,
a resumed job equal bit for bit to one that ran straight through, uploaded data equal to inline data."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from service import domain
from service.api.app import create_app
from service.config import ServerSettings
from service.jobs import presets
from service.runtime.runner import run_job

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def seed(steps: int = 30, **changes) -> dict:
    doc = presets.get("seed")
    doc["steps"] = steps
    doc.update(changes)
    return doc


def wait_until(check, timeout: float = 30.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def finished(client, job_id: int) -> dict:
    def done():
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["status"] not in ("queued", "running") else None

    return wait_until(done)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "gradbook.db"
    settings = ServerSettings(database_url=f"sqlite:///{db}", executor="thread", workers=2,
                              cancel_wait_seconds=5.0)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def store(app_client):
    return app_client.app.state.store


@pytest.fixture(scope="module")
def seed_job(app_client):
    """The lecture's network trained 30 steps through the API."""
    r = app_client.post("/jobs", json=seed(30))
    assert r.status_code == 201, r.text
    job = finished(app_client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return job


# --- catalog and health -------------------------------------------------------------------------------------


def test_health_reports_database_and_workers(app_client):
    body = app_client.get("/health").json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["executor"]["kind"] == "thread" and body["executor"]["workers"] == 2


def test_presets_are_listed_and_each_is_accepted_as_a_job(app_client, store):
    body = app_client.get("/presets").json()
    names = [p["name"] for p in body["presets"]]
    assert names == presets.names()
    for p in body["presets"]:
        assert p["spec"] == presets.get(p["name"])
    # The xor preset, trimmed to 5 steps, runs to the end through the API.
    doc = next(p["spec"] for p in body["presets"] if p["name"] == "xor")
    doc["steps"] = 5
    assert finished(app_client, app_client.post("/jobs", json=doc).json()["id"])["status"] == "succeeded"


def test_optimizers_come_from_the_registry_with_defaults(app_client):
    import optim

    body = app_client.get("/optimizers").json()
    assert [o["name"] for o in body["optimizers"]] == [o["name"] for o in optim.available()]
    adam = next(o for o in body["optimizers"] if o["name"] == "adam")
    lr = next(h for h in adam["hyperparameters"] if h["name"] == "lr")
    assert lr["default"] == 0.001 and lr["type"] == "float"
    assert {s["name"] for s in body["schedules"]} >= {"constant"}


# --- submit, list, show -------------------------------------------------------------------------------------


def test_submitted_job_runs_and_shows_its_state(app_client, seed_job):
    assert seed_job["steps_done"] == 30 and seed_job["total_steps"] == 30
    assert seed_job["param_names"] == ["w1", "b1", "w2", "b2"]
    assert seed_job["error"] is None and seed_job["last_loss"] is not None
    assert seed_job["created_at"] <= seed_job["started_at"] <= seed_job["finished_at"]
    assert seed_job["spec"]["optimizer"] == {"name": "sgd", "lr": 0.1}


def test_submit_answers_201_with_location(app_client):
    r = app_client.post("/jobs", json=seed(3))
    assert r.status_code == 201
    assert r.headers["location"] == f"/jobs/{r.json()['id']}"
    assert r.json()["status"] in ("queued", "running", "succeeded")
    finished(app_client, r.json()["id"])


def test_total_steps_of_an_epochs_spec_counts_batches(app_client):
    doc = seed(None, epochs=3)
    del doc["steps"]
    job = app_client.post("/jobs", json=doc).json()
    assert job["total_steps"] == 3  # one row, full batch: one step per epoch
    assert finished(app_client, job["id"])["steps_done"] == 3


def test_idempotency_key_makes_retries_safe(app_client, store):
    headers = {"Idempotency-Key": "retry-me-1"}
    first = app_client.post("/jobs", json=seed(4), headers=headers)
    again = app_client.post("/jobs", json=seed(4), headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = app_client.post("/jobs", json=seed(5), headers=headers)
    assert other.status_code == 409 and "retry-me-1" in other.json()["detail"]
    finished(app_client, first.json()["id"])
    runs = [t for t in store.job_events(first.json()["id"]) if t["to_status"] == "running"]
    assert len(runs) == 1  # the replay did not start it a second time


def test_list_filters_by_status_and_pages(app_client, seed_job):
    every = app_client.get("/jobs", params={"limit": 1000}).json()
    assert every["total"] == len(every["jobs"]) >= 2
    ids = [j["id"] for j in every["jobs"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert all(j["spec"] is None for j in every["jobs"])
    page = app_client.get("/jobs", params={"limit": 1, "offset": 1}).json()
    assert [j["id"] for j in page["jobs"]] == ids[1:2] and page["limit"] == 1 and page["offset"] == 1
    done = app_client.get("/jobs", params={"status": "succeeded", "include_spec": True}).json()
    assert done["jobs"] and all(j["status"] == "succeeded" and j["spec"] for j in done["jobs"])
    assert done["total"] == sum(j["status"] == "succeeded" for j in every["jobs"])


def test_listing_shows_stored_totals_and_reads_no_spec(tmp_path):
    """A job with a 28 MB spec beside an ordinary one: the listing answers from the stored columns
    (the huge spec is not a valid plan, so a listing that re-planned it could not know its total)."""
    url = f"sqlite:///{tmp_path / 'gradbook.db'}"
    with TestClient(create_app(ServerSettings(database_url=url, executor="thread", workers=1))) as client:
        store = client.app.state.store
        small = store.create_job("small", seed(5), total_steps=5)
        big_spec = {"name": "huge", "epochs": 2, "pad": "x" * 28_000_000}
        huge = store.create_job("huge", big_spec, total_steps=40)
        listed = client.get("/jobs").json()
        shown = [(j["id"], j["total_steps"], j["spec"]) for j in listed["jobs"]]
        assert shown == [(huge, 40, None), (small, 5, None)]
        assert listed["total"] == 2
        assert client.get(f"/jobs/{huge}").json()["total_steps"] == 40


def test_transitions_are_stored_with_time_and_reason(app_client, seed_job):
    body = app_client.get(f"/jobs/{seed_job['id']}/transitions").json()["transitions"]
    assert [(t["from_status"], t["to_status"]) for t in body] == [
        (None, "queued"), ("queued", "running"), ("running", "succeeded")]
    assert all(t["at"] and t["reason"] for t in body)
    assert body[1]["owner"]  # who ran it


# --- history ------------------------------------------------------------------------------------------------


def test_history_raw_range_is_inclusive_and_starts_with_the_lecture(app_client, seed_job):
    body = app_client.get(f"/jobs/{seed_job['id']}/history", params={"start": 0, "end": 4}).json()
    assert body["downsampled"] is False
    assert [p["step"] for p in body["points"]] == [0, 1, 2, 3, 4]
    first = body["points"][0]
    assert first["loss"] == 2.0 and first["lr"] == 0.1
    assert first["grad_norm"] == pytest.approx(math.sqrt(36 + 36 + 16 + 4), rel=1e-15)
    # step 1: w1 = 1.4, b1 = -0.6, w2 = 2.6, b2 = 0.8 -> a2 = 2.6 * 0.8 + 0.8 = 2.88, J = (2.88 - 5)^2 / 2
    assert body["points"][1]["loss"] == pytest.approx((2.88 - 5) ** 2 / 2, rel=1e-14)
    whole = app_client.get(f"/jobs/{seed_job['id']}/history").json()
    assert [p["step"] for p in whole["points"]] == list(range(30)) and whole["max_points"] == 1000


def test_history_longer_than_max_points_comes_back_in_exact_buckets(app_client, seed_job):
    raw = app_client.get(f"/jobs/{seed_job['id']}/history").json()["points"]
    params = {"start": 2, "end": 28, "max_points": 5}
    body = app_client.get(f"/jobs/{seed_job['id']}/history", params=params).json()
    assert body["downsampled"] is True and 1 <= len(body["points"]) <= 5
    covered = []
    for bucket in body["points"]:
        inside = [p for p in raw if bucket["step"] <= p["step"] <= bucket["step_end"]]
        covered += [p["step"] for p in inside]
        assert bucket["count"] == len(inside)
        losses = [p["loss"] for p in inside]
        assert bucket["loss"]["min"] == min(losses) and bucket["loss"]["max"] == max(losses)
        assert bucket["loss"]["mean"] == pytest.approx(sum(losses) / len(losses), rel=1e-12)
        assert bucket["loss"]["last"] == losses[-1]
    assert covered == list(range(2, 29))  # every step of the range in exactly one bucket


def test_history_answers_carry_an_etag_and_change_when_the_job_writes(app_client, store):
    import numpy as np

    job_id = store.create_job("growing", seed(10), status="running")
    writer = store.writer(job_id, ["w"])
    for step in range(3):
        writer.add_step(step, float(step), 0.1, 1.0, np.zeros((1, 6)))
    writer.flush()
    url = f"/jobs/{job_id}/history"
    first = app_client.get(url)
    assert [p["loss"] for p in first.json()["points"]] == [0.0, 1.0, 2.0]
    etag = first.headers["etag"]
    assert app_client.get(url, headers={"If-None-Match": etag}).status_code == 304
    writer.add_step(3, 3.0, 0.1, 1.0, np.zeros((1, 6)))
    writer.flush()
    second = app_client.get(url, headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag
    assert [p["loss"] for p in second.json()["points"]] == [0.0, 1.0, 2.0, 3.0]
    grads = app_client.get(f"/jobs/{job_id}/gradients", params={"param": "w"})
    assert app_client.get(f"/jobs/{job_id}/gradients", params={"param": "w"},
                          headers={"If-None-Match": grads.headers["etag"]}).status_code == 304
    store.transition(job_id, "cancelled")


def test_gradients_of_one_parameter(app_client, seed_job):
    body = app_client.get(f"/jobs/{seed_job['id']}/gradients", params={"param": "w1", "end": 0}).json()
    assert body["param"] == "w1" and body["downsampled"] is False
    assert body["points"] == [{"step": 0, "norm": 6.0, "mean": 6.0, "std": 0.0, "min": 6.0, "max": 6.0,
                               "nonfinite": 0}]
    url = f"/jobs/{seed_job['id']}/gradients"
    b2 = app_client.get(url, params={"param": "b2", "start": 0, "end": 0}).json()
    assert b2["points"][0]["norm"] == 2.0
    bucketed = app_client.get(url, params={"param": "w2", "max_points": 3}).json()
    assert bucketed["downsampled"] and sum(p["count"] for p in bucketed["points"]) == 30


def test_step_has_loss_gradients_and_params_as_nested_lists(app_client, seed_job):
    body = app_client.get(f"/jobs/{seed_job['id']}/steps/0").json()
    assert body["loss"] == 2.0
    assert body["gradients"] == {"w1": [[6.0]], "b1": [6.0], "w2": [[4.0]], "b2": [2.0]}
    assert body["params"] == {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}
    assert body["stats"]["w2"]["norm"] == 4.0
    step1 = app_client.get(f"/jobs/{seed_job['id']}/steps/1").json()
    assert step1["params"]["w1"] == [[pytest.approx(1.4, rel=1e-15)]]
    assert app_client.get(f"/jobs/{seed_job['id']}/steps/30").status_code == 404


def test_verify_agrees_with_backprop(app_client, seed_job):
    r = app_client.post(f"/jobs/{seed_job['id']}/steps/0/verify")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["max_rel_error"] < 1e-6 and body["n_params"] == 4 and body["forward_passes"] == 8
    assert body["recorded_vs_replayed"] == 0.0
    assert app_client.post(f"/jobs/{seed_job['id']}/steps/99/verify").status_code == 404
    assert app_client.post(f"/jobs/{seed_job['id']}/steps/0/verify", params={"eps": 0}).status_code == 422


def test_graph_at_a_step_ends_in_the_recorded_loss(app_client, seed_job):
    body = app_client.get(f"/jobs/{seed_job['id']}/graph", params={"step": 1}).json()
    nodes = {n["name"]: n for n in body["nodes"]}
    output = nodes[body["output"]]
    recorded = app_client.get(f"/jobs/{seed_job['id']}/steps/1").json()["loss"]
    assert output["value"] == pytest.approx(recorded, rel=1e-15) and output["grad"] == 1.0
    dot = app_client.get(f"/jobs/{seed_job['id']}/graph", params={"step": 0, "format": "dot"})
    assert dot.status_code == 200 and dot.text.startswith("digraph")


def test_export_csv_has_a_header_and_every_step(app_client, seed_job):
    r = app_client.get(f"/jobs/{seed_job['id']}/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["step", "loss", "lr", "grad_norm"] and "w1_norm" in header
    assert [int(row[0]) for row in body] == list(range(30))
    history = app_client.get(f"/jobs/{seed_job['id']}/history").json()["points"]
    assert [float(row[1]) for row in body] == [p["loss"] for p in history]  # repr round-trips exactly
    assert float(body[0][header.index("w1_norm")]) == 6.0


def test_export_ndjson_range(app_client, seed_job):
    r = app_client.get(f"/jobs/{seed_job['id']}/export", params={"format": "ndjson", "start": 5, "end": 7})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [row["step"] for row in lines] == [5, 6, 7] and "b2_max" in lines[0]


# --- events -------------------------------------------------------------------------------------------------


def sse_events(text: str) -> list[tuple[str, str | None, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":") and ": " in line]
        fields = dict(line.split(": ", 1) for line in lines)
        if "data" in fields:
            out.append((fields.get("event"), fields.get("id"), json.loads(fields["data"])))
    return out


def test_events_of_a_finished_job_replay_from_last_event_id(app_client, seed_job):
    r = app_client.get(f"/jobs/{seed_job['id']}/events", headers={"Last-Event-ID": "26"})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[0][0] == "status" and events[0][2]["status"] == "succeeded"
    steps = [e for e in events if e[0] == "step"]
    assert [(e[1], e[2]["step"]) for e in steps] == [("27", 27), ("28", 28), ("29", 29)]
    assert events[-1][0] == "end" and events[-1][2]["steps_done"] == 30
    everything = sse_events(app_client.get(f"/jobs/{seed_job['id']}/events", params={"after": -1}).text)
    assert [e[2]["step"] for e in everything if e[0] == "step"] == list(range(30))
    latest = sse_events(app_client.get(f"/jobs/{seed_job['id']}/events").text)
    assert [e[2]["step"] for e in latest if e[0] == "step"] == [29]  # without an id: the latest step on


def test_a_full_replay_of_a_finished_job_puts_every_status_change_in_its_place(app_client):
    """after=-1 replays every step and every status change; the change that ended the job comes
    after the last step even when the steps take more than one read (1,000 steps a read)."""
    job = app_client.post("/jobs", json=seed(1200)).json()
    # whether the job is still running when the stream opens (then it follows it live) or not
    events = sse_events(app_client.get(f"/jobs/{job['id']}/events", params={"after": -1}).text)
    kinds = [(e[0], e[2].get("to_status", e[2].get("step"))) for e in events[1:]]
    assert kinds[:2] == [("status", "queued"), ("status", "running")]
    assert kinds[2:-2] == [("step", s) for s in range(1200)]
    assert kinds[-2:] == [("status", "succeeded"), ("end", None)]


def test_a_full_replay_puts_each_status_change_after_the_steps_recorded_before_it(app_client, store):
    """A job interrupted at step 1,500 and resumed: its replay sends interrupted, queued and running
    between steps 1,499 and 1,500, and succeeded after the last step (3,000 steps: three reads)."""
    job = store.create_job("resumed", {"kind": "test"})
    stats = np.zeros((1, 6))

    def write(steps):
        w = store.writer(job, ["w1"])
        for s in steps:
            w.add_step(s, 1.0, 0.1, 1.0, stats)
        w.flush()

    store.transition(job, "running", reason="test", owner="1@test")
    write(range(1500))
    for status in ("interrupted", "queued", "running"):
        store.transition(job, status, reason="test", owner="1@test")
    write(range(1500, 3000))
    store.transition(job, "succeeded", reason="test")
    events = sse_events(app_client.get(f"/jobs/{job}/events", params={"after": -1}).text)
    order = [e[2]["to_status"] if e[0] == "status" else e[2].get("step", e[0]) for e in events[1:]]
    assert order[:2] == ["queued", "running"] and order[-2:] == ["succeeded", "end"]
    middle = order[2:-2]
    assert middle == list(range(1500)) + ["interrupted", "queued", "running"] + list(range(1500, 3000))
    resumed = [e[2] for e in events if e[0] == "status" and e[2].get("to_status") == "interrupted"]
    assert resumed[0]["steps_done"] == 1500


def test_events_follow_a_job_from_queued_to_its_end(app_client):
    job = app_client.post("/jobs", json=seed(40)).json()
    with app_client.stream("GET", f"/jobs/{job['id']}/events", params={"after": -1}) as r:
        text = "".join(r.iter_text())
    events = sse_events(text)
    assert [e[2]["step"] for e in events if e[0] == "step"] == list(range(40))
    changes = [e[2]["to_status"] for e in events if e[0] == "status" and "to_status" in e[2]]
    assert changes[-1] == "succeeded"
    assert events[-1][0] == "end" and events[-1][2]["status"] == "succeeded"


# --- cancel, resume, delete ---------------------------------------------------------------------------------


def test_cancel_a_queued_job(app_client, store):
    job_id = store.create_job("waiting", seed(5))  # queued, never handed to a worker
    r = app_client.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = app_client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == domain.refusal("cancel", job_id, "cancelled")


def test_a_queued_job_is_not_resumable(app_client, store):
    """Its server's executor starts it; a resume would run it twice."""
    job_id = store.create_job("waiting", seed(5))  # queued, never handed to a worker
    r = app_client.post(f"/jobs/{job_id}/resume")
    assert r.status_code == 409 and r.json()["detail"] == domain.refusal("resume", job_id, "queued")
    assert store.get_job(job_id)["status"] == "queued"
    app_client.post(f"/jobs/{job_id}/cancel")


def test_cancel_a_running_job_keeps_its_history(app_client, store):
    job = app_client.post("/jobs", json=seed(1_000_000)).json()
    wait_until(lambda: app_client.get(f"/jobs/{job['id']}").json()["steps_done"] >= 5)
    r = app_client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert job["id"] not in app_client.get("/health").json()["executor"]["running"]  # its worker let go
    done = app_client.get(f"/jobs/{job['id']}").json()["steps_done"]
    steps = [p["step"] for p in app_client.get(f"/jobs/{job['id']}/history", params={"max_points": 10_000})
             .json()["points"]]
    assert done >= 5 and steps == list(range(done))


def interrupt_after(steps: int):
    """A should_stop that raises KeyboardInterrupt at a step: run_job marks the job interrupted."""
    count = {"n": 0}

    def should_stop():
        count["n"] += 1
        if count["n"] > steps:
            raise KeyboardInterrupt
        return False

    return should_stop


def test_resume_finishes_an_interrupted_job_bit_for_bit(app_client, store):
    doc = seed(25, checkpoint_every=10)
    straight = finished(app_client, app_client.post("/jobs", json=doc).json()["id"])
    job_id = store.create_job("interrupted", doc)
    with pytest.raises(KeyboardInterrupt):
        run_job(store, job_id, should_stop=interrupt_after(17))
    assert app_client.get(f"/jobs/{job_id}").json()["status"] == "interrupted"
    r = app_client.post(f"/jobs/{job_id}/resume")
    assert r.status_code == 200 and r.json()["status"] in ("queued", "running", "succeeded")
    assert finished(app_client, job_id)["status"] == "succeeded"
    a = app_client.get(f"/jobs/{straight['id']}/export", params={"format": "ndjson"}).text
    b = app_client.get(f"/jobs/{job_id}/export", params={"format": "ndjson"}).text
    assert a == b and len(a.splitlines()) == 25
    assert app_client.post(f"/jobs/{job_id}/resume").status_code == 409  # succeeded: nothing to resume


def test_delete_only_finished_jobs(app_client, store):
    job = finished(app_client, app_client.post("/jobs", json=seed(3)).json()["id"])
    queued = store.create_job("waiting", seed(3))
    r = app_client.delete(f"/jobs/{queued}")
    assert r.status_code == 409 and "cancel it first" in r.json()["detail"]
    assert app_client.delete(f"/jobs/{job['id']}").status_code == 204
    assert app_client.get(f"/jobs/{job['id']}").status_code == 404
    assert app_client.get(f"/jobs/{job['id']}/history").status_code == 404
    assert store.step(queued, 0) is None and app_client.delete(f"/jobs/{job['id']}").status_code == 404


def test_a_deleted_jobs_space_goes_back_to_the_file_system(app_client, store):
    path = make_url(store.url).database

    def on_disk():  # the database file and its write-ahead log
        return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))

    jobs = [finished(app_client, app_client.post("/jobs", json=seed(400)).json()["id"]) for _ in range(2)]
    before = on_disk()
    assert app_client.delete(f"/jobs/{jobs[0]['id']}").status_code == 204
    assert on_disk() < before  # not just freed inside the file: returned


# --- datasets -----------------------------------------------------------------------------------------------


CSV = "x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n"


def test_uploaded_dataset_trains_like_the_same_data_inline(app_client):
    r = app_client.post("/datasets", params={"name": "xor"}, content=CSV,
                        headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["meta"] == {"rows": 4, "features": 2, "targets": 1, "columns": ["x1", "x2", "y"]}
    assert ds["id"] in [d["id"] for d in app_client.get("/datasets").json()["datasets"]]
    assert app_client.get(f"/datasets/{ds['id']}").json()["sha256"] == ds["sha256"]

    inline = copy.deepcopy(presets.get("xor"))
    inline["steps"] = 8
    inline["data"] = {"x": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [[0], [1], [1], [0]]}
    uploaded = copy.deepcopy(inline)
    uploaded["data"] = {"dataset_id": ds["id"]}
    a = finished(app_client, app_client.post("/jobs", json=inline).json()["id"])
    b = finished(app_client, app_client.post("/jobs", json=uploaded).json()["id"])
    assert a["status"] == b["status"] == "succeeded"
    ha = app_client.get(f"/jobs/{a['id']}/export", params={"format": "ndjson"}).text
    hb = app_client.get(f"/jobs/{b['id']}/export", params={"format": "ndjson"}).text
    assert ha == hb
    verify = app_client.post(f"/jobs/{b['id']}/steps/3/verify").json()
    assert verify["max_rel_error"] < 1e-5


@pytest.mark.parametrize(("body", "words"), [
    ("x,y\n1,2\n3,oops\n", ["row 3", "column 2", "oops"]),
    ("x,y\n1,2\n3,nan\n", ["row 2", "column 2", "finite"]),
    ("x,y\n1,2\n3\n", ["row 3", "1 columns"]),
    ("", ["empty"]),
    ("x,y\n", ["no data rows"]),
    ("x,y\n1,2\r3,4\n", ["CSV"]),
])
def test_bad_csv_uploads_name_the_row_and_column(app_client, body, words):
    r = app_client.post("/datasets", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["loc"][0] == "body"
    for word in words:
        assert word in error["msg"]


def test_spec_data_references_are_checked_at_submission(app_client):
    doc = presets.get("xor")
    doc["data"] = {"dataset_id": 987654}
    r = app_client.post("/jobs", json=doc)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data", "dataset_id"]
    doc["data"] = {"csv": "/etc/passwd"}
    r = app_client.post("/jobs", json=doc)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data", "csv"]
    ds = app_client.post("/datasets", params={"targets": 2}, content="1,2,3\n4,5,6\n",
                         headers={"Content-Type": "text/csv"}).json()
    doc["data"] = {"dataset_id": ds["id"]}  # two target columns, but the xor model has one output
    r = app_client.post("/jobs", json=doc)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data", "y"]
