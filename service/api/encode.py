"""JSON, CSV and NDJSON in and out, the same for the REST API and the CLI (no FastAPI needed).

JSON has no NaN or Infinity: what gradbook reads refuses them (Python's parser would accept them),
and what it writes turns non-finite floats into null (a diverged loss, a gradient entry that
overflowed). The history keeps them, and CSV spells them out (nan, inf, -inf).
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

EXPORT_BATCH = 500  # rows per chunk of a streamed export


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON; every number must be finite")


def loads(text: str):
    """A JSON document, refusing NaN and Infinity. Raises json.JSONDecodeError for malformed text
    and ValueError for a non-finite number (or an integer too long for Python's parser)."""
    return json.loads(text, parse_constant=_refuse_constant)


def finite(value):
    """Non-finite floats to None, NumPy to Python, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return array_list(value)
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


def array_list(a: np.ndarray):
    """Nested lists of an array, non-finite entries as None."""
    a = np.asarray(a)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        out = a.astype(object)
        out[~np.isfinite(a)] = None
        return out.tolist()
    return a.tolist()


def dumps(content) -> bytes:
    """Compact JSON; the common all-finite case costs one ``json.dumps``."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except TypeError:  # NumPy values or datetimes that the fast path cannot write
        from fastapi.encoders import jsonable_encoder

        numpy = {np.ndarray: array_list, np.generic: lambda v: finite(v.item())}
        text = json.dumps(finite(jsonable_encoder(content, custom_encoder=numpy)), ensure_ascii=False,
                          allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly; nan, inf and -inf spelled out
    return str(value)


def csv_chunks(columns: list[str], rows):
    """``rows`` (dicts) as CSV with a header row, in chunks of bytes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([csv_cell(row[c]) for c in columns])
        n += 1
        if n % EXPORT_BATCH == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def ndjson_chunks(rows):
    """``rows`` as one JSON object per line (non-finite values as null), in chunks of bytes."""
    lines = []
    for row in rows:
        try:
            lines.append(json.dumps(row, allow_nan=False, separators=(",", ":")))
        except ValueError:
            lines.append(dumps(row).decode())
        if len(lines) == EXPORT_BATCH:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()
