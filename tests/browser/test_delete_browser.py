"""Deleting a job from its page: the Delete button asks first (dismissing deletes nothing), then
deletes the job and goes back to the list without it; while the job runs the button is disabled,
and the server's refusal (409) is shown should a delete get through anyway."""

from __future__ import annotations

import time

DEADLINE_S = 120.0  # a bound on a broken worker, not a wait for time


def submit(api, name: str, steps: int) -> int:
    spec = {p["name"]: p for p in api.get("/presets").json()["presets"]}["seed"]["spec"]
    return api.post("/jobs", json={**spec, "name": name, "steps": steps}).json()["id"]


def until_status(api, job_id: int, wanted: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (status := api.get(f"/jobs/{job_id}").json()["status"]) != wanted:
        assert time.monotonic() < deadline, f"job {job_id} is {status}, not {wanted}"


def test_delete_asks_first_then_deletes_and_returns_to_the_list(page, api):
    job_id = submit(api, "to-delete", 20)
    kept = submit(api, "kept", 20)  # the newest: the list shows it first
    until_status(api, job_id, "succeeded")
    until_status(api, kept, "succeeded")
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_selector(".job-title .badge[data-status=succeeded]")

    asked: list[str] = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("button[data-action=delete]")
    assert asked and f"job #{job_id} (to-delete)" in asked[0]  # confirm() has returned: nothing sent
    assert deletes == [] and api.get(f"/jobs/{job_id}").status_code == 200
    assert page.evaluate("location.hash") == f"#/jobs/{job_id}"

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action=delete]")
    page.wait_for_function("location.hash === '#/'")
    page.wait_for_selector(f"tr[data-job='{kept}']")
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    assert api.get(f"/jobs/{job_id}").status_code == 404
    assert deletes == [f"{page.evaluate('location.origin')}/jobs/{job_id}"]


def test_a_running_job_cannot_be_deleted(page, api):
    job_id = submit(api, "busy", 1_000_000)
    until_status(api, job_id, "running")
    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_selector(".job-title .badge[data-status=running]")
    assert page.is_disabled("button[data-action=delete]")

    # forced through, the server refuses it and the page says why
    page.evaluate("document.querySelector('button[data-action=delete]').disabled = false")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action=delete]")
    message = page.wait_for_selector(".action-message:has-text('delete:')").inner_text()
    assert f"job {job_id} is running" in message and "cancel it first" in message
    assert api.get(f"/jobs/{job_id}").status_code == 200
    api.post(f"/jobs/{job_id}/cancel")
