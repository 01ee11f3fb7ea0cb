"""The database schema as SQLAlchemy 2.x models.

Only Alembic migrations (migrations/versions/) create or change the schema; these models describe it
for queries, and a test checks that they match the migrated database exactly.

Non-finite values: SQLite cannot store NaN (it turns a bound NaN into NULL), so NaN is written as
NULL on every database, which keeps aggregates identical on SQLite and PostgreSQL (NULLs are
skipped, like ``np.nanmin``). Infinities are stored as they are. Where a column is optional (the
validation metrics) ``history.nan_mask`` tells a NaN apart from "not recorded"; every ``param_stats``
value column is always recorded, so there NULL always means NaN.

The ``*_rollup`` tables hold exact per-block aggregates (min, max, sum and count of every series)
at block sizes 4, 16, 64, ... so that a downsampled query over a long range scans a few thousand
block rows instead of every step (see service/store/rollup.py). For the series recorded at some
steps only (:data:`SPARSE_SERIES`) they also hold the last step that recorded one, where a bucket's
``last`` value is read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.domain import HISTORY_SERIES, STAT_SERIES

# Rollup block sizes are ROLLUP_BASE ** level for the stored levels ROLLUP_FIRST_LEVEL..ROLLUP_LEVELS
# (16 .. 262,144 steps). Level 1 (4 steps) is not stored: with four aggregates per series its rows
# would hold as many values as the raw rows they summarise, doubling what every flush writes, and
# a scan of at most 16 raw rows per bucket is as quick.
ROLLUP_BASE = 4
ROLLUP_FIRST_LEVEL = 2
ROLLUP_LEVELS = 9

# History series a step may leave unrecorded (NULL without its nan_mask bit): validation runs every
# K steps. Every other history series and every param_stats series is recorded at every step.
SPARSE_SERIES = ("val_loss", "val_accuracy")

# Constraint names are fixed so that migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _job_fk() -> ForeignKey:
    return ForeignKey("jobs.id", ondelete="CASCADE")


class Job(Base):
    __tablename__ = "jobs"
    # AUTOINCREMENT so that a deleted job's id is never handed out again.
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[str] = mapped_column(Text)  # the job spec as JSON text
    param_names: Mapped[str | None] = mapped_column(Text)  # JSON list; index i names param_stats.param i
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)  # from the plan at submission (0005)
    last_loss: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(300))  # "pid@hostname" of the running process
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobEvent(Base):
    """One status change of a job: when, from what, to what and why."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(_job_fk())
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(300))
    steps_done: Mapped[int | None] = mapped_column(Integer)  # the job's at the change (NULL before 0003)


class History(Base):
    """One row per recorded step; the primary key makes a step range a range scan."""

    __tablename__ = "history"
    __table_args__ = {"sqlite_with_rowid": False}

    job_id: Mapped[int] = mapped_column(_job_fk(), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    loss: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    # bit i set: HISTORY_SERIES[i] was NaN (stored as NULL); NULL without its bit: not recorded.
    nan_mask: Mapped[int] = mapped_column(SmallInteger, default=0)


class ParamStat(Base):
    """Gradient statistics of one parameter at one step, keyed (job, param, step)."""

    __tablename__ = "param_stats"
    __table_args__ = {"sqlite_with_rowid": False}

    job_id: Mapped[int] = mapped_column(_job_fk(), primary_key=True)
    param: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    norm: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    nonfinite: Mapped[int] = mapped_column(BigInteger)


class StepArray(Base):
    """A raw little-endian array: a gradient or parameter snapshot, or a checkpoint's array.

    ``dtype`` is NumPy's explicit-byte-order string (``<f8``, ``<f4``, ``<u4`` ...) and ``shape`` a
    JSON list; ``data`` is ``arr.tobytes()`` in C order. Never pickle. An ordinary (rowid) table, not
    clustered on its key like the per-step tables: SQLite writes rows of megabytes into a WITHOUT
    ROWID table several times slower (revision 0004).
    """

    __tablename__ = "step_arrays"

    job_id: Mapped[int] = mapped_column(_job_fk(), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # gradient | param | checkpoint
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[str] = mapped_column(String(200))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CheckpointRow(Base):
    """A checkpoint's JSON metadata; its arrays are step_arrays rows of kind 'checkpoint'."""

    __tablename__ = "checkpoints"
    __table_args__ = {"sqlite_with_rowid": False}

    job_id: Mapped[int] = mapped_column(_job_fk(), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    meta: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Dataset(Base):
    """An uploaded dataset, kept as the bytes that were uploaded (parsing is the caller's job)."""

    __tablename__ = "datasets"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    meta: Mapped[str] = mapped_column(Text)  # JSON object, e.g. rows and columns
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _rollup_table(name: str, keys: list[Column], series: tuple[str, ...],
                  sparse: tuple[str, ...] = ()) -> Table:
    """Per-block aggregates: ``block`` is the first step of the block (a multiple of its size);
    ``step_first``/``step_last``/``n`` describe the rows present; per series min, max, sum and the
    count of non-NaN values. A NULL ``<series>_sum`` means the sum is NaN (inf + -inf). Per
    ``sparse`` series, ``<series>_last_step``: the block's last step that recorded it, NaN included
    (NULL: none did; revision 0006)."""
    value_columns = []
    for s in series:
        value_columns += [
            Column(f"{s}_min", Float),
            Column(f"{s}_max", Float),
            Column(f"{s}_sum", Float),
            Column(f"{s}_cnt", Integer, nullable=False),
        ]
    return Table(
        name,
        Base.metadata,
        Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        *keys,
        Column("level", SmallInteger, primary_key=True, autoincrement=False),
        Column("block", Integer, primary_key=True, autoincrement=False),
        Column("step_first", Integer, nullable=False),
        Column("step_last", Integer, nullable=False),
        Column("n", Integer, nullable=False),
        *value_columns,
        *[Column(f"{s}_last_step", Integer) for s in sparse],
        sqlite_with_rowid=False,
    )


history_rollup = _rollup_table("history_rollup", [], HISTORY_SERIES, SPARSE_SERIES)
param_stats_rollup = _rollup_table(
    "param_stats_rollup",
    [Column("param", SmallInteger, primary_key=True, autoincrement=False)],
    STAT_SERIES,
)
