"""The dashboard in a real headless Chromium against a real server: submit the lecture's seed network
from the form, watch it finish, read its loss plot and its step-0 computation graph; field errors beside
their lines; live updates, zoom and cancel/resume on a long job. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlparse

import httpx

from .conftest import pixels_of, running_server, screenshot

# The lecture's forward pass and backward pass for the seed network (x = 1, y = 5, w1 = 2, b1 = 0,
# w2 = 3, b2 = 1, ReLU, J = (a2 - y)^2 / 2): node -> (value, dJ/dnode), derived by hand.
LECTURE = {
    "t1": (2, 6), "z1": (2, 6), "a1": (2, 6), "t2": (6, 2), "z2": (7, 2), "a2": (7, 2), "J": (2, 1),
    "w1": (2, 6), "b1": (0, 6), "w2": (3, 4), "b2": (1, 2),
}
LOSS_BLUE = (37, 99, 235)  # PALETTE[0] in js/charts.js: the loss line


def blue_pixels(page, chart: str) -> int:
    """Pixels of the loss colour on a chart's canvas (a blank or axes-only canvas has none)."""
    return pixels_of(page, chart, LOSS_BLUE)


def seed_spec(api) -> dict:
    presets = {p["name"]: p for p in api.get("/presets").json()["presets"]}
    return presets["seed"]["spec"]


def test_seed_job_from_the_form_to_its_computation_graph(page, api):
    page.goto("/")
    page.wait_for_selector("select[name=preset] option[value=seed]", state="attached")
    page.select_option("select[name=preset]", "seed")
    assert json.loads(page.input_value("textarea.editor-text")) == seed_spec(api)

    page.click("form.new-job button[type=submit]")
    message = page.wait_for_selector(".form-message.ok").inner_text()
    job_id = int(re.search(r"#(\d+)", message).group(1))
    row = f"tr[data-job='{job_id}']"
    page.wait_for_selector(f"{row}[data-status=succeeded]", timeout=60_000)
    assert "100 / 100" in page.inner_text(f"{row} td.steps")
    assert api.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
    screenshot(page, "jobs")

    # the job page: the loss curve is drawn from the 100 recorded steps, one point per step
    page.click(f"{row} a.job-name")
    page.wait_for_selector(".range-info[data-points='100']")
    assert page.get_attribute(".range-info", "data-bucketed") == "false"
    assert blue_pixels(page, "loss") > 200
    over = page.locator("[data-chart=loss] .u-over").bounding_box()
    page.mouse.move(over["x"] + 1, over["y"] + over["height"] / 2)  # the first point: step 0
    readout = page.inner_text("[data-chart=loss] .chart-readout")
    assert readout.startswith("step 0") and re.search(r"loss 2(\s|$)", readout), readout
    screenshot(page, "job")

    # step 0: the lecture's graph, values and derivatives read from the SVG
    page.click("a.button:has-text('Step 0')")
    page.wait_for_selector("svg.graph [data-node=J]")
    nodes = page.eval_on_selector_all(
        "svg.graph [data-node]",
        "els => els.map(e => [e.dataset.node, e.dataset.value, e.dataset.grad ?? null])")
    got = {name: (value, grad) for name, value, grad in nodes}
    for name, (value, grad) in LECTURE.items():
        assert float(got[name][0]) == value and float(got[name][1]) == grad, (name, got[name])
    assert got["x"] == ("1", None) and got["y"] == ("5", None)  # data: a value, no derivative
    # drawn left to right in the order the forward pass computes them
    xs = {name: page.locator(f"svg.graph [data-node='{name}']").bounding_box()["x"] for name in LECTURE}
    chain = ["t1", "z1", "a1", "t2", "z2", "a2", "J"]
    assert all(xs[a] < xs[b] for a, b in zip(chain, chain[1:], strict=False))

    # the recorded gradients as a table, and the numerical check agreeing with them
    assert page.get_attribute(".param-row[data-param=w2] table[data-kind^='∂J'] td", "data-value") == "4"
    page.click("button[data-action=verify]")
    report = page.wait_for_selector(".verify-report")
    assert "ok" in report.get_attribute("class").split()
    assert float(report.get_attribute("data-max-rel-error")) < 1e-6
    screenshot(page, "step")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_api_errors_are_shown_beside_the_fields_they_name(page, api):
    before = api.get("/jobs").json()["total"]
    page.goto("/")
    page.wait_for_selector("select[name=preset] option[value=seed]", state="attached")
    text = page.input_value("textarea.editor-text")
    bad = (text.replace('"units": 1, "activation": "relu"},', '"units": 0, "activation": "relu"},', 1)
           .replace('"steps": 100', '"steps": 0'))
    assert bad.count('"units": 0') == 1 and '"steps": 0' in bad
    page.fill("textarea.editor-text", bad)
    page.click("form.new-job button[type=submit]")
    page.wait_for_selector(".editor-note")
    notes = {n.get_attribute("data-field"): n for n in page.query_selector_all(".editor-note")}
    assert set(notes) == {"model.layers[0].units", "steps"}
    for field, needle in (("model.layers[0].units", '"units": 0'), ("steps", '"steps"')):
        assert "greater than or equal to 1" in notes[field].inner_text()
        line = line_of(bad, needle)
        assert notes[field].get_attribute("data-line") == str(line)
        # beside its line: the note starts level with the marked line number in the gutter
        mark = page.locator(f".editor-gutter > div:nth-child({line})")
        assert "error" in mark.get_attribute("class")
        assert abs(notes[field].bounding_box()["y"] - mark.bounding_box()["y"]) < 10
    assert "2 fields to fix" in page.inner_text(".form-message")
    screenshot(page, "jobs-errors")

    # errors on neighbouring lines stack downwards without covering each other
    crowded = bad.replace('"units": 0', '"units": 1').replace('"lr": 0.1', '"lr": 0.1, "foo": 2')
    page.fill("textarea.editor-text", crowded)
    page.click("form.new-job button[type=submit]")
    page.wait_for_selector(".editor-note[data-field='optimizer.foo']")
    boxes = sorted((n.bounding_box() for n in page.query_selector_all(".editor-note")), key=lambda b: b["y"])
    assert len(boxes) == 2 and boxes[0]["y"] + boxes[0]["height"] <= boxes[1]["y"]
    assert "unknown hyperparameter 'foo'" in page.inner_text(".editor-note[data-field='optimizer.foo']")

    # broken JSON never reaches the server; the note points at the line
    page.fill("textarea.editor-text", bad.replace('"loss":', '"loss"'))
    page.click("form.new-job button[type=submit]")
    note = page.wait_for_selector(".editor-note")
    assert "not valid JSON" in note.inner_text()
    assert note.get_attribute("data-line") == str(line_of(bad, '"loss":'))
    assert api.get("/jobs").json()["total"] == before


