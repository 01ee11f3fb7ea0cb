"""`gradbook serve`, `gradbook submit`, and the CLI's client mode against a running server.

Wiring into cli/main.py is one line, ``serve_commands.register(app)``: it adds ``serve``,
``submit``, and - unless main.py already has commands of those names - ``cancel`` and ``export``
(both work on the local database, or on a server with --url). The other commands that main.py owns
(jobs, show, resume, history, gradients) dispatch to the ``remote_*`` functions here when they are
given ``--url`` (the ``Url`` and ``Token`` option types below, GRADBOOK_URL / GRADBOOK_API_TOKEN).

Exit codes as everywhere in the CLI: 0 success, 1 the job did not succeed (``submit --wait``),
2 usage error (bad option or spec, unknown job, a 4xx from the server, an unreachable server).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli import render
from cli.common import DatabaseUrl, JobArg, JsonFlag, RowFormat, Token, Url, err, fail
from cli.remote import Client, RemoteError
from service.api.encode import loads


class ExportFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"


def client(url: str, token: str | None) -> Client:
    try:
        return Client(url, token)
    except RemoteError as e:
        fail(e.message)


def call(fn, *args, **kwargs):
    """Run a client call; a server error or an unreachable server is one line on stderr, exit 2."""
    try:
        return fn(*args, **kwargs)
    except RemoteError as e:
        fail(f"{e.message}" if e.status == 0 else f"server answered {e.status}: {e.message}")


# --- serve -----------------------------------------------------------------------------------------------


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (GRADBOOK_HOST; default "
                                                  "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (GRADBOOK_PORT; default "
                                                                    "8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Training worker processes (GRADBOOK_WORKERS; "
                                                            "default one per core).")] = None,
    database_url: DatabaseUrl = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
):
    """Run the REST training service (FastAPI on uvicorn) on the same database the CLI uses."""
    import uvicorn

    from service.api.app import create_app
    from service.config import ServerSettings

    try:
        settings = ServerSettings.from_env(host=host, port=port, workers=workers, database_url=database_url)
    except ValueError as e:
        fail(str(e))
    token_note = ("bearer token required" if settings.api_token
                  else "no token (set GRADBOOK_API_TOKEN to require one)")
    err.print(f"gradbook serving on http://{settings.host}:{settings.port} with {settings.workers} "
              f"worker(s); {token_note}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)


# --- submit ----------------------------------------------------------------------------------------------


def read_spec(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        fail(f"cannot read spec file {str(path)!r}: {e.strerror or e}")
    try:
        return loads(text)
    except json.JSONDecodeError as e:
        fail(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
    except ValueError as e:
        fail(f"{path}: {e}")


class LiveBar:
    """A rich progress bar on stderr fed by the job's event stream: step, loss, elapsed, ETA."""

    def __init__(self, job: dict, enabled: bool):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("step {task.completed:,.0f}/{task.fields[total_text]}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, disable=not enabled)
        total = job.get("total_steps")
        self.task = self.progress.add_task(f"job {job['id']} {job['name']}", total=total, loss="-",
                                           status=job["status"], total_text=f"{total:,}" if total else "?")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def update(self, event) -> None:
        data = event.data
        if event.event == "step":
            loss = data.get("loss")
            self.progress.update(self.task, completed=data["step"] + 1,
                                 loss="-" if loss is None else f"{loss:.6g}")
        elif event.event in ("status", "end"):
            status = data.get("status") or data.get("to_status")
            fields = {"status": status}
            if data.get("total_steps"):
                fields.update(total=data["total_steps"], total_text=f"{data['total_steps']:,}")
            if data.get("steps_done") is not None:
                fields["completed"] = data["steps_done"]
            self.progress.update(self.task, **fields)


def watch(c: Client, job: dict, show_bar: bool) -> dict:
    """Follow the job's events until it ends; the job as it ended."""
    final = job
    with LiveBar(job, show_bar) as bar:
        for event in call(c.events, job["id"]):
            bar.update(event)
            if event.event == "end":
                final = event.data
    if final.get("status") == "deleted":
        fail(f"job {job['id']} was deleted while it was watched")
    return call(c.job, job["id"])


def submit(
    spec_file: Annotated[Path | None, typer.Argument(metavar="[SPEC.json]", help="Job spec file.",
                                                     show_default=False)] = None,
    preset: Annotated[str | None, typer.Option(help="Submit a preset (see `gradbook presets`).")] = None,
    name: Annotated[str | None, typer.Option(help="Override the job name.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a live progress bar until it "
                                                      "ends; exit 1 unless it succeeded.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonFlag = False,
    url: Url = None,
    token: Token = None,
):
    """Submit a job to a gradbook server (--url or GRADBOOK_URL)."""
    if url is None:
        fail("submit needs a server: give --url http://host:port or set GRADBOOK_URL "
             "(`gradbook train` runs a job locally)")
    if (spec_file is None) == (preset is None):
        fail("give a spec file or --preset NAME (not both)")
    if preset is not None:
        from service.jobs import presets as catalog

        try:
            doc = catalog.get(preset)
        except KeyError as e:
            fail(e.args[0])
    else:
        doc = read_spec(spec_file)
    if name is not None and isinstance(doc, dict):
        doc["name"] = name
    c = client(url, token)
    job = call(c.submit, doc)
    if not wait:
        if as_json:
            render.print_json(job)
        else:
            typer.echo(f"job {job['id']} ({job['name']}) {job['status']}")
        return
    err.print(f"job {job['id']} ({job['name']}) submitted to {c.base}")
    job = watch(c, job, show_bar=not quiet)
    summary = f"job {job['id']} ({job['name']}) {job['status']}: {job['steps_done']:,} steps"
    if job.get("last_loss") is not None:
        summary += f", last loss {job['last_loss']:.6g}"
    if job.get("error"):
        summary += f"\n  {job['error']}"
    if as_json:
        err.print(summary)
        render.print_json(job)
    else:
        typer.echo(summary)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


# --- client mode of the job commands ------------------------------------------------------------------


def remote_jobs(url: str, token: str | None = None, *, status: str | None = None, limit: int = 100,
                offset: int = 0, as_json: bool = False) -> None:
    page = call(client(url, token).jobs, status=status, limit=limit, offset=offset)
    rows = page["jobs"]
    render.show_jobs(rows, as_json)


def remote_show(url: str, job_id: int, token: str | None = None, *, as_json: bool = False) -> None:
    render.show_job(call(client(url, token).job, job_id), as_json)


def remote_cancel(url: str, job_id: int, token: str | None = None, *, as_json: bool = False) -> None:
    view = call(client(url, token).cancel, job_id)
    if as_json:
        render.print_json(view)
    else:
        typer.echo(f"job {view['id']} {view['status']} after {view['steps_done']:,} steps")


def remote_resume(url: str, job_id: int, token: str | None = None, *, as_json: bool = False,
                  wait: bool = True, quiet: bool = False) -> None:
    """Resume on the server; with ``wait`` follow it like `submit --wait` (exit 1 unless it succeeds)."""
    c = client(url, token)
    job = call(c.resume, job_id)
    if wait:
        job = watch(c, job, show_bar=not quiet)
    if as_json:
        render.print_json(job)
    else:
        typer.echo(f"job {job['id']} ({job['name']}) {job['status']}: {job['steps_done']:,} steps")
    if wait and job["status"] != "succeeded":
        raise typer.Exit(1)


def _emit(rows: list[dict], fmt: str, first) -> None:
    fmt = RowFormat(fmt)
    if fmt is RowFormat.json:
        render.print_json(rows)
    elif fmt is RowFormat.csv:
        sys.stdout.write(render.to_csv(rows, first=first))
    else:
        typer.echo(render.to_table(rows, first=first) if rows else "no steps recorded")


def remote_history(url: str, job_id: int, token: str | None = None, *, fmt: str = "table",
                   start: int | None = None, end: int | None = None, max_points: int = 1000) -> None:
    body = call(client(url, token).history, job_id, start=start, end=end, max_points=max_points)
    _emit(body["points"], fmt, first=("step", "loss"))


def remote_gradients(url: str, job_id: int, token: str | None = None, *, param: str | None = None,
                     fmt: str = "table", start: int | None = None, end: int | None = None,
                     max_points: int = 1000) -> None:
    """One parameter's statistics, or every parameter's (in the job's order) without ``param``."""
    c = client(url, token)
    names = [param] if param else (call(c.job, job_id).get("param_names") or [])
    rows = []
    for name in names:
        body = call(c.gradients, job_id, name, start=start, end=end, max_points=max_points)
        rows += [{"param": name, **p} for p in body["points"]]
    _emit(rows, fmt, first=("param", "step"))


def remote_export(url: str, job_id: int, token: str | None = None, *, fmt: str = "csv",
                  start: int | None = None, end: int | None = None, out: Path | None = None) -> None:
    chunks = call(client(url, token).export, job_id, fmt=str(fmt), start=start, end=end)
    _write_stream(chunks, out)


def _write_stream(chunks, out: Path | None) -> None:
    """Copy a stream of bytes to ``out`` or stdout; the first chunk is read before the file is
    opened, so a refused request (unknown job) leaves no empty file behind."""
    chunks = iter(chunks)
    try:
        first = next(chunks, b"")
    except RemoteError as e:
        fail(e.message if e.status == 0 else f"server answered {e.status}: {e.message}")
    target = open(out, "wb") if out is not None else sys.stdout.buffer  # noqa: SIM115
    try:
        target.write(first)
        for chunk in chunks:
            target.write(chunk)
    except RemoteError as e:
        fail(f"the export broke off: {e.message}")
    finally:
        if out is not None:
            target.close()
        else:
            target.flush()


# --- cancel and export: local database or server -------------------------------------------------------


def cancel(job_id: JobArg, as_json: JsonFlag = False, url: Url = None, token: Token = None,
           database_url: DatabaseUrl = None):
    """Cancel a queued, running or interrupted job; its history up to then is kept."""
    if url is not None:
        remote_cancel(url, job_id, token, as_json=as_json)
        return
    from service.domain import TERMINAL
    from service.jobs.spec import job_view
    from service.store.errors import StoreError

    store = _open_local(database_url)
    job = store.get_job(job_id)
    if job is None:
        fail(f"no job {job_id} in this database")
    if job["status"] in TERMINAL:
        fail(f"job {job_id} is {job['status']}, a final state; only queued, running or interrupted jobs "
             "can be cancelled")
    try:
        # A trainer running it (here or in a server's worker) sees the state at its next flush and stops.
        store.transition(job_id, "cancelled", reason="cancelled from the command line")
    except StoreError as e:
        fail(str(e))
    view = job_view(store.get_job(job_id))
    if as_json:
        render.print_json(view)
    else:
        typer.echo(f"job {job_id} cancelled after {view['steps_done']:,} steps")


def export(
    job_id: JobArg,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or ndjson.")] = ExportFormat.csv,
    start: Annotated[int | None, typer.Option(min=0, help="First step (inclusive).")] = None,
    end: Annotated[int | None, typer.Option(min=0, help="Last step (inclusive).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (default stdout).")]
    = None,
    url: Url = None, token: Token = None, database_url: DatabaseUrl = None,
):
    """Every recorded step with every parameter's gradient statistics, never downsampled."""
    if start is not None and end is not None and start > end:
        fail(f"--start {start} is after --end {end}")
    if url is not None:
        remote_export(url, job_id, token, fmt=fmt.value, start=start, end=end, out=out)
        return
    store = _open_local(database_url)
    if store.get_job(job_id) is None:
        fail(f"no job {job_id} in this database")
    _write_stream(local_export(store, job_id, fmt.value, start, end), out)


def local_export(store, job_id: int, fmt: str, start=None, end=None):
    """The same bytes the server's export sends, from a local store."""
    from service.api.encode import csv_chunks, ndjson_chunks

    rows = store.export_rows(job_id, start=start, end=end)
    if fmt == "csv":
        return csv_chunks(store.export_columns(job_id), rows)
    return ndjson_chunks(rows)


def _open_local(database_url: str | None):
    from service.store import Store

    try:
        store = Store(url=database_url)
    except ValueError as e:
        fail(str(e))
    recovered = store.recover_orphans()
    if recovered:
        err.print(f"marked interrupted (their process is gone): jobs {', '.join(map(str, recovered))}")
    return store


# --- wiring ------------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add serve, submit, and (if main has none yet) cancel and export to the CLI app."""
    existing = {c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}
    for name, fn in (("serve", serve), ("submit", submit), ("cancel", cancel), ("export", export)):
        if name not in existing:
            app.command(name)(fn)


standalone = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                         help="gradbook's server commands (also part of `gradbook`).")
register(standalone)

if __name__ == "__main__":  # python -m cli.serve_commands serve ...
    standalone()
