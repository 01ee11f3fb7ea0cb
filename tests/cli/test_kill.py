"""SIGKILL of `gradbook train` mid-run, in a real subprocess: the database stays readable with a
contiguous history up to the last flush, the next start marks the job interrupted, and `gradbook
resume` continues it with exactly the history an uninterrupted run records. Each with the history
written in the training loop and by a writer process, which must end with its parent.

The jobs are far longer than any test run (LONG steps), so they never end by themselves however
fast the machine is: every stop is the test's own, made once the database shows the state wanted."""

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from service.jobs import presets
from service.runtime.runner import run_job
from service.store import Store
from tests.cli.process import gradbook

LONG = 100_000_000  # days of training: the job is always still running when the test stops it
# GRADBOOK_WRITER_PROCESS_AFTER: never, or from the first flush on
WRITERS = {"in the loop": "inf", "writer process": "1e-9"}


def spec(steps: int = LONG) -> dict:
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
    db = tmp_path / "train.db"
    url = f"sqlite:///{db}"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec()))
    env = {**os.environ, "GRADBOOK_DATABASE_URL": url, "GRADBOOK_WRITER_PROCESS_AFTER": WRITERS[writer],
           "GRADBOOK_FLUSH_SECONDS": "0.1", "GRADBOOK_MAX_STEPS": str(LONG)}
    proc = subprocess.Popen(gradbook("train", spec_path, "--quiet"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = Store(url=url)
    try:
        child = wait_for_progress(proc, store, db, writer, min_steps)
    except BaseException:
        proc.kill()
        store.close()
        raise
    return proc, store, env, child


def wait_for_progress(proc, store, db: Path, writer: str, min_steps: int, job_id: int | None = None):
    """Wait until the job has recorded ``min_steps`` steps and two more flushes have committed
    since (with a writer process: since that process opened the database); its pid (or None)."""
    child, counting_from, flushes, last = None, None, 0, None
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, f"gradbook ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no progress within 300 s"
        job = next((j for j in store.list_jobs() if job_id in (None, j["id"])), None)
        done = job["steps_done"] if job else 0
        if counting_from is None and done >= min_steps:
            if writer == "in the loop":
                counting_from = done
            else:
                child = next((c for c in children(proc.pid) if has_open(c, db)), None)
                counting_from = None if child is None else done
        if counting_from is not None and done > counting_from and done != last:
            flushes, last = flushes + 1, done
            if flushes >= 2:
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
    proc, store, env, child = start_training(tmp_path, writer, 300)
    resumed = None
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
        killed_at = job["steps_done"]
        assert job["status"] == "running" and 300 <= killed_at < LONG
        stored = [r["step"] for r in store.export_rows(job["id"])]
        assert stored == list(range(killed_at))  # contiguous, as far as the last flush
        checkpoint = store.last_checkpoint(job["id"])
        assert checkpoint is not None and checkpoint.step % 100 == 0 and checkpoint.step <= killed_at

        # the next start of any command marks it interrupted (its process is gone)
        listed = subprocess.run(gradbook("jobs", "--json"), cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)[0]["status"] == "interrupted"
        assert f"marked interrupted (their process is gone): jobs {job['id']}" in listed.stderr

        # resume it, let it run past the point of the kill, and stop it again (SIGTERM: interrupted)
        resumed = subprocess.Popen(gradbook("resume", job["id"], "--quiet"), cwd=tmp_path, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for_progress(resumed, store, tmp_path / "train.db", writer, killed_at + 100, job["id"])
        resumed.send_signal(signal.SIGTERM)
        assert resumed.wait(timeout=60) == 130, resumed.stderr.read()
        [job] = store.list_jobs()
        ran = job["steps_done"]
        assert job["status"] == "interrupted" and ran >= killed_at + 100

        # an uninterrupted run of those many steps, in this process: the same book, bit for bit
        straight = store.create_job("straight", spec(ran))
        assert run_job(store, straight).status == "succeeded"
        assert same_rows(list(store.export_rows(job["id"])), list(store.export_rows(straight)))
        for max_points in (37, 1000):  # buckets too: the rollups were recomputed at the truncation
            assert json.dumps(store.history(job["id"], max_points=max_points)) == \
                json.dumps(store.history(straight, max_points=max_points))
            assert json.dumps(store.gradients(job["id"], "w1", max_points=max_points)) == \
                json.dumps(store.gradients(straight, "w1", max_points=max_points))
        last_snapshot = (ran - 1) // 10 * 10
        for s in {0, max(0, checkpoint.step - 10), checkpoint.step, checkpoint.step + 10, last_snapshot}:
            a, b = store.step(job["id"], s), store.step(straight, s)
            assert "params" in a and "params" in b, (s, ran, checkpoint.step, sorted(a), sorted(b))
            for kind in ("params", "gradients"):
                assert all(np.array_equal(a[kind][n], b[kind][n]) for n in a[kind])
    finally:
        for p in (proc, resumed):
            if p is not None and p.poll() is None:
                p.kill()
        store.close()


@pytest.mark.parametrize("writer", WRITERS)
def test_sigterm_flushes_and_marks_the_job_interrupted(tmp_path, writer):
    proc, store, _, _ = start_training(tmp_path, writer, 100)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        stderr = proc.stderr.read()
        [job] = store.list_jobs()
        assert job["status"] == "interrupted"  # by the process itself, no recovery needed
        assert stderr.strip() == interrupted_message(job)
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


def interrupted_message(job: dict) -> str:
    job_id, step = job["id"], job["steps_done"]
    return f"job {job_id} interrupted at step {step:,}; resume with gradbook resume {job_id}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_group_during_a_resume_ends_it_with_one_message(tmp_path, sig):
    """A terminal's Ctrl-C (SIGINT) or `kill -TERM -PGID` reaches the writer process too, here while it
    is still starting: it must neither die of it nor say anything; the user reads one line."""
    proc, store, env, _ = start_training(tmp_path, "in the loop", 300)
    resumed = None
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        [job] = store.list_jobs()
        env = {**env, "GRADBOOK_WRITER_PROCESS_AFTER": "1e-9"}  # the writer process starts at once
        resumed = subprocess.Popen(gradbook("resume", job["id"], "--quiet"), cwd=tmp_path, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)  # its own group, as a shell's job is
        deadline = time.monotonic() + 300
        while not children(resumed.pid):  # the writer process has started (and is importing)
            assert resumed.poll() is None, f"gradbook resume ended early: {resumed.stderr.read()}"
            assert time.monotonic() < deadline, "no writer process within 300 s"
            time.sleep(0.005)
        os.killpg(resumed.pid, sig)
        assert resumed.wait(timeout=60) == 130
        stderr = resumed.stderr.read()
        [job] = store.list_jobs()
        assert job["status"] == "interrupted"
        assert stderr.strip() == interrupted_message(job), stderr
    finally:
        for p in (proc, resumed):
            if p is not None and p.poll() is None:
                p.kill()
        store.close()
