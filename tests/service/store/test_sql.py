"""Bulk inserts: the SQLite fast path and the portable path (what PostgreSQL runs) agree, also when
rows replace stored ones with the same primary key."""

import numpy as np
import pytest
from sqlalchemy import Column, Float, Integer, MetaData, Table, create_engine, select

from service.store.sql import executemany, portable_executemany, rows

meta = MetaData()
blocks = Table("blocks", meta, Column("job_id", Integer, primary_key=True),
               Column("block", Integer, primary_key=True), Column("total", Float))


@pytest.mark.parametrize("insert", [executemany, portable_executemany])
def test_rows_insert_and_replace_by_primary_key(insert):
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        insert(conn, blocks, [(1, 0, 1.5), (1, 16, 2.5), (2, 0, 3.5)])
        insert(conn, blocks, [(1, 16, 9.0), (1, 32, float("nan"))], replace=True)
        stored = conn.execute(select(blocks).order_by(blocks.c.job_id, blocks.c.block)).all()
    assert [tuple(r) for r in stored] == [(1, 0, 1.5), (1, 16, 9.0), (1, 32, None), (2, 0, 3.5)]
    with engine.begin() as conn, pytest.raises(Exception, match="UNIQUE"):
        insert(conn, blocks, [(2, 0, 1.0)])  # without replace a stored key is an error


def test_rows_from_numpy_columns_turn_nan_into_none():
    out = rows(7, np.array([1, 2]), np.array([[0.5, np.nan], [1.5, 2.5]]))
    assert out == [(7, 1, 0.5, None), (7, 2, 1.5, 2.5)]
