"""The jobs themselves: `jobs` (list), `show`, `cancel`, `delete`, and the `presets` to train."""

from __future__ import annotations

from typing import Annotated

import typer

import service
from cli import render
from cli.backends import NotDeleted, open_backend
from cli.options import DatabaseUrl, JobArg, JsonFlag, Token, Url, UsageError, usage_errors


def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """List jobs, newest first."""
    with usage_errors():
        statuses = service.domain.JOB_STATUSES
        if status is not None and status not in statuses:
            raise UsageError(f"--status must be one of {', '.join(statuses)}, got {status!r}")
        with open_backend(url, token, database_url, read_only=True) as backend:
            # the table shows no spec, so none is read (one can be tens of megabytes)
            rows = backend.jobs(status, limit, offset, include_spec=as_json)
    render.show_jobs(rows, as_json)


def show(job_id: Annotated[int, typer.Argument(metavar="JOB")], as_json: JsonFlag = False,
         database_url: DatabaseUrl = None, url: Url = None, token: Token = None):
    """Show one job: status, progress, last loss, error, spec."""
    with usage_errors(), open_backend(url, token, database_url, read_only=True) as backend:
        view = backend.job(job_id)
    render.show_job(view, as_json)


def cancel(job_id: JobArg, as_json: JsonFlag = False, url: Url = None, token: Token = None,
           database_url: DatabaseUrl = None):
    """Cancel a queued, running or interrupted job; its history up to then is kept."""
    with usage_errors(), open_backend(url, token, database_url, read_only=False) as backend:
        view = backend.cancel(job_id)
    if as_json:
        render.print_json(view)
    else:
        typer.echo(f"job {view['id']} {view['status']} after {view['steps_done']:,} steps")


def delete(job_ids: Annotated[list[int], typer.Argument(metavar="JOB...", min=1)], as_json: JsonFlag = False,
           url: Url = None, token: Token = None, database_url: DatabaseUrl = None):
    """Delete finished jobs and all they recorded (cancel a running one first); a local SQLite
    database gives the space back to the file system. Exit code 1 if any job was not deleted."""
    results = []
    with usage_errors(), open_backend(url, token, database_url, read_only=True) as backend:
        for job_id in job_ids:  # one refusal does not stop the others
            try:
                backend.delete(job_id)
            except NotDeleted as e:
                results.append({"id": job_id, "deleted": False, "error": str(e)})
                if not as_json:
                    render.print_error(str(e))
                continue
            results.append({"id": job_id, "deleted": True})
            if not as_json:
                typer.echo(f"deleted job {job_id}")
        returned = backend.return_space() if any(r["deleted"] for r in results) else None
    if as_json:
        render.print_json({"jobs": results, "returned_bytes": returned})
    elif returned:
        render.err.print(f"returned {render.human_bytes(returned)} to the file system")
    if not all(r["deleted"] for r in results):
        raise typer.Exit(1)


def presets(as_json: JsonFlag = False, database_url: DatabaseUrl = None):
    """List the preset jobs (train one with `gradbook train --preset NAME`)."""
    items = service.presets.describe()
    if as_json:
        render.print_json(items)
        return
    width = max(len(p["name"]) for p in items)
    for p in items:
        typer.echo(f"{p['name'].ljust(width)}  {p['description']}")
