"""Bad input gets a 4xx JSON error naming the field, never a 500; the token guards every route but the
public ones (deps.PUBLIC_PATHS); oversized bodies get 413 before they are read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.app import create_app
from service.api.deps import PUBLIC_PATHS
from service.config import ServerSettings
from service.jobs import presets

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("errors") / "gradbook.db"
    settings = ServerSettings(database_url=f"sqlite:///{db}", executor="thread", workers=1,
                              max_body_bytes=64 * 1024)
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        yield client


@pytest.fixture(scope="module")
def job_id(app):
    """A finished job, so that bad parameters (not a missing job) are what the tests hit."""
    store = app.app.state.store
    doc = presets.get("seed")
    doc["steps"] = 2
    from service.runtime.runner import run_job

    job = store.create_job("seed", doc)
    run_job(store, job)
    return job


def post_raw(client, body: bytes | str, **headers):
    return client.post("/jobs", content=body, headers={"Content-Type": "application/json", **headers})


def locs(response) -> list[list]:
    return [e["loc"] for e in response.json()["detail"]]


# --- the job spec -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_json_are_refused(app, constant):
    doc = json.dumps(presets.get("seed")).replace('"lr": 0.1', f'"lr": {constant}')
    assert constant in doc
    r = post_raw(app, doc)
    assert r.status_code == 422
    error = r.json()["detail"][0]
    assert error["loc"] == ["body"] and constant in error["msg"] and "finite" in error["msg"]


@pytest.mark.parametrize(("body", "message"), [
    ("{", "not valid JSON"), ("", "JSON body is required"), ("[1, 2]", "JSON object"),
    (b"\xff\xfe", "not UTF-8"), ("1" * 5000, ""),
])
def test_malformed_bodies(app, body, message):
    r = post_raw(app, body)
    assert r.status_code == 422, r.text
    assert message in json.dumps(r.json())


def bad(path: list, value) -> dict:
    """The seed spec with the field at ``path`` set to ``value``."""
    doc = presets.get("seed")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "loc", "words"), [
    (["steps"], "many", ["body", "steps"], "integer"),
    (["steps"], 0, ["body", "steps"], "greater than or equal to 1"),
    (["model", "layers", 0, "units"], "x", ["body", "model", "layers", 0, "units"], "integer"),
    (["model", "layers", 1, "activation"], "swish", ["body", "model", "layers", 1, "activation"], "relu"),
    (["optimizer", "name"], "lbfgs", ["body", "optimizer", "name"], "unknown optimizer"),
    (["optimizer", "momentum_typo"], 0.9, ["body", "optimizer", "momentum_typo"], "momentum_typo"),
    (["optimizer", "lr"], -1.0, ["body", "optimizer", "lr"], "lr"),
    (["model", "init", "w1"], [1.0, 2.0], ["body", "model", "init", "w1"], "expected shape (1, 1)"),
    (["data", "y"], [[1.0], [2.0]], ["body", "data", "y"], "2 rows but x has 1"),
    (["loss"], "hinge", ["body", "loss"], "half_squared_error"),
    (["surprise"], 1, ["body", "surprise"], "unknown field"),
])
def test_bad_fields_are_named(app, path, value, loc, words):
    r = app.post("/jobs", json=bad(path, value))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert loc in [e["loc"] for e in detail], detail
    assert any(words in e["msg"] for e in detail), detail


@pytest.mark.parametrize("data", [{"dataset": []}, {"dataset": {"a": 1}}, {"dataset_id": [1]}, [], "xor"])
def test_odd_data_shapes_are_client_errors(app, data):
    r = app.post("/jobs", json=bad(["data"], data))
    assert r.status_code == 422, r.text
    assert all(e["loc"][:1] == ["body"] for e in r.json()["detail"])


def test_limits_from_the_environment(app, monkeypatch):
    monkeypatch.setenv("GRADBOOK_MAX_STEPS", "50")
    monkeypatch.setenv("GRADBOOK_MAX_UNITS", "8")
    r = app.post("/jobs", json=bad(["steps"], 51))
    assert r.status_code == 422 and ["body", "steps"] in locs(r)
    assert "GRADBOOK_MAX_STEPS" in r.text
    r = app.post("/jobs", json=bad(["model", "layers"], [{"units": 9}, {"units": 1}]))
    assert r.status_code == 422 and ["body", "model", "layers", 0, "units"] in locs(r)


def test_oversized_bodies_get_413(app):
    doc = presets.get("seed")
    doc["data"] = {"x": [[1.0]] * 20_000, "y": [[5.0]] * 20_000}  # ~200 kB, over the 64 kB limit
    r = app.post("/jobs", json=doc)
    assert r.status_code == 413 and "GRADBOOK_MAX_BODY_BYTES" in r.json()["detail"][0]["msg"]

    def chunks():  # no Content-Length: read up to the limit, then refused
        for _ in range(100):
            yield b"x" * 1024

    r = app.post("/datasets", content=chunks(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 413
    assert app.get("/health").status_code == 200  # and the server carries on


def test_idempotency_key_header_is_checked(app):
    r = app.post("/jobs", json=bad(["steps"], 1), headers={"Idempotency-Key": "k" * 201})
    assert r.status_code == 422 and ["header", "idempotency-key"] in locs(r)


# --- ids, ranges, query parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/jobs/999"), ("POST", "/jobs/999/cancel"), ("POST", "/jobs/999/resume"), ("DELETE", "/jobs/999"),
    ("GET", "/jobs/999/history"), ("GET", "/jobs/999/gradients?param=w1"), ("GET", "/jobs/999/steps/0"),
    ("POST", "/jobs/999/steps/0/verify"), ("GET", "/jobs/999/export"), ("GET", "/jobs/999/events"),
    ("GET", "/jobs/999/graph"), ("GET", "/jobs/999/transitions"), ("GET", "/datasets/999"),
])
def test_unknown_ids_are_404(app, method, path):
    r = app.request(method, path)
    assert r.status_code == 404, r.text
    assert "999" in r.json()["detail"]


@pytest.mark.parametrize(("path", "loc"), [
    ("/jobs/0", ["path", "job_id"]),
    ("/jobs/abc", ["path", "job_id"]),
    ("/jobs/" + "9" * 30, ["path", "job_id"]),
    ("/jobs/{job}/steps/-1", ["path", "step"]),
    ("/jobs/{job}/steps/" + "9" * 20, ["path", "step"]),
    ("/jobs/{job}/history?start=5&end=2", ["query", "start"]),
    ("/jobs/{job}/history?max_points=0", ["query", "max_points"]),
    ("/jobs/{job}/history?start=" + "9" * 30, ["query", "start"]),
    ("/jobs/{job}/gradients", ["query", "param"]),
    ("/jobs/{job}/gradients?param=w9", ["query", "param"]),
    ("/jobs/{job}/export?format=xml", ["query", "format"]),
    ("/jobs/{job}/graph?step=-3", ["query", "step"]),
    ("/jobs?status=done", ["query", "status"]),
    ("/jobs?limit=0", ["query", "limit"]),
    ("/jobs?offset=-1", ["query", "offset"]),
    ("/datasets/x", ["path", "dataset_id"]),
])
def test_bad_parameters_are_422_naming_them(app, job_id, path, loc):
    r = app.get(path.format(job=job_id))
    assert r.status_code == 422, r.text
    assert loc in locs(r), r.json()


@pytest.mark.parametrize("route", ["history", "gradients", "export"])
def test_a_range_that_ends_before_it_starts_is_refused_by_the_stores_rule(app, job_id, route):
    r = app.get(f"/jobs/{job_id}/{route}", params={"start": 5, "end": 2, "param": "w1"})
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error == {"loc": ["query", "start"], "msg": "start 5 is after end 2", "type": "value_error"}


def test_bad_last_event_id(app, job_id):
    r = app.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": "soon"})
    assert r.status_code == 422 and locs(r) == [["header", "Last-Event-ID"]]


def test_steps_without_a_snapshot_are_replayed_and_unrecorded_ones_are_not_found(app):
    store = app.app.state.store
    doc = presets.get("seed")
    doc.update(steps=3, snapshot_every=2)
    from service.runtime.runner import run_job

    job = store.create_job("sparse", doc)
    run_job(store, job)
    step = app.get(f"/jobs/{job}/steps/1").json()
    assert step["replayed"] == {"from_step": 0, "steps": 1, "seconds": step["replayed"]["seconds"],
                                "matches_record": True}
    verify = app.post(f"/jobs/{job}/steps/1/verify").json()
    assert verify["replayed"]["steps"] == 1 and verify["max_rel_error"] < 1e-6
    graph = app.get(f"/jobs/{job}/graph", params={"step": 1})
    assert graph.status_code == 200
    # its output J is the loss recorded at step 1
    assert graph.json()["nodes"][-1]["value"] == step["loss"]
    assert app.get(f"/jobs/{job}/steps/0").json()["replayed"] is None  # a snapshot step
    for r in (app.get(f"/jobs/{job}/steps/3"), app.post(f"/jobs/{job}/steps/3/verify")):
        assert r.status_code == 404 and "no recorded step 3" in r.json()["detail"]


# --- the token ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    db = tmp_path_factory.mktemp("token") / "gradbook.db"
    settings = ServerSettings(database_url=f"sqlite:///{db}", executor="thread", workers=1, api_token=TOKEN)
    with TestClient(create_app(settings)) as client:
        yield client


def concrete(path: str) -> str:
    """A route's path with its parameters filled in: /jobs/{job_id}/steps/{step} -> /jobs/1/steps/1."""
    return re.sub(r"\{\w+\}", "1", path.replace("{relative:path}", "app.css"))


