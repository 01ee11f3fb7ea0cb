"""A job's total steps are stored once, when it is submitted, so that showing its progress never
re-plans it (which loads its data: a 28 MB inline spec took seconds to list).

Existing jobs are backfilled by planning their specs as they are now; an uploaded dataset a spec
names is read from this database. A spec that no longer plans (its CSV file gone, a limit lowered
since, a dataset deleted) leaves NULL, which readers show as "unknown". Offline (``--sql``) there is
no data to plan: only the column is added.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _total_steps(doc: str, resolve) -> int | None:
    from service.jobs.plan import make_plan
    from service.jobs.spec import parse_spec

    try:
        return make_plan(parse_spec(json.loads(doc)), resolve).total_steps
    except ValueError:  # SpecError, DataError, bad JSON: the spec no longer plans
        return None


def _resolver(conn):
    """``resolve(dataset_id) -> (x, y)`` from this connection's datasets table, each parsed once."""
    from service.jobs.data import DataError, parse_csv

    parsed: dict = {}

    def resolve(dataset_id):
        loc = ("data", "dataset_id")
        if dataset_id not in parsed:
            row = conn.execute(sa.text("SELECT content, meta FROM datasets WHERE id = :id"),
                               {"id": int(dataset_id)}).first()
            if row is None:
                raise DataError(loc, f"no dataset {dataset_id}")
            targets = int(json.loads(row.meta).get("targets", 1))
            parsed[dataset_id] = parse_csv(bytes(row.content).decode("utf-8"), targets, loc)[:2]
        return parsed[dataset_id]

    return resolve


def upgrade() -> None:
    op.add_column("jobs", sa.Column("total_steps", sa.Integer(), nullable=True))
    if op.get_context().as_sql:
        return
    conn = op.get_bind()
    resolve = _resolver(conn)
    # One spec in memory at a time: a spec can be tens of megabytes.
    for job_id in conn.execute(sa.text("SELECT id FROM jobs ORDER BY id")).scalars().all():
        doc = conn.execute(sa.text("SELECT spec FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
        total = _total_steps(doc, resolve)
        if total is not None:
            conn.execute(sa.text("UPDATE jobs SET total_steps = :total WHERE id = :id"),
                         {"total": total, "id": job_id})


def downgrade() -> None:
    # Not a batch copy of the table: on SQLite, dropping jobs to recreate it would delete every
    # job's history through ON DELETE CASCADE. SQLite has DROP COLUMN in place since 3.35.
    op.drop_column("jobs", "total_steps")
