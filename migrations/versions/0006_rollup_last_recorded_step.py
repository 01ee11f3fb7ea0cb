"""history_rollup records, per validation series, the last step of each block that recorded one, so a
downsampled bucket's ``last`` is that step's value (validation runs every K steps: the raw row at
the bucket's last step usually has none).

Existing rollups are backfilled: the first stored level from the raw rows, each coarser level from
the one below (the maximum over its blocks), as the writer aggregates them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copies (a migration must not change when the models do): each series and its nan_mask bit
# (bit i of history.nan_mask is HISTORY_SERIES[i]), the rollup's block size and stored levels.
SPARSE = {"val_loss": 1 << 3, "val_accuracy": 1 << 4}
BASE, FIRST_LEVEL, LEVELS = 4, 2, 9


def upgrade() -> None:
    for series in SPARSE:
        op.add_column("history_rollup", sa.Column(f"{series}_last_step", sa.Integer(), nullable=True))
    for series, bit in SPARSE.items():
        column = f"{series}_last_step"
        # A step recorded the series when it holds a value or a NaN (NULL with the series' bit set).
        op.execute(
            f"UPDATE history_rollup SET {column} = (SELECT MAX(h.step) FROM history h "
            f"WHERE h.job_id = history_rollup.job_id "
            f"AND h.step BETWEEN history_rollup.block AND history_rollup.block + {BASE**FIRST_LEVEL - 1} "
            f"AND (h.{series} IS NOT NULL OR (h.nan_mask & {bit}) <> 0)) WHERE level = {FIRST_LEVEL}"
        )
        for level in range(FIRST_LEVEL + 1, LEVELS + 1):
            op.execute(
                f"UPDATE history_rollup SET {column} = (SELECT MAX(c.{column}) FROM history_rollup c "
                f"WHERE c.job_id = history_rollup.job_id AND c.level = {level - 1} "
                f"AND c.block BETWEEN history_rollup.block AND history_rollup.block + {BASE**level - 1}) "
                f"WHERE level = {level}"
            )


def downgrade() -> None:
    # In place, as 0005 does: SQLite has DROP COLUMN since 3.35.
    for series in SPARSE:
        op.drop_column("history_rollup", f"{series}_last_step")
