"""`gradbook`: train models and read back the book of every step, from the command line.

Exit codes: 0 success, 1 the job failed (or was cancelled/interrupted), 2 usage error (bad spec,
unknown job, bad option). Every command accepts --database-url (or GRADBOOK_DATABASE_URL) and
first marks jobs whose process died as interrupted. With --url (or GRADBOOK_URL) the job commands
talk to a gradbook server instead (cli/serve_commands.py, which also adds serve, submit, cancel and
export).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli import render, serve_commands
from cli.common import DatabaseUrl, JsonFlag, RowFormat, Token, Url, err, fail
from service.api.encode import loads
from service.jobs import presets as preset_catalog
from service.jobs.data import DataError
from service.jobs.spec import CsvData, SpecError, format_loc, job_view, make_plan, parse_spec

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="Train neural networks and keep the book of every step: loss and every gradient.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")

Start = Annotated[int | None, typer.Option(min=0, help="First step (inclusive).")]
End = Annotated[int | None, typer.Option(min=0, help="Last step (inclusive).")]
MaxPoints = Annotated[int, typer.Option("--max-points", min=1, help="Downsample longer ranges into "
                                        "this many buckets (min/max/mean/last each).")]


class GraphFormat(StrEnum):
    text = "text"
    dot = "dot"
    json = "json"


class UsageError(Exception):
    """Something the user can fix: its message goes to stderr, the exit code is 2."""


@contextlib.contextmanager
def usage_errors():
    """Known user errors become one clear line on stderr and exit code 2, never a traceback."""
    from service.jobs.replay import GraphError, VerifyError
    from service.store.errors import StoreError

    try:
        yield
    except (UsageError, SpecError, DataError, GraphError, VerifyError, StoreError) as e:
        fail(str(e))


def resolve_url(database_url: str | None) -> str:
    from service.store.engine import database_url as resolve

    try:
        return resolve(database_url)
    except ValueError as e:
        raise UsageError(str(e)) from None


@contextlib.contextmanager
def database_errors(url: str):
    """A database that cannot be reached (no driver, unknown dialect, bad path) is a usage error."""
    from sqlalchemy.exc import NoSuchModuleError, OperationalError

    try:
        yield
    except (NoSuchModuleError, ImportError, OperationalError) as e:
        reason = str(e).splitlines()[0]
        raise UsageError(f"cannot open the database {url!r}: {reason}") from None


def open_store(database_url: str | None):
    """Open (and migrate) the database, and mark jobs whose owner process died as interrupted."""
    from service.store import Store

    url = resolve_url(database_url)
    with database_errors(url):
        store = Store(url=url)
    recovered = store.recover_orphans()
    if recovered:
        err.print(f"marked interrupted (their process is gone): jobs {', '.join(map(str, recovered))}; "
                  "continue one with `gradbook resume JOB`")
    return store


def preset_spec(name: str) -> dict:
    if name not in preset_catalog.names():
        raise UsageError(f"unknown preset {name!r}; choose from {', '.join(preset_catalog.names())}")
    return preset_catalog.get(name)


def get_job(store, job_id: int) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise UsageError(f"no job {job_id} in this database")
    return job


def view_of(job: dict) -> dict:
    """The job as the REST API shows it; total_steps of an epochs-based spec needs its data."""
    view = job_view(job)
    if view["total_steps"] is None:
        try:
            view["total_steps"] = make_plan(parse_spec(job["spec"])).total_steps
        except (SpecError, DataError):
            pass  # e.g. its CSV file is gone: the job's own state says more
    return view


def check_range(start: int | None, end: int | None) -> None:
    if start is not None and end is not None and start > end:
        raise UsageError(f"--start {start} is after --end {end}")


# --- training -------------------------------------------------------------------------------------------


def read_spec_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read spec file {str(path)!r}: {e.strerror or e}") from None
    try:
        doc = loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    return doc


class _Bar:
    """A rich progress bar on stderr: step, loss, elapsed time and ETA."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("step {task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, transient=False, disable=not enabled)
        self.task = self.progress.add_task(label, total=total, loss="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, p):
        loss = "-" if p.loss is None else f"{p.loss:.6g}"
        self.progress.update(self.task, completed=p.steps_done, loss=loss)


@contextlib.contextmanager
def _interrupt_at_step_boundary():
    """While training, SIGINT and SIGTERM stop the job at the next step boundary: the steps recorded
    so far are flushed whole (never a step without its snapshot) and the job is marked interrupted.
    Yields the ``should_stop`` the training loop polls each step; a second signal stops at once."""
    requested = False

    def handler(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True

    def should_stop() -> bool:
        if requested:
            raise KeyboardInterrupt
        return False

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not in the main thread: leave signals alone
        yield None
        return
    try:
        yield should_stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run(store, job_id: int, total: int, *, resume: bool, as_json: bool, quiet: bool) -> None:
    from service.runtime.runner import run_job

    job = get_job(store, job_id)
    started = time.monotonic()
    try:
        with _interrupt_at_step_boundary() as should_stop, \
                _Bar(total, f"job {job_id} {job['name']}", not quiet) as bar:
            outcome = run_job(store, job_id, resume=resume, progress=bar, should_stop=should_stop)
    except KeyboardInterrupt:
        err.print(f"job {job_id} interrupted; continue it with `gradbook resume {job_id}`")
        raise typer.Exit(130) from None
    seconds = time.monotonic() - started
    job = get_job(store, job_id)
    view = job_view(job)
    view["total_steps"] = total
    summary = _summary(store, job, seconds)
    if as_json:
        err.print(summary)
        render.print_json(view)
    else:
        typer.echo(summary)
    if outcome.status != "succeeded":
        raise typer.Exit(1)


def _summary(store, job: dict, seconds: float) -> str:
    first = store.step(job["id"], 0) if job["steps_done"] else None
    loss = ""
    if first is not None and job.get("last_loss") is not None:
        loss = f", loss {first['loss']:.6g} -> {job['last_loss']:.6g}"
    text = (f"job {job['id']} ({job['name']}) {job['status']}: {job['steps_done']:,} steps "
            f"in {seconds:.2f} s{loss}")
    if job.get("error"):
        text += f"\n  {job['error']}"
    return text


@app.command()
def train(
    spec_file: Annotated[Path | None, typer.Argument(
        metavar="SPEC.json", help="Job spec file (or use --preset).", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option(help="Train a preset (see `gradbook presets`).")] = None,
    name: Annotated[str | None, typer.Option(help="Override the job name.")] = None,
    as_json: JsonFlag = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    database_url: DatabaseUrl = None,
):
    """Train a job from a spec file or a preset, recording every step."""
    with usage_errors():
        if (spec_file is None) == (preset is None):
            raise UsageError("give a spec file or --preset NAME (not both)")
        doc = preset_spec(preset) if preset is not None else read_spec_file(spec_file)
        if name is not None and isinstance(doc, dict):
            doc["name"] = name
        try:
            spec = parse_spec(doc)
            if isinstance(spec.data, CsvData):  # the job must find its file from any directory
                spec.data.csv = str(Path(spec.data.csv).resolve())
            plan = make_plan(spec)  # loads CSV data now: a bad file is a usage error, not a failed job
        except SpecError as e:
            lines = "".join(f"\n  {format_loc(x['loc'])}: {x['msg']}" if x["loc"] else f"\n  {x['msg']}"
                            for x in e.errors)
            raise UsageError(f"{spec_file or 'preset ' + preset}: invalid job spec{lines}") from None
        store = open_store(database_url)
        job_id = store.create_job(spec.name, spec.model_dump(mode="json"))
    _run(store, job_id, plan.total_steps, resume=False, as_json=as_json, quiet=quiet)


@app.command()
def resume(
    job_id: Annotated[int, typer.Argument(metavar="JOB")],
    as_json: JsonFlag = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    database_url: DatabaseUrl = None,
    url: Url = None,
    token: Token = None,
):
    """Continue an interrupted job from its last checkpoint (here, or on the server with --url)."""
    if url:
        return serve_commands.remote_resume(url, job_id, token, as_json=as_json, quiet=quiet)
    with usage_errors():
        store = open_store(database_url)
        job = get_job(store, job_id)
        if job["status"] not in ("interrupted", "queued"):
            raise UsageError(f"job {job_id} is {job['status']}; only interrupted (or never started) jobs "
                             "can be resumed")
        plan = make_plan(parse_spec(job["spec"]))
    _run(store, job_id, plan.total_steps, resume=job["status"] == "interrupted", as_json=as_json, quiet=quiet)


# --- catalog and jobs ------------------------------------------------------------------------------------


@app.command()
def presets(as_json: JsonFlag = False, database_url: DatabaseUrl = None):
    """List the preset jobs (train one with `gradbook train --preset NAME`)."""
    items = preset_catalog.describe()
    if as_json:
        render.print_json(items)
        return
    width = max(len(p["name"]) for p in items)
    for p in items:
        typer.echo(f"{p['name'].ljust(width)}  {p['description']}")


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    url: Url = None,
    token: Token = None,
):
    """List jobs, newest first."""
    from service.domain import JOB_STATUSES

    with usage_errors():
        if status is not None and status not in JOB_STATUSES:
            raise UsageError(f"--status must be one of {', '.join(JOB_STATUSES)}, got {status!r}")
    if url:
        return serve_commands.remote_jobs(url, token, status=status, limit=limit, offset=offset,
                                          as_json=as_json)
    with usage_errors():
        store = open_store(database_url)
        rows = [view_of(j) for j in store.list_jobs(status=status, limit=limit, offset=offset)]
    render.show_jobs(rows, as_json)


@app.command()
def show(job_id: Annotated[int, typer.Argument(metavar="JOB")], as_json: JsonFlag = False,
         database_url: DatabaseUrl = None, url: Url = None, token: Token = None):
    """Show one job: status, progress, last loss, error, spec."""
    if url:
        return serve_commands.remote_show(url, job_id, token, as_json=as_json)
    with usage_errors():
        store = open_store(database_url)
        view = view_of(get_job(store, job_id))
    render.show_job(view, as_json)


@app.command()
def history(
    job_id: Annotated[int, typer.Argument(metavar="JOB")],
    fmt: Annotated[RowFormat, typer.Option("--format", help="table, csv or json.")] = RowFormat.table,
    start: Start = None, end: End = None, max_points: MaxPoints = 1000,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """Loss, learning rate, gradient norm (and validation metrics) per step."""
    with usage_errors():
        check_range(start, end)
    if url:
        return serve_commands.remote_history(url, job_id, token, fmt=fmt.value, start=start, end=end,
                                             max_points=max_points)
    with usage_errors():
        store = open_store(database_url)
        get_job(store, job_id)
        rows = store.history(job_id, start=start, end=end, max_points=max_points)
    _emit(rows, fmt, first=("step", "loss"))


@app.command()
def gradients(
    job_id: Annotated[int, typer.Argument(metavar="JOB")],
    param: Annotated[str | None, typer.Option(help="One parameter (default: all).")] = None,
    fmt: Annotated[RowFormat, typer.Option("--format", help="table, csv or json.")] = RowFormat.table,
    start: Start = None, end: End = None, max_points: MaxPoints = 1000,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """Per-parameter gradient statistics per step: norm, mean, std, min, max, non-finite count."""
    with usage_errors():
        check_range(start, end)
    if url:
        return serve_commands.remote_gradients(url, job_id, token, param=param, fmt=fmt.value, start=start,
                                               end=end, max_points=max_points)
    with usage_errors():
        store = open_store(database_url)
        job = get_job(store, job_id)
        names = job.get("param_names") or []
        if param is not None and param not in names:
            known = ", ".join(names) or "none yet"
            raise UsageError(f"job {job_id} has no parameter {param!r}; it has {known}")
        rows = []
        for name in [param] if param else names:
            rows += [{"param": name, **r} for r in store.gradients(job_id, name, start=start, end=end,
                                                                    max_points=max_points)]
    _emit(rows, fmt, first=("param", "step"))


def _emit(rows: list[dict], fmt: RowFormat, first) -> None:
    if fmt is RowFormat.json:
        render.print_json(rows)
    elif fmt is RowFormat.csv:
        sys.stdout.write(render.to_csv(rows, first=first))
    else:
        typer.echo(render.to_table(rows, first=first) if rows else "no steps recorded")


# --- looking inside --------------------------------------------------------------------------------------


@app.command()
def graph(
    preset: Annotated[str | None, typer.Option(help="Graph of a preset's model at step 0.")] = None,
    job_id: Annotated[int | None, typer.Option("--job", help="Graph of a job's model at --step.")] = None,
    step: Annotated[int, typer.Option(min=0, help="Recorded step (with a parameter snapshot).")] = 0,
    fmt: Annotated[GraphFormat, typer.Option("--format", help="text, dot or json.")] = GraphFormat.text,
    database_url: DatabaseUrl = None,
):
    """The computation graph with every node's value and derivative (dJ/d node)."""
    from service.jobs.replay import job_graph, preset_graph

    with usage_errors():
        if (preset is None) == (job_id is None):
            raise UsageError("give --preset NAME or --job JOB (with --step S)")
        if preset is not None:
            preset_spec(preset)  # a clear error for an unknown name
            g = preset_graph(preset)
        else:
            g = job_graph(open_store(database_url), job_id, step)
    if fmt is GraphFormat.json:
        sys.stdout.write(g.to_json() + "\n")
    elif fmt is GraphFormat.dot:
        typer.echo(g.dot())
    else:
        typer.echo(g.table())


@app.command()
def verify(
    job_id: Annotated[int, typer.Argument(metavar="JOB")],
    step: Annotated[int, typer.Option(min=0, help="Recorded step with a snapshot.")] = 0,
    eps: Annotated[float, typer.Option(min=1e-12, help="Bump size.")] = 1e-6,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
):
    """Recompute a step's gradient by bumping each parameter and compare with the recorded backprop."""
    from service.jobs.replay import verify_step

    with usage_errors():
        report = verify_step(open_store(database_url), job_id, step, eps=eps)
    if as_json:
        render.print_json(report.to_dict())
        return
    typer.echo(f"job {job_id} step {step}: {report.n_params:,} parameters, eps {report.eps:g}")
    typer.echo(f"  backprop:  {report.backprop_seconds * 1e3:10.3f} ms  (one forward + backward)")
    typer.echo(f"  numerical: {report.numerical_seconds * 1e3:10.3f} ms  ({report.forward_passes:,} forward "
               f"passes, {report.numerical_seconds / max(report.backprop_seconds, 1e-12):,.0f}x)")
    typer.echo(f"  largest relative error {report.max_rel_error:.3g} (in {report.worst_param}), "
               f"largest absolute error {report.max_abs_error:.3g}")
    for name, e in report.per_param.items():
        typer.echo(f"    {name:8} {e:.3g}")
    if report.kink_inputs:
        typer.echo(f"  note: {report.kink_inputs} ReLU inputs lie within eps of 0, where bumping sees a "
                   "slope of about 1/2 and backprop the subgradient; errors from them are not backprop's")
    if report.recorded_vs_replayed:
        typer.echo(f"  note: replaying backprop differs from the record by {report.recorded_vs_replayed:.3g}")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None):
    """Apply the database migrations (also done automatically on start)."""
    from service.store.engine import upgrade

    with usage_errors():
        url = resolve_url(database_url)
        with database_errors(url):
            upgrade(url)
    typer.echo(f"database at {url} is up to date")


serve_commands.register(app)  # serve, submit, cancel, export


def main():  # pragma: no cover - `python -m cli.main`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
