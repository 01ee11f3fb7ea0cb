"""Initial schema: jobs and their events, per-step history and gradient statistics with rollups,
snapshot/checkpoint arrays, uploaded datasets.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies (a migration must not change when the models do).
HISTORY_SERIES = ("loss", "lr", "grad_norm", "val_loss", "val_accuracy")
STAT_SERIES = ("norm", "mean", "std", "min", "max", "nonfinite")


def _job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["job_id"], ["jobs.id"], name=f"fk_{table}_job_id_jobs", ondelete="CASCADE"
    )


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _rollup(name: str, keys: list[sa.Column], series: tuple[str, ...]) -> None:
    values = []
    for s in series:
        values += [
            sa.Column(f"{s}_min", sa.Float(), nullable=True),
            sa.Column(f"{s}_max", sa.Float(), nullable=True),
            sa.Column(f"{s}_sum", sa.Float(), nullable=True),
            sa.Column(f"{s}_cnt", sa.Integer(), nullable=False),
        ]
    key_names = ["job_id"] + [k.name for k in keys] + ["level", "block"]
    op.create_table(
        name,
        sa.Column("job_id", sa.Integer(), nullable=False),
        *keys,
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("step_first", sa.Integer(), nullable=False),
        sa.Column("step_last", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        *values,
        sa.PrimaryKeyConstraint(*key_names, name=f"pk_{name}"),
        _job_fk(name),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("param_names", sa.Text(), nullable=True),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("last_loss", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(300), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("updated_at", _tz(), nullable=False),
        sa.Column("started_at", _tz(), nullable=True),
        sa.Column("finished_at", _tz(), nullable=True),
        sa.Column("heartbeat_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("idempotency_key", name="uq_jobs_idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("at", _tz(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
        _job_fk("job_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])

    op.create_table(
        "history",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        *[sa.Column(s, sa.Float(), nullable=True) for s in HISTORY_SERIES],
        sa.Column("nan_mask", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "step", name="pk_history"),
        _job_fk("history"),
        sqlite_with_rowid=False,
    )

    op.create_table(
        "param_stats",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("param", sa.SmallInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        *[sa.Column(s, sa.Float(), nullable=True) for s in STAT_SERIES[:-1]],
        sa.Column("nonfinite", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "param", "step", name="pk_param_stats"),
        _job_fk("param_stats"),
        sqlite_with_rowid=False,
    )

    op.create_table(
        "step_arrays",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("shape", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "step", "kind", "name", name="pk_step_arrays"),
        _job_fk("step_arrays"),
        sqlite_with_rowid=False,
    )

    op.create_table(
        "checkpoints",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "step", name="pk_checkpoints"),
        _job_fk("checkpoints"),
        sqlite_with_rowid=False,
    )

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_datasets_sha256", "datasets", ["sha256"])

    _rollup("history_rollup", [], HISTORY_SERIES)
    _rollup(
        "param_stats_rollup",
        [sa.Column("param", sa.SmallInteger(), nullable=False)],
        STAT_SERIES,
    )


def downgrade() -> None:
    for table in (
        "param_stats_rollup",
        "history_rollup",
        "datasets",
        "checkpoints",
        "step_arrays",
        "param_stats",
        "history",
        "job_events",
        "jobs",
    ):
        op.drop_table(table)
