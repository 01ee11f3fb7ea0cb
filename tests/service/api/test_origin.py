"""A web page of another site cannot change anything on the server through the user's browser: the
requests a browser sends cross-site without asking (a text/plain or form body, a bodiless POST) are
refused, by media type (415) or by their Origin / Sec-Fetch-Site marks (403), and the store is left
exactly as it was. The server's own pages, and clients that are not browsers, keep working."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.origin import SameOriginWrites
from service.config import ServerSettings
from service.jobs import presets
from service.runtime.runner import run_job

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OWN = "http://testserver"  # the TestClient's base URL: the server's own origin
EVIL = "https://evil.example"
CROSS_SITE = [{"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
              {"Origin": OWN, "Sec-Fetch-Site": "cross-site"}, {"Origin": "http://testserver:8080"}]
TOKEN = "s3cret-token"


def seed(steps: int = 2) -> dict:
    doc = presets.get("seed")
    doc["steps"] = steps
    return doc


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db = tmp_path_factory.mktemp("origin") / "gradbook.db"
    settings = ServerSettings(database_url=f"sqlite:///{db}", executor="thread", workers=1)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def store(client):
    return client.app.state.store


def book(store) -> tuple:
    """Everything a refused request could have changed: every job's status and every dataset."""
    jobs = store.list_jobs(limit=1000)
    return ([(j["id"], j["status"]) for j in jobs], [d["id"] for d in store.list_datasets(limit=1000)])


# --- the attacks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_job_spec_sent_as_a_simple_request_is_refused(client, store, content_type):
    """What a page's <form> or fetch() may send anywhere without a preflight: the spec is valid JSON,
    but not declared as JSON, so nothing is created."""
    before = book(store)
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/jobs", content=json.dumps(seed()), headers=headers)
    assert r.status_code == 415, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["header", "content-type"] and error["type"] == "unsupported_media_type"
    assert "application/json" in error["msg"]
    assert book(store) == before


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_cross_site_cancel_is_refused_and_cancels_nothing(client, store, headers):
    job_id = store.create_job("waiting", seed())  # queued, never handed to a worker: cancellable
    before = book(store)
    r = client.post(f"/jobs/{job_id}/cancel", headers=headers)
    assert r.status_code == 403, r.text
    assert "refused" in r.json()["detail"]
    assert store.get_job(job_id)["status"] == "queued" and book(store) == before


@pytest.mark.parametrize("headers", CROSS_SITE[:3], ids=["origin", "null-origin", "sec-fetch-site"])
def test_every_other_cross_site_change_is_refused(client, store, headers):
    finished = store.create_job("finished", seed())
    run_job(store, finished)
    before = book(store)
    attempts = [
        client.post("/jobs", json=seed(), headers=headers),
        client.post("/datasets", content="x,y\n1,2\n", headers={"Content-Type": "text/csv", **headers}),
        client.post(f"/jobs/{finished}/resume", headers=headers),
        client.post(f"/jobs/{finished}/steps/0/verify", headers=headers),
        client.delete(f"/jobs/{finished}", headers=headers),
        client.put("/jobs", headers=headers),
        client.patch(f"/jobs/{finished}", headers=headers),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert book(store) == before


def test_a_datasets_upload_must_be_declared_as_csv(client, store):
    before = book(store)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = client.post("/datasets", content="x,y\n1,2\n", headers=form)
    assert r.status_code == 415 and "text/csv" in r.json()["detail"][0]["msg"]
    assert client.post("/datasets", content="x,y\n1,2\n").status_code == 415  # no type at all
    assert book(store) == before


# --- what keeps working -------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Origin": OWN}, {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
                                     {"Sec-Fetch-Site": "none"}, {"Origin": "HTTP://TestServer/"}])
def test_the_servers_own_pages_and_non_browser_clients_may_change_things(client, store, headers):
    r = client.post("/jobs", json=seed(), headers=headers)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert client.post(f"/jobs/{job_id}/cancel", headers=headers).status_code in (200, 409)
    with_charset = {"Content-Type": "application/json; charset=utf-8", **headers}
    assert client.post("/jobs", content=json.dumps(seed()), headers=with_charset).status_code == 201


def test_reading_is_not_affected(client):
    """GETs change nothing, so a cross-site one is answered (CORS keeps the answer from the page)."""
    r = client.get("/jobs", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


def test_the_token_is_still_required_from_the_servers_own_pages(tmp_path):
    settings = ServerSettings(database_url=f"sqlite:///{tmp_path / 'gradbook.db'}", executor="thread",
                              workers=1, api_token=TOKEN)
    with TestClient(create_app(settings)) as client:
        own = {"Origin": OWN, "Sec-Fetch-Site": "same-origin"}
        assert client.post("/jobs", json=seed(), headers=own).status_code == 401
        wrong = {**own, "Authorization": "Bearer wrong"}
        assert client.post("/jobs", json=seed(), headers=wrong).status_code == 401
        r = client.post("/jobs", json=seed(), headers={**own, "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 201
        # and the token does not open the door to another site
        assert client.post("/jobs", json=seed(), headers={"Origin": EVIL, "Authorization": f"Bearer {TOKEN}"}
                           ).status_code == 403


# --- the middleware alone -----------------------------------------------------------------------------------


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_trusted_origins_pass_as_the_servers_own():
    guard = SameOriginWrites(_ok, trusted_origins=["http://localhost:3000/"])
    client = TestClient(guard)
    for headers in ({"Origin": "http://localhost:3000"}, {"Origin": "http://LOCALHOST:3000",
                                                          "Sec-Fetch-Site": "cross-site"}):
        assert client.post("/jobs", headers=headers).status_code == 204
    assert client.post("/jobs", headers={"Origin": "http://localhost:3001"}).status_code == 403
    assert client.post("/jobs", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403


# --- origins the operator trusts (GRADBOOK_CORS_ORIGINS) ----------------------------------------------------

TRUSTED = "http://localhost:5173"


@pytest.fixture(scope="module")
def cors_client(tmp_path_factory):
    db = tmp_path_factory.mktemp("cors") / "gradbook.db"
    settings = ServerSettings.from_env({"GRADBOOK_CORS_ORIGINS": f" {TRUSTED} , https://app.example"},
                                       database_url=f"sqlite:///{db}", executor="thread", workers=1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_cors_is_off_unless_origins_are_listed(client):
    preflight = client.options("/jobs", headers={"Origin": TRUSTED, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    answer = client.get("/health", headers={"Origin": TRUSTED})
    assert "access-control-allow-origin" not in answer.headers


def test_a_listed_origin_gets_cors_and_may_write(cors_client):
    store = cors_client.app.state.store
    preflight = cors_client.options("/jobs", headers={
        "Origin": TRUSTED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == TRUSTED
    created = cors_client.post("/jobs", content=json.dumps(seed()), headers={
        "Origin": TRUSTED, "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.headers["access-control-allow-origin"] == TRUSTED
    assert store.get_job(created.json()["id"]) is not None


def test_an_origin_not_listed_is_still_refused_with_cors_on(cors_client):
    store = cors_client.app.state.store
    # a refused submission creates nothing (the jobs earlier tests made may change state meanwhile)
    before = [j["id"] for j in store.list_jobs(limit=1000)]
    refused = cors_client.post("/jobs", content=json.dumps(seed()), headers={
        "Origin": EVIL, "Content-Type": "application/json"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert [j["id"] for j in store.list_jobs(limit=1000)] == before
