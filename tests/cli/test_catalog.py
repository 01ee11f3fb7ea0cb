"""`gradbook optimizers` and `gradbook datasets` (list, upload) on this machine; test_server.py runs
them against a server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("GRADBOOK_URL", "GRADBOOK_DATABASE_URL", "GRADBOOK_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return ["--database-url", f"sqlite:///{tmp_path / 'c.db'}"]


def test_optimizers_lists_hyperparameters_defaults_ranges_and_schedules(db, tmp_path):
    result = runner.invoke(app, ["optimizers", "--json"])
    assert result.exit_code == 0, result.output
    catalog = json.loads(result.stdout)
    adam = next(o for o in catalog["optimizers"] if o["name"] == "adam")
    lr = next(h for h in adam["hyperparameters"] if h["name"] == "lr")
    assert lr["default"] == 0.001 and lr["min"] == 0.0 and lr["allowed"] == "a number in [0, inf)"
    assert {"cosine", "one_cycle", "step"} <= {s["name"] for s in catalog["schedules"]}

    text = runner.invoke(app, ["optimizers"]).stdout
    assert text.startswith("adagrad: ") and "\nadam: Adam" in text
    assert any(line.split()[:2] == ["lr", "0.001"] and "a number in [0, inf)" in line
               for line in text.splitlines())
    assert "every optimizer also takes:" in text and "clip_grad_norm" in text
    assert "schedules (" in text and "  cosine: " in text
    assert list(tmp_path.iterdir()) == []  # the registry needs no database


def test_datasets_upload_list_and_train_on_one(db, tmp_path):
    (tmp_path / "line.csv").write_text("a,b,y\n1,2,3\n2,3,5\n3,4,7\n4,5,9\n")
    result = runner.invoke(app, ["datasets", "upload", "line.csv", *db])
    assert result.exit_code == 0, result.output
    assert result.stdout == ('dataset 1 (line.csv): 4 rows, 2 feature(s), 1 target(s); a spec uses it as '
                             '"data": {"dataset_id": 1}\n')
    result = runner.invoke(app, ["datasets", "upload", "line.csv", "--targets", "2", "--name", "two",
                                 "--json", *db])
    uploaded = json.loads(result.stdout)
    assert uploaded["id"] == 2 and uploaded["meta"]["targets"] == 2 and "content" not in uploaded

    listed = json.loads(runner.invoke(app, ["datasets", "--json", *db]).stdout)
    assert [(d["id"], d["name"], d["meta"]["rows"]) for d in listed] == [(2, "two", 4), (1, "line.csv", 4)]
    table = runner.invoke(app, ["datasets", "--limit", "1", *db]).stdout.splitlines()
    assert table[0].split() == ["id", "name", "rows", "features", "targets", "created"]
    assert len(table) == 3 and table[2].split()[:5] == ["2", "two", "4", "1", "2"]

    spec = {"model": {"layers": [{"units": 1, "activation": "linear"}]}, "data": {"dataset_id": 1},
            "optimizer": {"name": "sgd", "lr": 0.01}, "steps": 5}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = runner.invoke(app, ["train", "spec.json", "--json", "-q", *db])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps_done"] == 5


@pytest.mark.parametrize("content, message", [
    ("a,y\n1,nan\n", "bad.csv: row 1 column 2: nan is not a finite number"),
    ("a,y\n", "bad.csv: the file has a header but no data rows"),
    ("", "bad.csv: the CSV is empty"),
])
def test_a_bad_csv_is_a_usage_error_and_stores_nothing(db, tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    result = runner.invoke(app, ["datasets", "upload", "bad.csv", *db])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output
    assert json.loads(runner.invoke(app, ["datasets", "--json", *db]).stdout) == []


def test_a_missing_file_and_a_missing_database(db):
    result = runner.invoke(app, ["datasets", "upload", "none.csv", *db])
    assert result.exit_code == 2 and "FILE.csv: cannot read 'none.csv'" in result.stderr
    result = runner.invoke(app, ["datasets"])  # a reader: it creates no database
    assert result.exit_code == 2 and "no database at" in result.stderr
