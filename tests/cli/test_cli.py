"""The `gradbook` command line: outputs, exit codes (0 ok, 1 job failed, 2 usage error) and errors
that name the field at fault, never a traceback. In process through Typer's CliRunner."""

import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app

SEED_NODES = {  # the lecture: forward values and dJ/d(node)
    "t1": (2, 6), "z1": (2, 6), "a1": (2, 6), "t2": (6, 2), "z2": (7, 2), "a2": (7, 2), "J": (2, 1),
}


@pytest.fixture
def gb(tmp_path, monkeypatch):
    """Run `gradbook ARGS` against a fresh database; returns the click Result."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def run(*args, env_url=False):
        argv = [str(a) for a in args]
        env = {"GRADBOOK_DATABASE_URL": url} if env_url else {"GRADBOOK_DATABASE_URL": ""}
        if not env_url and argv and argv[0] != "db":
            argv += ["--database-url", url]
        elif not env_url:
            argv.insert(2, "--database-url")
            argv.insert(3, url)
        return runner.invoke(app, argv, env=env)

    return run


def write(tmp_path, name, doc) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_train_seed_preset_json_and_history(gb):
    result = gb("train", "--preset", "seed", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["steps_done"] == 100 and job["total_steps"] == 100
    assert job["name"] == "seed" and job["param_names"] == ["w1", "b1", "w2", "b2"]
    assert {"id", "created_at", "started_at", "finished_at", "last_loss", "error", "spec"} <= job.keys()

    result = gb("history", job["id"], "--format", "csv")
    assert result.exit_code == 0
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"step", "loss", "lr", "grad_norm"} <= set(table[0])
    assert [int(r["step"]) for r in table] == list(range(100))
    assert float(table[0]["loss"]) == 2.0 and float(table[0]["lr"]) == 0.1

    result = gb("history", job["id"], "--format", "json", "--start", 10, "--end", 19)
    assert [p["step"] for p in json.loads(result.stdout)] == list(range(10, 20))

    buckets = json.loads(gb("history", job["id"], "--format", "json", "--max-points", 10).stdout)
    assert 1 <= len(buckets) <= 10 and buckets[0]["loss"]["max"] >= 2.0
    text = gb("history", job["id"], "--format", "csv", "--max-points", 10).stdout
    table = list(csv.DictReader(io.StringIO(text)))
    assert {"step", "loss", "loss_min", "loss_max", "loss_last"} <= set(table[0])
    assert len(table) == len(buckets)
    assert [float(r["loss"]) for r in table] == [b["loss"]["mean"] for b in buckets]

    text = gb("history", job["id"], "--end", 2).stdout
    assert text.splitlines()[0].split()[:2] == ["step", "loss"] and "val_loss" not in text


def test_gradients_per_parameter(gb):
    job_id = json.loads(gb("train", "--preset", "seed", "--json", "-q").stdout)["id"]
    result = gb("gradients", job_id, "--param", "w2", "--format", "csv", "--end", 0)
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["param"] == "w2" and float(row["norm"]) == 4.0 and float(row["mean"]) == 4.0
    assert float(row["std"]) == 0.0 and int(row["nonfinite"]) == 0
    rows = json.loads(gb("gradients", job_id, "--format", "json", "--end", 0).stdout)
    assert {r["param"]: r["norm"] for r in rows} == {"w1": 6.0, "b1": 6.0, "w2": 4.0, "b2": 2.0}
    result = gb("gradients", job_id, "--param", "w9")
    assert result.exit_code == 2 and "has no parameter 'w9'; it has w1, b1, w2, b2" in result.stderr


def test_graph_of_the_seed_preset_shows_the_lecture(gb):
    result = gb("graph", "--preset", "seed")
    assert result.exit_code == 0
    seen = {}
    for line in result.stdout.splitlines()[2:]:
        cells = line.split()
        if cells[0] in SEED_NODES:
            seen[cells[0]] = (float(cells[-2]), float(cells[-1]))
    assert seen == SEED_NODES
    graph = json.loads(gb("graph", "--preset", "seed", "--format", "json").stdout)
    nodes = {n["name"]: (np.asarray(n["value"]).item(), np.asarray(n["grad"]).item()) for n in graph["nodes"]
             if n["name"] in SEED_NODES}
    assert nodes == SEED_NODES
    dot = gb("graph", "--preset", "seed", "--format", "dot").stdout
    assert dot.startswith("digraph") and "dJ/dw1 6" in dot


def test_graph_of_a_job_step_reproduces_its_recorded_loss(gb):
    job_id = json.loads(gb("train", "--preset", "xor", "--json", "-q").stdout)["id"]
    loss = json.loads(gb("history", job_id, "--format", "json", "--start", 50, "--end", 50).stdout)[0]["loss"]
    graph = json.loads(gb("graph", "--job", job_id, "--step", 50, "--format", "json").stdout)
    assert graph["nodes"][-1]["name"] == "J" and graph["nodes"][-1]["value"] == loss


def test_verify_compares_bumping_with_the_recorded_gradient(gb):
    job_id = json.loads(gb("train", "--preset", "xor", "--json", "-q").stdout)["id"]
    result = gb("verify", job_id, "--step", 7, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["step"] == 7 and report["n_params"] == 17 and report["forward_passes"] == 34
    assert report["max_rel_error"] < 1e-6 and report["recorded_vs_replayed"] == 0.0
    assert report["backprop_seconds"] > 0 and report["numerical_seconds"] > 0
    text = gb("verify", job_id, "--step", 7).stdout
    assert "largest relative error" in text and "numerical" in text
    result = gb("verify", job_id, "--step", 5000)
    assert result.exit_code == 2 and "no recorded step 5000" in result.stderr


def test_verify_replays_a_step_whose_snapshot_was_not_kept(gb, tmp_path):
    spec = tmp_path / "sparse.json"
    xor = next(p["spec"] for p in json.loads(gb("presets", "--json").stdout) if p["name"] == "xor")
    spec.write_text(json.dumps({**xor, "snapshot_every": 10}))
    job_id = json.loads(gb("train", str(spec), "--json", "-q").stdout)["id"]
    text = gb("verify", job_id, "--step", 7).stdout
    assert "replayed 7 steps from the initial parameters" in text
    assert "reproducing the recorded loss and gradient statistics exactly" in text
    assert "replayed" not in gb("verify", job_id, "--step", 10).stdout


def test_a_diverging_job_exits_1_with_its_error(gb, tmp_path):
    spec = {"model": {"layers": [{"units": 1, "activation": "linear"}], "init": {"w1": [[1.0]]}},
            "data": {"x": [[1.0]], "y": [[0.0]]}, "loss": "mse",
            "optimizer": {"name": "sgd", "lr": 3.0}, "steps": 1000}
    result = gb("train", write(tmp_path, "diverge.json", spec), "--json")
    assert result.exit_code == 1
    job = json.loads(result.stdout)
    assert job["status"] == "failed" and job["error"].startswith("diverged at step ")
    assert job["error"].endswith(": loss is inf") and job["last_loss"] is None


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ('{"x": NaN}', "NaN is not a number in JSON"),
    ("[1, 2]", "a job spec is a JSON object, got list"),
])
def test_unreadable_spec_files_are_usage_errors(gb, tmp_path, content, message):
    result = gb("train", write(tmp_path, "bad.json", content))
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.output


def test_invalid_specs_name_the_field_and_create_no_job(gb, tmp_path):
    spec = {"name": "seed",
            "model": {"layers": [{"units": 1}, {"units": 1}], "init": {"w1": [2.0, 1.0]}},
            "data": {"x": [[1.0]], "y": [[5.0]]}, "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 10}
    path = write(tmp_path, "bad.json", spec)
    result = gb("train", path)
    assert result.exit_code == 2, result.output
    expected = f"error: {path}: invalid job spec\n  model.init.w1: expected shape (1, 1), got (2,)"
    assert expected in result.stderr
    spec["optimizer"]["lr"] = -0.1
    spec["colour"] = "red"
    result = gb("train", write(tmp_path, "bad.json", spec))
    assert result.exit_code == 2, result.output
    assert "  optimizer.lr: SGD: lr must be a number in [0, inf), got -0.1\n" in result.stderr
    assert "  colour: unknown field\n" in result.stderr
    assert "Traceback" not in result.output
    result = gb("jobs", "--json")  # no job, not even a database
    assert result.exit_code == 2 and "no database at" in result.stderr
    assert not (tmp_path / "cli.db").exists()


def test_csv_data_errors_are_usage_errors(gb, tmp_path):
    data = write(tmp_path, "d.csv", "x,y\n1,5\n2,seven\n")
    spec = {"model": {"layers": [{"units": 1, "activation": "linear"}]}, "data": {"csv": data},
            "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 3}
    result = gb("train", write(tmp_path, "s.json", spec))
    assert result.exit_code == 2 and "data.csv: row 3 column 2: 'seven' is not a number" in result.stderr
    (tmp_path / "d.csv").write_text("x,y\n1,5\n2,7\n")
    assert gb("train", write(tmp_path, "s.json", spec), "-q").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["train"], "give a spec file or --preset NAME"),
    (["train", "--preset", "mnist"], "unknown preset 'mnist'; choose from seed, xor"),
    (["train", "missing.json"], "cannot read spec file 'missing.json'"),
    (["show", "41"], "no job 41 in this database"),
    (["history", "41"], "no job 41"),
    (["jobs", "--status", "done"], "--status must be one of queued, running"),
    (["resume", "41"], "no job 41"),
    (["graph"], "give --preset NAME or --job JOB"),
    (["graph", "--preset", "lenet"], "unknown preset 'lenet'; choose from seed, xor"),

    (["history", "1", "--start", "5", "--end", "2"], "--start 5 is after --end 2"),
])
def test_usage_errors_exit_2(gb, args, message):
    gb("train", "--preset", "seed", "-q")
    result = gb(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_epoch_based_jobs_show_their_total_steps(gb, tmp_path):
    spec = {"model": {"layers": [{"units": 1, "activation": "linear"}]},
            "data": {"dataset": "linear", "n": 10},
            "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 3, "batch_size": 4}
    job = json.loads(gb("train", write(tmp_path, "e.json", spec), "--json", "-q").stdout)
    assert job["total_steps"] == job["steps_done"] == 9  # 3 epochs of ceil(10 / 4) batches
    assert json.loads(gb("show", job["id"], "--json").stdout)["total_steps"] == 9
    assert json.loads(gb("jobs", "--json").stdout)[0]["total_steps"] == 9


@pytest.mark.parametrize("url, message", [
    ("::bad", "database url: '::bad' is not a valid SQLAlchemy URL"),
    ("nonsense://", "cannot open the database 'nonsense://': Can't load plugin"),
])
def test_unusable_database_urls_are_usage_errors(url, message):
    for command in (["jobs"], ["db", "upgrade"]):
        result = CliRunner().invoke(app, [*command, "--database-url", url])
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_a_database_that_cannot_be_created_is_a_usage_error():
    url = "sqlite:////no/such/directory/x.db"
    for command in (["train", "--preset", "seed", "-q"], ["db", "upgrade"]):
        result = CliRunner().invoke(app, [*command, "--database-url", url])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"cannot open the database '{url}'" in result.stderr


def test_only_interrupted_jobs_resume(gb):
    job_id = json.loads(gb("train", "--preset", "seed", "--json", "-q").stdout)["id"]
    result = gb("resume", job_id)
    assert result.exit_code == 2 and f"job {job_id} is succeeded; only interrupted" in result.stderr


def test_jobs_show_presets_and_the_database_url_from_the_environment(gb):
    assert gb("train", "--preset", "seed", "-q", "--name", "first", env_url=True).exit_code == 0
    jobs = json.loads(gb("jobs", "--json", env_url=True).stdout)
    assert [(j["name"], j["status"]) for j in jobs] == [("first", "succeeded")]
    shown = json.loads(gb("show", jobs[0]["id"], "--json").stdout)  # same database by --database-url
    assert shown["id"] == jobs[0]["id"] and shown["spec"]["name"] == "first"
    assert "status       succeeded" in gb("show", jobs[0]["id"]).stdout
    names = [p["name"] for p in json.loads(gb("presets", "--json").stdout)]
    assert names == ["seed", "xor", "moons", "spirals", "sine"]
    assert "seed" in gb("presets").stdout


def test_db_upgrade(gb):
    result = gb("db", "upgrade")
    assert result.exit_code == 0 and "up to date" in result.stdout


@pytest.mark.parametrize("args", [["jobs"], ["show", "1"], ["history", "1"], ["gradients", "1"],
                                  ["graph", "--job", "1"], ["verify", "1"], ["export", "1"],
                                  ["delete", "1"], ["db", "stats"], ["db", "vacuum"]])
def test_readers_never_create_a_database(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    for name in ("GRADBOOK_URL", "GRADBOOK_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, args)  # the default, ./gradbook.db
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"no database at {tmp_path / 'gradbook.db'} (sqlite:///gradbook.db)" in result.stderr
    assert "`gradbook train --preset seed`" in result.stderr and "`gradbook db upgrade`" in result.stderr
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = CliRunner().invoke(app, args, env={"GRADBOOK_DATABASE_URL": url})
    assert result.exit_code == 2 and f"no database at {tmp_path / 'elsewhere.db'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_queued_job_is_not_resumed_here(gb, tmp_path):
    from service.jobs import presets
    from service.store import Store

    gb("db", "upgrade")
    with Store(url=f"sqlite:///{tmp_path / 'cli.db'}") as store:
        job_id = store.create_job("waiting", presets.get("seed"))
    result = gb("resume", job_id)
    assert result.exit_code == 2, result.output
    assert f"job {job_id} is queued (it starts when its server does); only interrupted jobs" in result.stderr
    assert json.loads(gb("show", job_id, "--json").stdout)["status"] == "queued"
    assert gb("cancel", job_id).stdout == f"job {job_id} cancelled after 0 steps\n"
    result = gb("resume", job_id)
    assert result.exit_code == 2 and f"job {job_id} is cancelled; only interrupted jobs" in result.stderr
