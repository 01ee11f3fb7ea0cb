"""`gradbook resume` while it restores: the progress bar says "restoring from step N" (the
checkpoint's step) until training continues, instead of "step 0" of the total."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cli.backends
from cli import render
from cli.main import app
from service.jobs import presets
from service.runtime.runner import Restoring, run_job
from service.store import Store


def interrupted_job(url: str, after: int = 250) -> int:
    """A job of 1,000 steps with a checkpoint every 100, interrupted after ``after`` steps."""
    doc = presets.get("sine")
    doc.update(name="restored", steps=1000, batch_size=32, checkpoint_every=100)
    polls = iter(range(after))

    def stop_after() -> bool:
        if next(polls, None) is None:
            raise KeyboardInterrupt  # what the CLI's signal handler does
        return False

    with Store(url=url) as store:
        job_id = store.create_job("restored", doc)
        with pytest.raises(KeyboardInterrupt):
            run_job(store, job_id, should_stop=stop_after)
        assert store.get_job(job_id)["status"] == "interrupted"
    return job_id


def test_a_resume_reports_the_step_it_restores_before_training(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    job_id = interrupted_job(url)
    reports = []
    with Store(url=url) as store:
        assert run_job(store, job_id, resume=True, progress=reports.append).status == "succeeded"
    first, *rest = reports
    assert isinstance(first, Restoring) and first.steps_done == 200 and first.total_steps == 1000
    assert rest and not any(isinstance(p, Restoring) for p in rest)
    assert all(p.steps_done > 200 for p in rest) and rest[-1].steps_done == 1000


class RecordingBar(render.ProgressBar):
    """The progress bar, remembering the status it showed at each report."""

    shown: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingBar.shown = []

    def status(self) -> tuple[int, str]:
        task = self.progress.tasks[0]
        return int(task.completed), task.fields["status"]

    def restoring(self, step=None):
        super().restoring(step)
        RecordingBar.shown.append(self.status())

    def step(self, done, loss):
        super().step(done, loss)
        RecordingBar.shown.append(self.status())


def test_the_progress_bar_says_restoring_from_step_until_training_continues(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    job_id = interrupted_job(url)
    monkeypatch.setattr(cli.backends, "ProgressBar", RecordingBar)
    result = CliRunner().invoke(app, ["resume", str(job_id), "--database-url", url])
    assert result.exit_code == 0, result.output
    shown = RecordingBar.shown
    assert shown[:2] == [(0, "restoring"), (200, "restoring from step 200")]
    assert len(shown) > 2 and all(status == "" and done > 200 for done, status in shown[2:])
    assert shown[-1] == (1000, "")