# Every route of the app, walked rather than listed, so that a route added later is checked too
# (app.routes holds the included routers; iter_route_contexts opens them).
ROUTES = sorted((method, route.path) for route in iter_route_contexts(create_app().routes)
                for method in route.methods)


def test_the_public_paths_are_routes_of_the_app():
    assert set(PUBLIC_PATHS) <= {path for _, path in ROUTES}
    assert len(ROUTES) > 20


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_is_public_or_needs_the_token(guarded, method, path):
    if path in PUBLIC_PATHS:
        assert method in ("GET", "HEAD")  # a public route shows; it never changes anything
        r = guarded.request(method, concrete(path))
        assert r.status_code == 200, r.text
        return
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        r = guarded.request(method, concrete(path), headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"


def test_the_docs_name_exactly_the_public_paths():
    """They said every endpoint but /health needs the token, while the dashboard and the API docs
    answered without one."""
    shown = [path.replace("{relative:path}", "") for path in PUBLIC_PATHS]  # /ui/{relative:path}: /ui/
    description = create_app().description
    auth = description[description.index("GRADBOOK_API_TOKEN"):].split("\n\n")[0]
    rest = Path(__file__).parents[3] / "docs" / "rest.md"
    rest_auth = rest.read_text().split("**Authentication.**")[1].split("\n- ")[0]
    for text in (auth, rest_auth):
        assert "except" in text
        for path in shown:
            assert f"`{path}" in text, (path, text)


def test_right_token_is_let_through(guarded):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/jobs", headers=auth).status_code == 200
    assert guarded.get("/jobs/1", headers=auth).status_code == 404  # past the guard, to the lookup


def test_token_is_compared_in_constant_time():
    import inspect

    from service.api import deps

    assert "hmac.compare_digest" in inspect.getsource(deps.require_token)


# --- anything at all ----------------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.text(max_size=8)
           | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
spec_like = st.fixed_dictionaries({}, optional={
    "name": json_values, "model": json_values, "data": json_values, "loss": json_values,
    "optimizer": st.fixed_dictionaries({"name": st.sampled_from(["sgd", "adam", "x"])},
                                       optional={"lr": json_values, "betas": json_values}),
    "steps": json_values, "batch_size": json_values, "dtype": json_values,
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(json_values, spec_like))
def test_no_json_document_makes_a_server_error(app, doc):
    r = post_raw(app, json.dumps(doc))  # not json=doc: httpx sends no body at all for None
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        assert all(e["loc"][0] == "body" and e["msg"] for e in r.json()["detail"])
    else:
        app.post(f"/jobs/{r.json()['id']}/cancel")
