"""The step inspector on a step whose snapshot was not kept: it is replayed, the page says so, and
its parameter and gradient tables hold the replayed values."""

from __future__ import annotations

import time


def test_a_step_without_a_snapshot_is_replayed_in_the_inspector(page, api):
    presets = {p["name"]: p for p in api.get("/presets").json()["presets"]}
    spec = {**presets["seed"]["spec"], "name": "sparse", "snapshot_every": 10}
    job = api.post("/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 300  # a bound for a broken server, not an expected duration
    while (status := api.get(f"/jobs/{job}").json()["status"]) in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job} still {status}"
        time.sleep(0.05)
    assert status == "succeeded"

    record = api.get(f"/jobs/{job}/steps/3").json()
    assert record["replayed"]["from_step"] == 0 and record["replayed"]["steps"] == 3
    page.goto(f"/#/jobs/{job}/steps/3")
    note = page.wait_for_selector("p.replayed").inner_text()
    assert "replayed 3 steps from the initial parameters" in note and "exactly" in note
    shown = page.get_attribute(".param-row[data-param=w1] table[data-kind^='∂J'] td", "data-value")
    assert float(shown) == record["gradients"]["w1"][0][0]
    page.goto(f"/#/jobs/{job}/steps/10")
    page.wait_for_selector(".param-row[data-param=w1]")
    assert page.query_selector("p.replayed") is None  # a snapshot step is read as it was stored