def long_seed(api, name: str) -> dict:
    return {**seed_spec(api), "name": name, "steps": 1_000_000}


def steps_shown(page) -> int:
    return int(page.get_attribute("[data-steps-done]", "data-steps-done"))


STEPS_SHOWN = "Number(document.querySelector('[data-steps-done]')?.dataset.stepsDone)"


def test_live_updates_zoom_and_cancel_of_a_long_job(page, api):
    job_id = api.post("/jobs", json=long_seed(api, "long")).json()["id"]
    requests: list[str] = []
    queries = re.compile(r"/(history|gradients)\?")
    page.on("request", lambda r: requests.append(r.url) if queries.search(r.url) else None)

    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_function(f"{STEPS_SHOWN} > 0", timeout=30_000)
    first = steps_shown(page)
    page.wait_for_function(f"{STEPS_SHOWN} > {first}")  # the event stream moves it, no reload
    page.wait_for_selector(".range-info[data-bucketed=true]", timeout=30_000)  # more steps than pixels
    assert blue_pixels(page, "loss") > 100

    # every query asks for at most one point per pixel, however long the job grows
    assert requests
    for url in requests:
        q = parse_qs(urlparse(url).query)
        assert 200 <= int(q["max_points"][0]) <= 1400, url

    # drag across the loss plot: the hash names the range and the API is asked for just that range
    over = page.locator("[data-chart=loss] .u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.5, y, steps=5)
    page.mouse.up()
    page.wait_for_function("location.hash.includes('start=')")
    q = parse_qs(page.evaluate("location.hash").split("?", 1)[1])
    start, end = int(q["start"][0]), int(q["end"][0])
    assert 0 < start < end
    page.wait_for_function(
        f"document.querySelector('.range-info').textContent.startsWith('steps {start:,}–{end:,}')")
    zoomed = [parse_qs(urlparse(u).query) for u in requests if f"start={start}&" in u]
    assert zoomed and all(int(z["end"][0]) == end for z in zoomed)
    screenshot(page, "job-running")
    page.click("button:has-text('All steps')")
    page.wait_for_function("!location.hash.includes('start=')")

    # cancelled is final: no resume button, here or in the list
    page.click("button[data-action=cancel]")
    page.wait_for_selector(".job-title .badge[data-status=cancelled]")
    assert page.locator("button[data-action=resume]").count() == 0
    assert api.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    page.goto("/")
    row = f"tr[data-job='{job_id}'][data-status=cancelled]"
    page.wait_for_selector(row)
    assert page.locator(f"{row} button").count() == 0


def test_a_job_interrupted_by_a_crash_is_resumed_from_the_list_on_a_server_with_a_token(page, tmp_path):
    with running_server(tmp_path, stop="kill") as base, httpx.Client(base_url=base) as api:
        job_id = api.post("/jobs", json=long_seed(api, "restarted")).json()["id"]
        while api.get(f"/jobs/{job_id}").json()["steps_done"] == 0:
            time.sleep(0.05)
    # killed while training: the next server finds the job interrupted; this one wants a token
    auth = {"Authorization": "Bearer s3cret"}
    with running_server(tmp_path, token="s3cret") as base, httpx.Client(base_url=base, headers=auth) as api:
        crashed = api.get(f"/jobs/{job_id}").json()
        assert crashed["status"] == "interrupted"
        crashed_at = crashed["steps_done"]
        page.goto(f"{base}/")
        page.fill("#auth input[type=password]", "s3cret")  # the page asks once the API says 401
        page.click("#auth button[type=submit]")
        row = f"tr[data-job='{job_id}']"
        page.wait_for_selector(f"{row}[data-status=interrupted]")
        assert page.locator("#auth").is_hidden()
        screenshot(page, "jobs-interrupted")
        page.click(f"{row} button[data-action=resume]")
        page.wait_for_selector(f"{row}[data-status=running]")
        # the resumed run starts again from its last checkpoint (or step 0, if the crash came before
        # one): cancel once it has stored steps past those the crash left (a state, not a duration)
        while api.get(f"/jobs/{job_id}").json()["steps_done"] <= crashed_at:
            time.sleep(0.05)
        page.click(f"{row} button[data-action=cancel]")
        page.wait_for_selector(f"{row}[data-status=cancelled]")
        job = api.get(f"/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and job["steps_done"] > crashed_at
