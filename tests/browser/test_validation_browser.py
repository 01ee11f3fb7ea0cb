"""A job that evaluates its validation set every 10 steps: the job page draws the validation loss as
a line through the steps that have one, and plots the validation accuracy, one point per step and
downsampled alike."""

from __future__ import annotations

import time

from .conftest import pixels_of, screenshot

VALIDATION_ORANGE = (234, 88, 12)  # PALETTE[4] in js/charts.js: the validation lines


def validated_job(api, steps: int) -> int:
    """The moons preset for ``steps`` steps of 64 rows, validated every 10 steps; returns once it
    succeeded."""
    presets = {p["name"]: p for p in api.get("/presets").json()["presets"]}
    spec = {**presets["moons"]["spec"], "name": "validated", "steps": steps, "batch_size": 64,
            "validation": {"fraction": 0.25, "every": 10}}
    spec.pop("epochs", None)
    job_id = api.post("/jobs", json=spec).json()["id"]
    while (status := api.get(f"/jobs/{job_id}").json()["status"]) not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    assert status == "succeeded"
    return job_id


def test_validation_loss_and_accuracy_are_drawn_as_lines(page, api):
    job_id = validated_job(api, 400)
    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_selector(".range-info[data-points='400'][data-bucketed=false]")
    legend = page.inner_text("[data-chart=loss] .chart-legend")
    assert "validation loss" in legend
    # 40 evaluations among 400 steps, drawn (before, as single points too small to show: nothing)
    assert pixels_of(page, "loss", VALIDATION_ORANGE) > 300
    assert "validation accuracy" in page.inner_text("[data-chart=val-accuracy] .chart-legend")
    assert pixels_of(page, "val-accuracy", VALIDATION_ORANGE) > 300
    screenshot(page, "job-validation")

    # more steps than pixels: buckets of 3 steps, two in three without an evaluation, and too many
    # points for dots: what is drawn is the line connecting the buckets that have one
    job_id = validated_job(api, 2_000)
    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_selector(".range-info[data-bucketed=true]")
    assert pixels_of(page, "loss", VALIDATION_ORANGE) > 150
    assert pixels_of(page, "val-accuracy", VALIDATION_ORANGE) > 150
