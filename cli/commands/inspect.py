"""Reading a job's book: `history`, `gradients`, `graph`, `verify` and `export`, from the local
database or a server (--url). None of them creates a database."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

import service
from cli import render
from cli.backends import RemoteError, open_backend
from cli.options import (
    DatabaseUrl,
    End,
    JobArg,
    JsonFlag,
    MaxPoints,
    RowFormat,
    Start,
    Token,
    Url,
    UsageError,
    check_range,
    preset_spec,
    usage_errors,
)

JobNumber = Annotated[int, typer.Argument(metavar="JOB")]
Format = Annotated[RowFormat, typer.Option("--format", help="table, csv or json.")]


class GraphFormat(StrEnum):
    text = "text"
    dot = "dot"
    json = "json"


class ExportFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"


def history(job_id: JobNumber, fmt: Format = RowFormat.table, start: Start = None, end: End = None,
            max_points: MaxPoints = 1000, database_url: DatabaseUrl = None, url: Url = None,
            token: Token = None):
    """Loss, learning rate, gradient norm (and validation metrics) per step."""
    with usage_errors():
        check_range(start, end)
        with open_backend(url, token, database_url, read_only=True) as backend:
            rows = backend.history(job_id, start, end, max_points)
    render.emit_rows(rows, fmt.value, first=("step", "loss"))


def gradients(
    job_id: JobNumber,
    param: Annotated[str | None, typer.Option(help="One parameter (default: all).")] = None,
    fmt: Format = RowFormat.table, start: Start = None, end: End = None, max_points: MaxPoints = 1000,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """Per-parameter gradient statistics per step: norm, mean, std, min, max, non-finite count."""
    with usage_errors():
        check_range(start, end)
        with open_backend(url, token, database_url, read_only=True) as backend:
            names = backend.job(job_id).get("param_names") or []
            if param is not None and param not in names:
                known = ", ".join(names) or "none yet"
                raise UsageError(f"job {job_id} has no parameter {param!r}; it has {known}")
            rows = [{"param": name, **row} for name in ([param] if param else names)
                    for row in backend.gradients(job_id, name, start, end, max_points)]
    render.emit_rows(rows, fmt.value, first=("param", "step"))


def graph(
    preset: Annotated[str | None, typer.Option(help="Graph of a preset's model at step 0.")] = None,
    job_id: Annotated[int | None, typer.Option("--job", help="Graph of a job's model at --step.")] = None,
    step: Annotated[int, typer.Option(min=0, help="Recorded step (one without a snapshot is replayed).")] = 0,
    fmt: Annotated[GraphFormat, typer.Option("--format", help="text, dot or json.")] = GraphFormat.text,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """The computation graph with every node's value and derivative (dJ/d node)."""
    with usage_errors():
        if (preset is None) == (job_id is None):
            raise UsageError("give --preset NAME or --job JOB (with --step S)")
        if preset is not None:  # computed here: a preset needs no database or server
            preset_spec(preset)  # a clear error for an unknown name
            g = service.replay.preset_graph(preset)
        else:
            with open_backend(url, token, database_url, read_only=True) as backend:
                g = backend.graph(job_id, step)
    if fmt is GraphFormat.json:
        sys.stdout.write(g.to_json() + "\n")
    elif fmt is GraphFormat.dot:
        typer.echo(g.dot())
    else:
        typer.echo(g.table())


def verify(
    job_id: JobNumber,
    step: Annotated[int, typer.Option(min=0, help="Recorded step (one without a snapshot is replayed).")] = 0,
    eps: Annotated[float, typer.Option(min=1e-12, help="Bump size.")] = 1e-6,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """Recompute a step's gradient by bumping each parameter and compare with the recorded backprop."""
    with usage_errors(), open_backend(url, token, database_url, read_only=True) as backend:
        report = backend.verify(job_id, step, eps)
    render.show_verify(report, as_json)


def export(
    job_id: JobArg,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or ndjson.")] = ExportFormat.csv,
    start: Start = None, end: End = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (default stdout).")]
    = None,
    url: Url = None, token: Token = None, database_url: DatabaseUrl = None,
):
    """Every recorded step with every parameter's gradient statistics, never downsampled."""
    with usage_errors():
        check_range(start, end)
        with open_backend(url, token, database_url, read_only=True) as backend:
            write_stream(backend.export(job_id, fmt.value, start, end), out)


def write_stream(chunks, out: Path | None) -> None:
    """Copy a stream of bytes to ``out`` or stdout; the first chunk is read before the file is
    opened, so a refused request (unknown job) leaves no empty file behind."""
    chunks = iter(chunks)
    first = next(chunks, b"")
    target = open(out, "wb") if out is not None else sys.stdout.buffer  # noqa: SIM115
    try:
        target.write(first)
        for chunk in chunks:
            target.write(chunk)
    except RemoteError as e:
        raise UsageError(f"the export broke off: {e.message}") from None
    finally:
        if out is not None:
            target.close()
        else:
            target.flush()
