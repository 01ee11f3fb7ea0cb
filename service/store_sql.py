"""Bulk inserts: Python rows built from NumPy columns, inserted with the driver's executemany."""

from __future__ import annotations

import numpy as np
from sqlalchemy import insert
from sqlalchemy.engine import Connection


def rows(*columns) -> list[tuple]:
    """Rows for executemany from columns: 1-d or 2-d arrays of equal length, or a scalar repeated.
    NaN becomes None (NULL) on every database.

    Filling an object array and calling ``tolist`` builds the Python rows in C, about twice as fast
    as a comprehension over zipped columns.
    """
    n = next(len(c) for c in columns if isinstance(c, np.ndarray))
    blocks = [c.reshape(n, -1) if isinstance(c, np.ndarray) else c for c in columns]
    width = sum(b.shape[1] if isinstance(b, np.ndarray) else 1 for b in blocks)
    cells = np.empty((n, width), dtype=object)
    at = 0
    for block in blocks:
        if not isinstance(block, np.ndarray):
            cells[:, at] = block
            at += 1
            continue
        view = cells[:, at : at + block.shape[1]]
        view[...] = block
        if block.dtype.kind == "f":
            nan = np.isnan(block)
            if nan.any():
                view[nan] = None
        at += block.shape[1]
    return list(map(tuple, cells.tolist()))


def executemany(conn: Connection, table, rows: list[tuple]) -> None:
    """Insert tuples in table column order with the driver's executemany (no per-row dicts)."""
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": None}.get(dialect.paramstyle)
    if marker is None:  # a driver with named parameters: let SQLAlchemy build them
        names = [c.name for c in table.columns]
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    columns = ", ".join(quote(c.name) for c in table.columns)
    marks = ", ".join([marker] * len(table.columns))
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})", rows)
