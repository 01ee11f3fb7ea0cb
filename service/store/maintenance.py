"""Returning the space deleted jobs leave, and measuring what each job keeps: functions over an Engine.

SQLite keeps freed pages inside its file. In incremental auto-vacuum mode it hands them back to the
file system with ``PRAGMA incremental_vacuum`` (:func:`reclaim`, run after deletes); a full
``VACUUM`` (:func:`vacuum`) rewrites the file and, the pragma set first, switches a database made
without that mode to it. Both end with a truncating WAL checkpoint, or the space would only move
from the database file to its log. On PostgreSQL, ``VACUUM`` makes dead rows' space reusable.

:func:`storage_stats` sizes each job by kind of data: snapshot and checkpoint arrays by their
payload (``LENGTH(data)``), the numeric tables by rows times bytes per row, which is the table's
measured size over its rows where the database tells it (SQLite's ``dbstat``, PostgreSQL's
``pg_total_relation_size``) and otherwise an estimate from the columns.
"""

from __future__ import annotations

import os
import time
from contextlib import closing

from sqlalchemy import Engine, Table, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.store.engine import reader
from service.store.schema import Base, History, Job, ParamStat, StepArray, history_rollup, param_stats_rollup

# Pages one incremental-vacuum transaction returns (16 MB at 4 KiB pages): a running job's writer
# waits for at most one such transaction, never for the whole reclaim.
RECLAIM_CHUNK_PAGES = 4_096
# A truncating checkpoint is refused while another checkpoint runs: tries, and the pause between.
TRUNCATE_ATTEMPTS = 40
TRUNCATE_RETRY_SECONDS = 0.05
# What a row of a numeric table takes when the database cannot measure it: 8 bytes per column and
# about 16 of record header and b-tree cell overhead. An estimate, and reported as one.
ESTIMATE_BYTES_PER_COLUMN = 8
ESTIMATE_ROW_OVERHEAD = 16

# Kinds of data a job keeps: the numeric tables counted by rows, the arrays by payload.
ROW_KINDS = {"history": (History.__table__,), "param_stats": (ParamStat.__table__,),
             "rollups": (history_rollup, param_stats_rollup)}
ARRAY_KINDS = {"snapshots": ("param", "gradient"), "checkpoints": ("checkpoint",)}
KINDS = ("history", "param_stats", "snapshots", "checkpoints", "rollups")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_path(engine: Engine) -> str | None:
    """The database file of a SQLite engine (None: in memory)."""
    database = make_url(engine.url).database
    return None if database in (None, "", ":memory:") else database


def auto_vacuum_mode(engine: Engine) -> str:
    """SQLite's auto_vacuum setting of this database: "none", "full" or "incremental"."""
    with closing(engine.raw_connection()) as raw:
        mode = raw.cursor().execute("PRAGMA auto_vacuum").fetchone()[0]
    return ("none", "full", "incremental")[mode]


def sizes(engine: Engine) -> dict:
    """How big the database is. SQLite: ``file_bytes`` (the database file on disk), ``wal_bytes``
    (its write-ahead log), ``free_bytes`` (freed pages inside the file, which a vacuum returns) and
    ``bytes`` (file and log); PostgreSQL: ``bytes`` (pg_database_size), the rest None."""
    if not is_sqlite(engine):
        with engine.connect() as conn:
            total = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        return {"bytes": int(total), "file_bytes": None, "wal_bytes": None, "free_bytes": None}
    with closing(engine.raw_connection()) as raw:
        cursor = raw.cursor()
        page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
    path = sqlite_path(engine)
    file_bytes = os.path.getsize(path) if path else pages * page_size
    wal_bytes = os.path.getsize(path + "-wal") if path and os.path.exists(path + "-wal") else 0
    return {"bytes": file_bytes + wal_bytes, "file_bytes": file_bytes, "wal_bytes": wal_bytes,
            "free_bytes": free * page_size}


def truncate_wal(cursor) -> None:
    """Copy the WAL into the database and empty it: only then does a shrunken database file shrink
    on disk, and the log give back what the vacuum wrote into it. Another checkpoint running (the
    store's checkpointer thread) makes it busy at once, so it is tried again, a bounded number of
    times; still busy, the log stays for a later checkpoint. Harmless in memory (no WAL)."""
    for _ in range(TRUNCATE_ATTEMPTS):
        busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return
        time.sleep(TRUNCATE_RETRY_SECONDS)


