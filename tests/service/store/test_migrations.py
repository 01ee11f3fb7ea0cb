"""The schema comes from Alembic only: empty -> head, models == migrated schema, a locked upgrade
that many processes can race, and DDL/queries that render for PostgreSQL too."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.dialects import postgresql

from service.jobs import presets
from service.store import Store
from service.store import buckets as buckets
from service.store import engine as db
from service.store import rollup as rollup
from service.store.schema import Base

TABLES = {
    "jobs", "job_events", "history", "param_stats", "history_rollup", "param_stats_rollup",
    "step_arrays", "checkpoints", "datasets", "alembic_version",
}


def test_upgrade_from_empty_to_head_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    head = db.head_revision()
    assert head is not None
    assert db.upgrade(url) == head
    assert db.upgrade(url) == head  # idempotent
    engine = db.make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            # the per-step tables are clustered on their keys
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'param_stats'").scalar()
            assert "WITHOUT ROWID" in ddl and "PRIMARY KEY (job_id, param, step)" in ddl
    finally:
        engine.dispose()


def _migrate(engine, url: str, revision: str, up: bool = False) -> None:
    with engine.begin() as conn:
        config = db.alembic_config(url)
        config.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(config, revision)


def _downgrade(engine, url: str, revision: str) -> None:
    _migrate(engine, url, revision)


def test_downgrade_to_base_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        _downgrade(engine, url, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    assert db.upgrade(url) == db.head_revision()


def test_revision_0002_drops_rollup_level_1_and_its_downgrade_recomputes_it(tmp_path):
    """Level 1 (4-step blocks) is not stored from 0002 on; downgrading to 0001 rebuilds it from the
    raw rows exactly as 0001's code aggregated them (NaN is NULL: no count, nothing added)."""
    url = f"sqlite:///{tmp_path / 'l1.db'}"
    store = Store(url)
    job = store.create_job("x", {})
    w = store.writer(job, ["w", "b"])
    rng = np.random.default_rng(3)
    stats = rng.standard_normal((30, 2, 6))
    stats[..., 5] = rng.integers(0, 3, (30, 2))
    stats[7, 1, 0] = np.nan
    for s in range(30):
        w.add_step(s, float(s), 0.1, 1.0, stats[s], val_loss=0.5 if s % 3 == 0 else None)
    w.flush()
    level_1 = "SELECT count(*) FROM param_stats_rollup WHERE level = 1"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql(level_1).scalar() == 0
    store.close()

    engine = db.make_engine(url)
    try:
        _downgrade(engine, url, "0001")
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT block, step_first, step_last, n, norm_min, norm_max, norm_sum, norm_cnt, "
                "nonfinite_sum FROM param_stats_rollup WHERE level = 1 AND param = 1 ORDER BY block").all()
            history = conn.exec_driver_sql(
                "SELECT block, loss_sum, val_loss_sum, val_loss_cnt FROM history_rollup "
                "WHERE level = 1 ORDER BY block").all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == list(range(0, 30, 4))
    for block, first, last, n, lo, hi, total, count, nonfinite in rows:
        norms = stats[block:block + 4, 1, 0]
        assert (first, last, n) == (block, min(block + 3, 29), len(norms))
        assert (lo, hi) == (np.nanmin(norms), np.nanmax(norms))
        assert total == pytest.approx(np.nansum(norms), rel=1e-15)
        assert count == np.count_nonzero(~np.isnan(norms))
        assert nonfinite == stats[block:block + 4, 1, 5].sum()
    for block, loss_sum, val_sum, val_count in history:
        steps = range(block, min(block + 4, 30))
        assert loss_sum == sum(steps)
        assert (val_sum, val_count) == (0.5 * sum(s % 3 == 0 for s in steps), sum(s % 3 == 0 for s in steps))
    assert db.upgrade(url) == db.head_revision()
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(level_1).scalar() == 0
    finally:
        engine.dispose()


