"""The job commands against a real server: `gradbook serve` in a subprocess on a free loopback port,
and every job command with --url (or GRADBOOK_URL) printing what it prints for the same job trained
in a local database, from a directory where it must not create one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from cli.main import app
from service import domain
from service.jobs import presets
from tests.cli.process import gradbook

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, "gradbook serve exited"
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return json.load(r)["executor"]["ready"] >= 1
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`gradbook serve` with one worker on its own database; its URL once its worker is ready."""
    workdir = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {**os.environ, "GRADBOOK_FLUSH_SECONDS": "0.05"}
    env.pop("GRADBOOK_API_TOKEN", None)
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            gradbook("serve", "--port", port, "--workers", 1, "--log-level", "warning",
                     "--database-url", f"sqlite:///{workdir / 'server.db'}"),
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a bound on a broken start, not a wait for time
        while not ready(url, process):
            assert time.monotonic() < deadline, (workdir / "server.log").read_text()
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()  # a graceful stop also ends its worker processes
        process.wait(60)


@pytest.fixture
def empty(tmp_path, monkeypatch):
    """Run in an empty directory with neither a database nor a server set in the environment."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in ("GRADBOOK_URL", "GRADBOOK_DATABASE_URL", "GRADBOOK_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return cwd


def run(*args, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_every_job_command_reads_the_server_as_it_reads_a_database(server, empty, tmp_path):
    local = ["--database-url", f"sqlite:///{tmp_path / 'local.db'}"]
    result = run("train", "--preset", "xor", "--json", "-q", "--url", server)
    assert result.exit_code == 0, result.output
    served = json.loads(result.stdout)
    assert served["status"] == "succeeded" and served["total_steps"] == served["steps_done"] == 200
    mine = json.loads(run("train", "--preset", "xor", "--json", "-q", *local).stdout)

    same = [("history", "{id}", "--format", "csv"),
            ("history", "{id}", "--start", 3, "--end", 9),
            ("gradients", "{id}", "--format", "csv", "--max-points", 7),
            ("gradients", "{id}", "--param", "b2", "--format", "json", "--end", 5),
            ("graph", "--job", "{id}", "--step", 50),
            ("graph", "--job", "{id}", "--step", 50, "--format", "dot"),
            ("graph", "--job", "{id}", "--step", 50, "--format", "json"),
            ("export", "{id}", "--format", "ndjson", "--start", 190)]
    for args in same:
        here = run(*[str(a).format(id=mine["id"]) for a in args], *local)
        there = run(*[str(a).format(id=served["id"]) for a in args], env={"GRADBOOK_URL": server})
        assert here.exit_code == there.exit_code == 0, (args, here.output, there.output)
        assert there.stdout == here.stdout, args

    there = json.loads(run("verify", served["id"], "--step", 7, "--json", "--url", server).stdout)
    here = json.loads(run("verify", mine["id"], "--step", 7, "--json", *local).stdout)
    timings = ("job_id", "backprop_seconds", "numerical_seconds")
    assert {k: v for k, v in there.items() if k not in timings} == \
        {k: v for k, v in here.items() if k not in timings}
    assert there["job_id"] == served["id"] and there["max_rel_error"] < 1e-6
    text = run("verify", served["id"], "--step", 7, env={"GRADBOOK_URL": server}).stdout
    assert f"job {served['id']} step 7: 17 parameters" in text and "largest relative error" in text

    shown = json.loads(run("show", served["id"], "--json", "--url", server).stdout)
    assert shown["id"] == served["id"] and shown["spec"]["name"] == "xor"
    listed = json.loads(run("jobs", "--json", "--url", server).stdout)
    assert served["id"] in [j["id"] for j in listed] and listed[0]["spec"] is not None
    assert "succeeded" in run("jobs", "--url", server).stdout

    assert list(empty.iterdir()) == []  # nothing read the (absent) local database, nor made one


def test_server_refusals_and_errors_are_usage_errors(server, empty):
    job = json.loads(run("submit", "--preset", "seed", "--wait", "--json", "-q", "--url", server).stdout)
    assert job["status"] == "succeeded"
    for args, message in [
        (["resume", job["id"]], f"server answered 409: job {job['id']} is succeeded; only interrupted jobs"),
        (["cancel", job["id"]], f"server answered 409: job {job['id']} is succeeded, a final state"),
        (["show", 999999], "server answered 404"),
        (["graph", "--job", job["id"], "--step", 5000], "server answered 404"),
        (["verify", 999999], "server answered 404"),
        (["gradients", job["id"], "--param", "w9"], "has no parameter 'w9'; it has w1, b1, w2, b2"),
        (["history", job["id"], "--start", 5, "--end", 2], "--start 5 is after --end 2"),
    ]:
        result = run(*args, "--url", server)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    result = run("jobs", "--url", "http://127.0.0.1:1")
    assert result.exit_code == 2 and "cannot reach the gradbook server" in result.stderr
    assert list(empty.iterdir()) == []


def state_of(server, job_id: int) -> str:
    return json.loads(run("show", job_id, "--json", "--url", server).stdout)["status"]


def test_delete_on_the_server(server, empty, tmp_path):
    job = json.loads(run("submit", "--preset", "seed", "--wait", "--json", "-q", "--url", server).stdout)
    result = run("delete", job["id"], 999999, "--url", server)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [f"deleted job {job['id']}"]
    assert "error: server answered 404: " in result.stderr and "Traceback" not in result.output
    assert run("show", job["id"], "--url", server).exit_code == 2

    spec = presets.get("seed")
    spec["steps"] = 1_000_000  # runs until cancelled
    (tmp_path / "long.json").write_text(json.dumps(spec))
    long = json.loads(run("submit", tmp_path / "long.json", "--json", "--url", server).stdout)
    deadline = time.monotonic() + 120  # a bound on a broken worker, not a wait for time
    while state_of(server, long["id"]) != "running":
        assert time.monotonic() < deadline and state_of(server, long["id"]) == "queued"
    result = run("delete", long["id"], "--json", "--url", server)
    assert result.exit_code == 1
    [answer] = json.loads(result.stdout)["jobs"]
    assert answer == {"id": long["id"], "deleted": False, "error": "server answered 409: "
                      + domain.refusal("delete", long["id"], "running")}
    assert run("cancel", long["id"], "--url", server).exit_code == 0
    assert list(empty.iterdir()) == []


def test_submit_and_follow(server, tmp_path):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"name": "from-cli", "model": {"layers": [{"units": 1}]},
                                     "data": {"dataset": "linear", "n": 8}, "loss": "mse",
                                     "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 200}))
    result = run("submit", spec_file, "--wait", "--json", "--url", server)
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["steps_done"] == 200 and job["name"] == "from-cli"
    assert f"job {job['id']} (from-cli) succeeded: 200 steps" in result.stderr

    result = run("submit", spec_file, "--name", "queued", "--url", server)
    assert result.exit_code == 0 and result.stdout.startswith("job ") and "(queued)" in result.stdout

    diverging = {"name": "diverge", "model": {"layers": [{"units": 1, "activation": "linear"}]},
                 "data": {"x": [[1000.0]], "y": [[1.0]]}, "optimizer": {"name": "sgd", "lr": 10.0},
                 "steps": 500}
    spec_file.write_text(json.dumps(diverging))
    result = run("train", spec_file, "-q", "--url", server)
    assert result.exit_code == 1 and "diverged at step" in result.stdout

    result = run("submit", "--preset", "nope", "--url", server)
    assert result.exit_code == 2 and "unknown preset 'nope'" in result.stderr
    spec_file.write_text('{"steps": NaN}')
    result = run("submit", spec_file, "--url", server)
    assert result.exit_code == 2 and "NaN" in result.stderr
    spec_file.write_text('{"steps": 3}')
    result = run("train", spec_file, "--url", server)
    assert result.exit_code == 2 and "server answered 422: model: " in result.stderr

    result = run("export", job["id"], "--end", 1, "--url", server)
    assert result.exit_code == 0 and result.stdout.splitlines()[0].startswith("step,loss,")
    assert len(result.stdout.splitlines()) == 3
    missing = tmp_path / "none.csv"
    result = run("export", 999999, "-o", missing, "--url", server)
    assert result.exit_code == 2 and "404" in result.stderr and not missing.exists()


def test_optimizers_and_datasets_from_the_server(server, empty, tmp_path):
    result = run("optimizers", "--json", "--url", server)
    assert result.exit_code == 0, result.output
    with urllib.request.urlopen(server + "/optimizers", timeout=30) as answer:
        assert json.loads(result.stdout) == json.load(answer)  # what REST answers, as it answers it
    assert run("optimizers", "--url", server).stdout == run("optimizers").stdout

    (tmp_path / "pairs.csv").write_text("x,y\n1,2\n2,4\n3,6\n")
    result = run("datasets", "upload", tmp_path / "pairs.csv", "--name", "pairs", "--json", "--url", server)
    assert result.exit_code == 0, result.output
    uploaded = json.loads(result.stdout)
    assert uploaded["name"] == "pairs" and uploaded["meta"]["rows"] == 3
    listed = json.loads(run("datasets", "--json", env={"GRADBOOK_URL": server}).stdout)
    assert uploaded["id"] in [d["id"] for d in listed]
    assert "pairs" in run("datasets", "--url", server).stdout

    (tmp_path / "bad.csv").write_text("x,y\n1,inf\n")
    result = run("datasets", "upload", tmp_path / "bad.csv", "--url", server)
    assert result.exit_code == 2 and "server answered 422: row 1 column 2: inf is not a finite number" \
        in result.stderr, result.output
    assert list(empty.iterdir()) == []


def test_submit_uploads_a_csv_spec_and_points_it_at_the_dataset(server, empty, tmp_path):
    (empty / "line.csv").write_text("x,y\n1,3\n2,5\n3,7\n")
    spec = {"name": "csv-job", "model": {"layers": [{"units": 1, "activation": "linear"}]},
            "data": {"csv": "line.csv"}, "optimizer": {"name": "sgd", "lr": 0.01}, "steps": 20}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = run("submit", tmp_path / "spec.json", "--wait", "--json", "-q", "--url", server)
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["steps_done"] == 20
    dataset_id = job["spec"]["data"]["dataset_id"]
    assert f"uploaded line.csv as dataset {dataset_id}" in result.stderr
    listed = json.loads(run("datasets", "--json", "--url", server).stdout)
    [dataset] = [d for d in listed if d["id"] == dataset_id]
    assert dataset["name"] == "line.csv" and dataset["meta"]["rows"] == 3

    spec["data"] = {"csv": "missing.csv"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = run("train", tmp_path / "spec.json", "--url", server)
    assert result.exit_code == 2 and "data.csv: cannot read 'missing.csv'" in result.stderr
    assert sorted(p.name for p in empty.iterdir()) == ["line.csv"]  # no database made here
