"""SIGKILL of `gradbook train` mid-run, in a real subprocess: the database stays readable with a
contiguous history up to the last flush, the next start marks the job interrupted, and `gradbook
resume` finishes it with exactly the history an uninterrupted run records."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from service import presets
from service.store import Store
from service.trainer import run_job

STEPS = 1500


def gradbook(*args) -> list[str]:
    script = Path(sys.executable).with_name("gradbook")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    return head + [str(a) for a in args]


def spec() -> dict:
    doc = presets.get("sine")  # 1-16-16-1 tanh, Adam; minibatches so the shuffling must resume too
    doc.update(name="killed", steps=STEPS, batch_size=32, checkpoint_every=100, snapshot_every=10)
    return doc


def same_rows(a: list[dict], b: list[dict]) -> bool:
    def eq(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return x == y or (math.isnan(x) and math.isnan(y))
        return x == y

    return len(a) == len(b) and all(ra.keys() == rb.keys() and all(eq(ra[k], rb[k]) for k in ra)
                                    for ra, rb in zip(a, b, strict=True))


def test_sigkill_then_recover_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec()))
    env = {**os.environ, "GRADBOOK_DATABASE_URL": url}
    proc = subprocess.Popen(gradbook("train", spec_path, "--quiet"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = Store(url=url)
    try:
        deadline = time.monotonic() + 120
        while True:  # until at least one checkpoint and a flush after it are in
            assert proc.poll() is None, f"gradbook train ended early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no progress within 120 s"
            jobs = store.list_jobs()
            if jobs and jobs[0]["steps_done"] >= 300:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        [job] = store.list_jobs()
        assert job["status"] == "running" and 300 <= job["steps_done"] < STEPS
        steps = [r["step"] for r in store.export_rows(job["id"])]
        assert steps == list(range(job["steps_done"]))  # contiguous, as far as the last flush
        checkpoint = store.last_checkpoint(job["id"])
        assert checkpoint is not None and checkpoint.step % 100 == 0 and checkpoint.step <= job["steps_done"]

        # the next start of any command marks it interrupted (its process is gone)
        listed = subprocess.run(gradbook("jobs", "--json"), cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)[0]["status"] == "interrupted"
        assert f"marked interrupted (their process is gone): jobs {job['id']}" in listed.stderr

        resumed = subprocess.run(gradbook("resume", job["id"], "--json", "--quiet"), cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        final = json.loads(resumed.stdout)
        assert final["status"] == "succeeded" and final["steps_done"] == STEPS

        # an uninterrupted run of the same spec, in this process: the same book, bit for bit
        straight = store.create_job("straight", spec())
        assert run_job(store, straight).status == "succeeded"
        assert same_rows(list(store.export_rows(job["id"])), list(store.export_rows(straight)))
        for s in (0, checkpoint.step - 10, checkpoint.step, checkpoint.step + 10, STEPS - 10):
            a, b = store.step(job["id"], s), store.step(straight, s)
            for kind in ("params", "gradients"):
                assert all(np.array_equal(a[kind][n], b[kind][n]) for n in a[kind])
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()


def test_sigterm_flushes_and_marks_the_job_interrupted(tmp_path):
    url = f"sqlite:///{tmp_path / 'term.db'}"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec()))
    env = {**os.environ, "GRADBOOK_DATABASE_URL": url}
    proc = subprocess.Popen(gradbook("train", spec_path, "--quiet"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = Store(url=url)
    try:
        deadline = time.monotonic() + 120
        while not (store.list_jobs() and store.list_jobs()[0]["steps_done"] >= 100):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert "interrupted; continue it with `gradbook resume" in proc.stderr.read()
        [job] = store.list_jobs()
        assert job["status"] == "interrupted"  # by the process itself, no recovery needed
        assert [r["step"] for r in store.export_rows(job["id"])] == list(range(job["steps_done"]))
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()
