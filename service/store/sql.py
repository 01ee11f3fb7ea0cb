"""Bulk inserts: Python rows built from NumPy columns, inserted with the driver's executemany."""

from __future__ import annotations

from itertools import repeat

import numpy as np
from sqlalchemy import bindparam, delete, insert
from sqlalchemy.engine import Connection


def rows(*columns) -> list[tuple]:
    """Rows for executemany from columns: 1-d or 2-d arrays of equal length, or a scalar repeated.
    NaN becomes None (NULL) on every database.

    ``zip`` over per-column lists builds the row tuples in C, several times faster than a Python
    loop; only columns that hold a NaN pay for a pass replacing it.
    """
    n = next(len(c) for c in columns if isinstance(c, np.ndarray))
    lists = []
    for column in columns:
        if not isinstance(column, np.ndarray):
            lists.append(repeat(column, n))
            continue
        for col in column.reshape(n, -1).T:
            values = col.tolist()
            if col.dtype.kind == "f" and np.isnan(col).any():
                values = [None if v != v else v for v in values]
            lists.append(values)
    return list(zip(*lists, strict=False))  # repeat() columns are endless


def executemany(conn: Connection, table, rows: list[tuple], *, replace: bool = False) -> None:
    """Insert tuples given in table column order; with ``replace``, a row whose primary key is
    already stored replaces that row.

    SQLite: the driver's executemany on positional rows (no per-row dicts; in-process, so one
    call per row costs no round trip), ``INSERT OR REPLACE`` for ``replace``. Elsewhere
    SQLAlchemy's insert with its "insertmanyvalues" batching, which sends many rows per statement
    instead of a round trip per row, after deleting the rows to replace.
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name != "sqlite":
        portable_executemany(conn, table, rows, replace=replace)
        return
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.columns)
    marks = ", ".join(["?"] * len(table.columns))
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.exec_driver_sql(f"{verb} INTO {quote(table.name)} ({columns}) VALUES ({marks})", rows)


def portable_executemany(conn: Connection, table, rows: list[tuple], *, replace: bool = False) -> None:
    """:func:`executemany` through SQLAlchemy's insert, for any database."""
    names = [c.name for c in table.columns]
    dicts = [dict(zip(names, row, strict=True)) for row in rows]
    if replace:
        key = table.primary_key.columns
        conn.execute(delete(table).where(*[c == bindparam(c.name) for c in key]),
                     [{c.name: d[c.name] for c in key} for d in dicts])
    conn.execute(insert(table), dicts)
