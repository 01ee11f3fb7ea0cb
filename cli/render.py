"""Turning rows into the CLI's output formats: aligned text tables, CSV with a header, JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import sys

import numpy as np
import typer


def flatten(row: dict) -> dict:
    """A downsampled bucket's series ({"loss": {"min", "max", "mean", "last"}}) become columns
    "loss" (the bucket's mean, so a plot of step against loss reads the same raw or bucketed),
    "loss_min", "loss_max" and "loss_last"."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out[key] = value.get("mean")
            for sub, v in value.items():
                if sub != "mean":
                    out[f"{key}_{sub}"] = v
        else:
            out[key] = value
    return out


def jsonable(value):
    """JSON-safe values: NumPy scalars and arrays to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def dumps(value) -> str:
    return json.dumps(jsonable(value), indent=2, allow_nan=False)


def columns_of(rows: list[dict], first=("step",)) -> list[str]:
    cols: list[str] = [c for c in first if any(c in r for r in rows)]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return repr(float(value))  # round-trips exactly
    return str(value)


def to_csv(rows: list[dict], first=("step",)) -> str:
    rows = [flatten(r) for r in rows]
    cols = columns_of(rows, first)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([cell(r.get(c)) for c in cols])
    return buf.getvalue()


def short(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def to_table(rows: list[dict], first=("step",)) -> str:
    """Aligned columns for reading; columns with no value in any row (e.g. validation metrics of a
    job without validation) are left out."""
    rows = [flatten(r) for r in rows]
    cols = [c for c in columns_of(rows, first) if any(r.get(c) is not None for r in rows)]
    if not cols:
        return "(no rows)"
    body = [[short(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def print_json(value) -> None:
    """One JSON document on stdout (what --json promises)."""
    sys.stdout.write(dumps(value) + "\n")


def show_jobs(rows: list[dict], as_json: bool) -> None:
    """Jobs as `gradbook jobs` prints them: a table, or the JSON list."""
    if as_json:
        print_json(rows)
        return
    table = [{"id": r["id"], "name": r["name"], "status": r["status"], "steps": r["steps_done"],
              "last_loss": r["last_loss"], "created": (r["created_at"] or "")[:19]} for r in rows]
    typer.echo(to_table(table, first=("id",)) if table else "no jobs")


def show_job(view: dict, as_json: bool) -> None:
    """A job as `gradbook show` prints it: one field a line, or the JSON document."""
    if as_json:
        print_json(view)
        return
    for key in ("id", "name", "status", "steps_done", "total_steps", "last_loss", "created_at", "started_at",
                "finished_at", "error", "param_names"):
        if view.get(key) is not None:
            typer.echo(f"{key:12} {view[key]}")
    if view.get("spec") is not None:
        typer.echo("spec         " + json.dumps(view["spec"]))
