"""SIGKILL of `gradbook train` mid-run, in a real subprocess: the database stays readable with a
contiguous history up to the last flush, the next start marks the job interrupted, and `gradbook
resume` finishes it with exactly the history an uninterrupted run records. Each with the history
written in the training loop and by a writer process (service.writer_process), which must end
with its parent."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from service import presets
from service.store import Store
from service.trainer import run_job

STEPS = 1500
# GRADBOOK_WRITER_PROCESS_AFTER and steps: the writer process needs a moment to start, and the
# job must still be running once it writes.
WRITERS = {"in the loop": ("inf", STEPS), "writer process": ("1e-9", 6000)}


def gradbook(*args) -> list[str]:
    script = Path(sys.executable).with_name("gradbook")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    return head + [str(a) for a in args]


def spec(steps: int = STEPS) -> dict:
    doc = presets.get("sine")  # 1-16-16-1 tanh, Adam; minibatches so the shuffling must resume too
    doc.update(name="killed", steps=steps, batch_size=32, checkpoint_every=100, snapshot_every=10)
    return doc


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def has_open(pid: int, path: Path) -> bool:
    try:
        return any(Path(fd).resolve() == path for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def start_training(tmp_path, writer: str, min_steps: int):
    """`gradbook train` in a subprocess, returned once it has recorded ``min_steps`` steps (and with
    a writer process, once that has the database open and two more flushes are in); with the
    store, the environment and the writer process's pid (or None)."""
    after, steps = WRITERS[writer]
    db = tmp_path / "train.db"
    url = f"sqlite:///{db}"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec(steps)))
    env = {**os.environ, "GRADBOOK_DATABASE_URL": url, "GRADBOOK_WRITER_PROCESS_AFTER": after,
           "GRADBOOK_FLUSH_SECONDS": "0.1"}
    proc = subprocess.Popen(gradbook("train", spec_path, "--quiet"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = Store(url=url)
    try:
        child = wait_for_progress(proc, store, db, writer, min_steps)
    except BaseException:
        proc.kill()
        store.close()
        raise
    return proc, store, env, child, steps


def wait_for_progress(proc, store, db: Path, writer: str, min_steps: int) -> int | None:
    child, writing_from = None, None
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"gradbook train ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no progress within 120 s"
        jobs = store.list_jobs()
        done = jobs[0]["steps_done"] if jobs else 0
        if writer == "writer process" and writing_from is None:
            child = next((c for c in children(proc.pid) if has_open(c, db)), None)
            writing_from = None if child is None else done
        writing = writer == "in the loop" or (writing_from is not None and done > writing_from)
        if done >= min_steps and writing:
            time.sleep(0.25)  # two more flushes
            return child
        time.sleep(0.02)


def same_rows(a: list[dict], b: list[dict]) -> bool:
    def eq(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return x == y or (math.isnan(x) and math.isnan(y))
        return x == y

    return len(a) == len(b) and all(ra.keys() == rb.keys() and all(eq(ra[k], rb[k]) for k in ra)
                                    for ra, rb in zip(a, b, strict=True))


@pytest.mark.parametrize("writer", WRITERS)
def test_sigkill_then_recover_then_resume(tmp_path, writer):
    proc, store, env, child, steps = start_training(tmp_path, writer, 300)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        if child is not None:  # the writer process ends with its parent (at most one write later)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{child}").exists() and not is_zombie(child):
                assert time.monotonic() < deadline, "the writer process outlived its parent"
                time.sleep(0.02)

        [job] = store.list_jobs()
        assert job["status"] == "running" and 300 <= job["steps_done"] < steps
        stored = [r["step"] for r in store.export_rows(job["id"])]
        assert stored == list(range(job["steps_done"]))  # contiguous, as far as the last flush
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
        assert final["status"] == "succeeded" and final["steps_done"] == steps

        # an uninterrupted run of the same spec, in this process: the same book, bit for bit
        straight = store.create_job("straight", spec(steps))
        assert run_job(store, straight).status == "succeeded"
        assert same_rows(list(store.export_rows(job["id"])), list(store.export_rows(straight)))
        for max_points in (37, 1000):  # buckets too: the rollups were recomputed at the truncation
            assert json.dumps(store.history(job["id"], max_points=max_points)) == \
                json.dumps(store.history(straight, max_points=max_points))
            assert json.dumps(store.gradients(job["id"], "w1", max_points=max_points)) == \
                json.dumps(store.gradients(straight, "w1", max_points=max_points))
        for s in (0, checkpoint.step - 10, checkpoint.step, checkpoint.step + 10, steps - 10):
            a, b = store.step(job["id"], s), store.step(straight, s)
            for kind in ("params", "gradients"):
                assert all(np.array_equal(a[kind][n], b[kind][n]) for n in a[kind])
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()


@pytest.mark.parametrize("writer", WRITERS)
def test_sigterm_flushes_and_marks_the_job_interrupted(tmp_path, writer):
    proc, store, _, _, _ = start_training(tmp_path, writer, 100)
    try:
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


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True
