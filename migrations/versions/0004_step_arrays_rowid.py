"""step_arrays becomes an ordinary (rowid) table on SQLite. A WITHOUT ROWID table keeps each row
in its primary-key B-tree, which SQLite advises against for rows larger than a small fraction of a
page; snapshots and checkpoints are blobs of up to megabytes, and writing them there took about
seven times as long (a 100k-parameter snapshot: ~4.9 ms against ~0.7 ms). The key, (job_id, step,
kind, name), stays the primary key: an index on the rowid table.

Other databases have no such option: nothing changes there. Upgrading copies the table once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = "job_id, step, kind, name, dtype, shape, data"


def _rebuild(with_rowid: bool) -> None:
    """Recreate step_arrays (frozen copy of 0001's definition) with or without a rowid."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "_step_arrays_new",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("shape", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "step", "kind", "name", name="pk_step_arrays"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_step_arrays_job_id_jobs",
                                ondelete="CASCADE"),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(f"INSERT INTO _step_arrays_new ({COLUMNS}) SELECT {COLUMNS} FROM step_arrays "
               "ORDER BY job_id, step, kind, name")
    op.drop_table("step_arrays")
    op.rename_table("_step_arrays_new", "step_arrays")


def upgrade() -> None:
    _rebuild(with_rowid=True)


def downgrade() -> None:
    _rebuild(with_rowid=False)
