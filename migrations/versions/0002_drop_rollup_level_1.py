"""Rollup level 1 (blocks of 4 steps) is no longer stored: downsampled queries read raw rows where
they used it, and every flush writes about half as many values.

Downgrading recomputes level 1 from the raw rows, as the code of revision 0001 expects it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies (a migration must not change when the models do).
HISTORY_SERIES = ("loss", "lr", "grad_norm", "val_loss", "val_accuracy")
STAT_SERIES = ("norm", "mean", "std", "min", "max", "nonfinite")
TABLES = (("history_rollup", "history", [], HISTORY_SERIES),
          ("param_stats_rollup", "param_stats", ["param"], STAT_SERIES))


def upgrade() -> None:
    for rollup, _raw, _keys, _series in TABLES:
        op.execute(f"DELETE FROM {rollup} WHERE level = 1")


def downgrade() -> None:
    # Level 1 from raw rows as revision 0001 aggregated them: a NULL (NaN or not recorded) value
    # adds 0 to the sum and nothing to the count.
    for rollup, raw, keys, series in TABLES:
        values = [f"{s}_{a}" for s in series for a in ("min", "max", "sum", "cnt")]
        aggregates = [f"MIN({s}), MAX({s}), SUM(COALESCE({s}, 0.0)), COUNT({s})" for s in series]
        columns = ", ".join(["job_id", *keys, "level", "block", "step_first", "step_last", "n", *values])
        key_list = "".join(f"{k}, " for k in keys)
        op.execute(
            f"INSERT INTO {rollup} ({columns}) "
            f"SELECT job_id, {key_list}1, (step / 4) * 4, MIN(step), MAX(step), COUNT(*), "
            f"{', '.join(aggregates)} FROM {raw} GROUP BY job_id, {key_list}(step / 4) * 4"
        )