def reclaim(engine: Engine) -> int | None:
    """Return a SQLite database's free pages to the file system, a chunk per transaction; the bytes
    returned, or None when this database keeps them (not in incremental auto-vacuum mode: a
    :func:`vacuum` switches it) or is not SQLite (its own autovacuum makes the space reusable)."""
    if not is_sqlite(engine) or auto_vacuum_mode(engine) != "incremental":
        return None
    before = sizes(engine)
    with closing(engine.raw_connection()) as raw:
        cursor = raw.cursor()
        free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
        while free:
            # executescript steps the pragma to its end (a cursor's execute frees one page a step)
            raw.driver_connection.executescript(
                f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({RECLAIM_CHUNK_PAGES}); COMMIT;")
            left = cursor.execute("PRAGMA freelist_count").fetchone()[0]
            if left >= free:  # nothing more to give back
                break
            free = left
        truncate_wal(cursor)
    return max(0, before["bytes"] - sizes(engine)["bytes"])


def vacuum(engine: Engine) -> dict:
    """Rewrite the database without its free space; ``{"before": sizes, "after": sizes}``. On SQLite
    it also turns on incremental auto-vacuum, so that later deletes return their space themselves."""
    before = sizes(engine)
    if is_sqlite(engine):
        with closing(engine.raw_connection()) as raw:  # outside any transaction, as VACUUM must be
            cursor = raw.cursor()
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
            cursor.execute("VACUUM")
            truncate_wal(cursor)
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM"))
    return {"before": before, "after": sizes(engine)}


# --- what each job keeps ---------------------------------------------------------------------------------


def table_bytes(engine: Engine) -> tuple[dict[str, int] | None, str]:
    """Each table's bytes on disk, its indexes included, and how they were measured ("dbstat",
    "postgresql"); (None, "estimate") when this SQLite has no dbstat table."""
    with reader(engine).connect() as conn:
        if not is_sqlite(engine):
            names = list(Base.metadata.tables)
            size = func.pg_total_relation_size
            row = conn.execute(select(*[size(name) for name in names])).one()
            return {name: int(value) for name, value in zip(names, row, strict=True)}, "postgresql"
        try:
            rows = conn.execute(text(
                "SELECT COALESCE(s.tbl_name, d.name), SUM(d.pgsize) FROM dbstat AS d "
                "LEFT JOIN sqlite_schema AS s ON s.name = d.name GROUP BY 1")).all()
        except OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            return None, "estimate"
    return {name: int(total) for name, total in rows}, "dbstat"


def estimated_row_bytes(table: Table) -> int:
    return ESTIMATE_BYTES_PER_COLUMN * len(table.columns) + ESTIMATE_ROW_OVERHEAD


def count_by_job(conn) -> dict[tuple[str, str], dict[int, tuple[int, int]]]:
    """(kind of data, table) -> job id -> (rows, payload bytes): rows of the numeric tables
    (payload 0), and the step_arrays rows of each kind of array with their data's bytes."""
    counts: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
    for kind, kind_tables in ROW_KINDS.items():
        for table in kind_tables:
            q = select(table.c.job_id, func.count()).group_by(table.c.job_id)
            counts[(kind, table.name)] = {job_id: (n, 0) for job_id, n in conn.execute(q)}
    a = StepArray
    for kind, array_kinds in ARRAY_KINDS.items():
        q = (select(a.job_id, func.count(), func.sum(func.length(a.data))).where(a.kind.in_(array_kinds))
             .group_by(a.job_id))
        counts[(kind, a.__tablename__)] = {job_id: (n, int(payload or 0))
                                           for job_id, n, payload in conn.execute(q)}
    return counts


def row_overheads(counts: dict, measured: dict[str, int] | None) -> dict[str, float]:
    """Bytes each row of a table takes beyond its payload: measured, the table's size less its
    payload spread over its rows (so that the jobs' shares add up to the table); else estimated
    (arrays: their payload alone)."""
    rows: dict[str, int] = {}
    payload: dict[str, int] = {}
    for (_, table), by_job in counts.items():
        rows[table] = rows.get(table, 0) + sum(n for n, _ in by_job.values())
        payload[table] = payload.get(table, 0) + sum(p for _, p in by_job.values())
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    overhead = {}
    for name in rows:
        if measured is not None and rows[name]:
            overhead[name] = max(0.0, (measured.get(name, 0) - payload[name]) / rows[name])
        else:
            overhead[name] = 0.0 if name == StepArray.__tablename__ else estimated_row_bytes(tables[name])
    return overhead


def storage_stats(engine: Engine) -> dict:
    """Bytes per job and kind of data (``KINDS``), their totals, each table's size and the database's
    (:func:`sizes`). ``method`` says how rows were sized: "dbstat" or "postgresql" (each table's
    measured size shared among its rows, arrays also by payload), "estimate" (numeric rows from
    their columns, arrays by payload)."""
    measured, method = table_bytes(engine)
    with reader(engine).begin() as conn:  # one snapshot, without the write lock
        counts = count_by_job(conn)
        jobs = conn.execute(select(Job.id, Job.name, Job.status, Job.steps_done).order_by(Job.id)).all()
    overhead = row_overheads(counts, measured)
    out_jobs = []
    for job in jobs:
        sized = dict.fromkeys(KINDS, 0.0)
        for (kind, table), by_job in counts.items():
            n, payload = by_job.get(job.id, (0, 0))
            sized[kind] += payload + n * overhead[table]
        bytes_by_kind = {kind: round(sized[kind]) for kind in KINDS}
        out_jobs.append({"id": job.id, "name": job.name, "status": job.status, "steps": job.steps_done,
                         **bytes_by_kind, "total": sum(bytes_by_kind.values())})
    totals = {kind: sum(j[kind] for j in out_jobs) for kind in (*KINDS, "total")}
    return {"method": method, "database": sizes(engine), "tables": measured, "jobs": out_jobs,
            "totals": totals}
