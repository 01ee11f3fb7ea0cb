"""The server-side CLI commands without a server: `serve` hands uvicorn the configured app, `cancel`
and `export` work on the local database, the client refuses bad URLs and parses SSE as specified."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from cli.backends import Client, RemoteError, parse_sse
from cli.main import app as cli
from service.jobs import presets
from service.runtime.runner import run_job
from service.store import Store

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradbook.db'}"
    with Store(url=url) as store:
        yield url, store


def trained(store, steps=4) -> int:
    doc = presets.get("seed")
    doc["steps"] = steps
    job = store.create_job("seed", doc)
    run_job(store, job)
    return job


def test_serve_runs_uvicorn_with_the_settings(monkeypatch, tmp_path):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setenv("GRADBOOK_API_TOKEN", "t")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    r = runner.invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "9123", "--workers", "3",
                            "--database-url", url])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "0.0.0.0" and seen["port"] == 9123
    settings = seen["app"].state.settings
    assert settings.workers == 3 and settings.database_url == url and settings.api_token == "t"
    assert "bearer token required" in r.stderr

    monkeypatch.setenv("GRADBOOK_EXECUTOR", "cluster")
    r = runner.invoke(cli, ["serve"])
    assert r.exit_code == 2 and "GRADBOOK_EXECUTOR" in r.stderr


def test_submit_needs_a_server(monkeypatch, tmp_path):
    monkeypatch.delenv("GRADBOOK_URL", raising=False)
    r = runner.invoke(cli, ["submit", "--preset", "seed"])
    assert r.exit_code == 2 and "--url" in r.stderr
    r = runner.invoke(cli, ["submit", "--url", "ftp://x"])
    assert r.exit_code == 2


def test_local_cancel(db):
    url, store = db
    job = store.create_job("waiting", presets.get("seed"))
    r = runner.invoke(cli, ["cancel", str(job), "--json", "--database-url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "cancelled"
    assert store.job_events(job)[-1]["reason"] == "cancelled from the command line"
    r = runner.invoke(cli, ["cancel", str(job), "--database-url", url])
    assert r.exit_code == 2 and "final state" in r.stderr
    r = runner.invoke(cli, ["cancel", "999", "--database-url", url])
    assert r.exit_code == 2 and "no job 999" in r.stderr


def test_local_export_csv_and_ndjson(db, tmp_path):
    url, store = db
    job = trained(store, steps=4)
    r = runner.invoke(cli, ["export", str(job), "--database-url", url])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [int(row["step"]) for row in rows] == [0, 1, 2, 3]
    assert float(rows[0]["loss"]) == 2.0 and float(rows[0]["w1_norm"]) == 6.0
    out = tmp_path / "h.ndjson"
    r = runner.invoke(cli, ["export", str(job), "--format", "ndjson", "--start", "2", "-o", str(out),
                            "--database-url", url])
    assert r.exit_code == 0
    assert [json.loads(line)["step"] for line in out.read_text().splitlines()] == [2, 3]
    missing = tmp_path / "none.csv"
    r = runner.invoke(cli, ["export", "999", "-o", str(missing), "--database-url", url])
    assert r.exit_code == 2 and not missing.exists()
    r = runner.invoke(cli, ["export", str(job), "--start", "3", "--end", "1", "--database-url", url])
    assert r.exit_code == 2


def test_client_refuses_urls_it_cannot_use():
    for url in ("localhost:8000", "ftp://host", "http://"):
        with pytest.raises(RemoteError) as e:
            Client(url)
        assert e.value.status == 0 and "--url" in e.value.message
    with pytest.raises(RemoteError) as e:
        Client("http://127.0.0.1:1").health()
    assert e.value.status == 0 and "cannot reach" in e.value.message


def test_sse_parser_follows_the_format():
    stream = [b"retry: 1000\n", b"\n", b": keep-alive\n", b"\n",
              b"id: 7\n", b"event: step\n", b'data: {"step": 7,\n', b'data: "loss": 1.5}\n', b"\n",
              b"event: end\r\n", b'data:{"status": "succeeded"}\r\n', b"\r\n"]
    events = list(parse_sse(stream))
    assert [(e.event, e.id, e.data) for e in events] == [
        ("step", "7", {"step": 7, "loss": 1.5}), ("end", None, {"status": "succeeded"})]
