"""A job as every front end shows it: service.domain.job_view (the CLI's --json and the REST API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from service.domain import job_view


def test_job_view_is_json_ready():
    t = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    spec = {"name": "seed", "steps": 100}
    view = job_view({"id": 3, "name": "seed", "status": "failed", "steps_done": 7, "total_steps": 100,
                     "last_loss": float("nan"), "created_at": t, "started_at": t.isoformat(),
                     "finished_at": None, "error": "diverged at step 6: loss is nan", "spec": spec,
                     "param_names": ["w1", "b1"]})
    assert view["last_loss"] is None and view["finished_at"] is None
    assert view["created_at"] == view["started_at"] == "2024-01-02T03:04:05Z"
    assert view["total_steps"] == 100 and view["status"] == "failed" and view["spec"] == spec
    json.dumps(view, allow_nan=False)


def test_job_view_reads_no_spec_a_listing_left_out():
    view = job_view({"id": 1, "name": "big", "status": "queued", "steps_done": 0, "total_steps": None,
                     "last_loss": None, "created_at": "2024-01-02T03:04:05.250000+00:00"})
    assert view["spec"] is None and view["total_steps"] is None and view["param_names"] is None
    assert view["created_at"] == "2024-01-02T03:04:05.250000Z"