def _step_arrays_ddl(engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'step_arrays'").scalar()


def test_revision_0004_moves_step_arrays_to_a_rowid_table_and_back_keeping_every_array(tmp_path):
    """Snapshots are blobs of up to megabytes: from 0004 on they live in an ordinary (rowid) table
    keyed by (job_id, step, kind, name); downgrading restores 0001's WITHOUT ROWID table. The arrays
    survive both ways bit for bit."""
    url = f"sqlite:///{tmp_path / 'arrays.db'}"
    store = Store(url)
    job = store.create_job("x", {})
    w = store.writer(job, ["w", "b"])
    grads = {"w": np.arange(6.0).reshape(2, 3) - 2.5, "b": np.array([np.nan, np.inf], dtype=np.float32)}
    params = {"w": np.full((2, 3), 0.25), "b": np.array([1.0, -1.0], dtype=np.float32)}
    w.add_step(0, 1.0, 0.1, 1.0, np.zeros((2, 6)))
    w.add_snapshot(0, grads, params)
    w.flush()
    store.close()

    def check(ddl_has_rowid: bool) -> None:
        engine = db.make_engine(url)
        try:
            ddl = _step_arrays_ddl(engine)
            assert ("WITHOUT ROWID" not in ddl) == ddl_has_rowid
            assert "PRIMARY KEY (job_id, step, kind, name)" in ddl
        finally:
            engine.dispose()

    check(ddl_has_rowid=True)
    engine = db.make_engine(url)
    try:
        _downgrade(engine, url, "0003")
    finally:
        engine.dispose()
    check(ddl_has_rowid=False)
    assert db.upgrade(url) == db.head_revision()
    check(ddl_has_rowid=True)
    store = Store(url)
    try:
        stored = store.step(job, 0)
    finally:
        store.close()
    for name in grads:
        np.testing.assert_array_equal(stored["gradients"][name], grads[name])
        assert stored["gradients"][name].dtype == grads[name].dtype
        np.testing.assert_array_equal(stored["params"][name], params[name])


def test_processes_racing_to_migrate_a_fresh_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = "import sys; from service.store.engine import upgrade; print(upgrade(sys.argv[1]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert {out.strip() for out, _ in results} == {db.head_revision()}
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_connections_are_set_up_for_concurrent_writers(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with store.engine.connect() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
        assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1,
                          "busy_timeout": db.BUSY_TIMEOUT_MS}
        statements = []
        from sqlalchemy import event

        event.listen(store.engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *a: statements.append(statement))
        store.heartbeat(store.create_job("x", {}))
        store.list_jobs()
        begins = [s for s in statements if s.startswith("BEGIN")]
        assert begins == ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE", "BEGIN"]  # writes immediate, reads deferred
    finally:
        store.close()


def test_database_url_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADBOOK_DATABASE_URL", raising=False)
    assert db.database_url() == "sqlite:///gradbook.db"
    monkeypatch.setenv("GRADBOOK_DATABASE_URL", "sqlite:///from-env.db")
    assert db.database_url() == "sqlite:///from-env.db"
    assert db.database_url("sqlite:///explicit.db") == "sqlite:///explicit.db"
    with pytest.raises(ValueError, match="database url"):
        db.database_url("not a url")
    monkeypatch.delenv("GRADBOOK_DATABASE_URL")
    monkeypatch.chdir(tmp_path)
    Store().close()  # the default lands in the working directory
    assert (tmp_path / "gradbook.db").exists()


def test_schema_and_queries_render_for_postgresql():
    buffer = io.StringIO()
    from alembic.config import Config

    config = Config(output_buffer=buffer)
    config.set_main_option("script_location", str(db.migrations_dir()))
    config.set_main_option("sqlalchemy.url", "postgresql://gradbook@localhost/gradbook")
    command.upgrade(config, "head", sql=True)
    ddl = buffer.getvalue()
    assert "CREATE TABLE param_stats" in ddl and "WITHOUT ROWID" not in ddl
    assert "TIMESTAMP WITH TIME ZONE" in ddl and "BYTEA" in ddl

    dialect = postgresql.dialect()
    plan = buckets.plan(0, 999_999, 1000)
    for st in (rollup.HISTORY, rollup.PARAM_STATS):
        sql = str(buckets.bucket_statement(st, tuple(s[0] for s in plan.segments)).compile(dialect=dialect))
        assert "GROUP BY" in sql and "LEFT OUTER JOIN" in sql and "ORDER BY b.s0" in sql
        for level in (rollup.LEVELS[0], rollup.LEVELS[-1]):
            remove, add = rollup.rebuild_statements(st, level)
            rendered = str(add.compile(dialect=dialect))
            # PostgreSQL requires the selected block expression to be the grouped one, verbatim
            select_part, group_part = rendered.split("GROUP BY")
            block = group_part.split(",")[-1].strip()
            assert block.endswith(f"/ {rollup.block_size(level)}) * {rollup.block_size(level)}")
            assert block in select_part


def test_revision_0005_backfills_total_steps_by_planning_each_spec(tmp_path):
    """Jobs submitted before 0005 get the total steps their spec plans to now: from ``steps``, from
    ``epochs`` times the batches of their data (an uploaded dataset read from the same database);
    a spec that no longer plans keeps NULL. Their history is untouched, also by the downgrade."""
    url = f"sqlite:///{tmp_path / 'total.db'}"
    engine = db.make_engine(url)
    try:
        _migrate(engine, url, "0004", up=True)
        epochs = {**presets.get("seed"), "steps": None, "epochs": 3, "batch_size": 4,
                  "data": {"x": [[float(i)] for i in range(10)], "y": [[1.0]] * 10}}
        uploaded = {**epochs, "data": {"dataset_id": 1}}
        csv = "x,y\n" + "".join(f"{i},1\n" for i in range(6))
        specs = {
            "steps": presets.get("seed"),
            "epochs": epochs,  # 3 epochs of ceil(10 / 4) batches
            "uploaded": uploaded,  # 3 epochs of ceil(6 / 4) batches
            "missing dataset": {**uploaded, "data": {"dataset_id": 7}},
            "not a spec": {},
            "CSV file gone": {**epochs, "data": {"csv": str(tmp_path / "gone.csv")}},
        }
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO datasets (id, name, content, sha256, meta, created_at) "
                              "VALUES (1, 'd', :content, 'x', '{\"targets\": 1}', '2026-01-01')"),
                         {"content": csv.encode()})
            for name, spec in specs.items():
                conn.execute(text("INSERT INTO jobs (name, status, spec, steps_done, created_at, updated_at) "
                                  "VALUES (:name, 'succeeded', :spec, 0, '2026-01-01', '2026-01-01')"),
                             {"name": name, "spec": json.dumps(spec)})
            conn.execute(text("INSERT INTO history (job_id, step, loss, nan_mask) VALUES (1, 0, 1.5, 0)"))
    finally:
        engine.dispose()
    assert db.upgrade(url) == db.head_revision()
    with Store(url) as store:
        totals = {job["name"]: job["total_steps"] for job in store.list_jobs()}
        assert store.history(1) == [{"step": 0, "loss": 1.5, "lr": None, "grad_norm": None,
                                     "val_loss": None, "val_accuracy": None}]
    assert totals == {"steps": 100, "epochs": 9, "uploaded": 6, "missing dataset": None, "not a spec": None,
                      "CSV file gone": None}
    engine = db.make_engine(url)
    try:
        _downgrade(engine, url, "0004")
        assert "total_steps" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM history").scalar() == 1
            assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == len(specs)
    finally:
        engine.dispose()
