"""Another site's page, open in the user's browser, tries to drive the local server: it submits a job
spec as text/plain and cancels a running job, both as "no-cors" fetches that a browser sends without
asking the server first. Neither reaches the store. The other site is the same server under another
host name (localhost instead of 127.0.0.1): another origin and another site to the browser."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LONG = {"name": "long", "model": {"layers": [{"units": 1}]}, "data": {"x": [[1.0]], "y": [[5.0]]},
        "optimizer": {"name": "sgd", "lr": 0.01}, "steps": 1_000_000}

ATTACK = """async ([server, jobId, spec]) => {
    await fetch(`${server}/jobs`, {method: "POST", mode: "no-cors", body: spec,
                                   headers: {"Content-Type": "text/plain"}});
    await fetch(`${server}/jobs/${jobId}/cancel`, {method: "POST", mode: "no-cors"});
}"""


def test_a_page_of_another_site_cannot_submit_or_cancel_jobs(page, api, server):
    job = api.post("/jobs", json=LONG).json()
    try:
        before = api.get("/jobs").json()["total"]
        other_site = f"http://localhost:{urlsplit(server).port}"
        page.goto(f"{other_site}/health")
        page.evaluate(ATTACK, [server, job["id"], json.dumps({**LONG, "steps": 10})])  # a valid spec
        assert api.get("/jobs").json()["total"] == before  # nothing submitted
        assert api.get(f"/jobs/{job['id']}").json()["status"] in ("queued", "running")  # nor cancelled
    finally:
        api.post(f"/jobs/{job['id']}/cancel")
