"""What the CLI prints: aligned text tables, CSV with a header, JSON, a job, a step check, a progress
bar. Results go to stdout; progress and errors go to stderr (``err``), so --json owns stdout."""

from __future__ import annotations

import csv
import io
import json
import numbers
import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import service

err = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """"error: MESSAGE" on stderr, the message as it is (no markup read in it)."""
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


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


def is_float(value) -> bool:
    """A float, Python's or NumPy's (without importing NumPy)."""
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)


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
    if is_float(value):
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
    """A value for reading: floats to 6 significant digits (0.1 rather than 0.10000000000000002),
    whole numbers whole (1234567, not 1.23457e+06); None as "-". CSV and JSON keep every digit."""
    if value is None:
        return "-"
    if is_float(value):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def human_bytes(n: int | float | None) -> str:
    """A size for reading: "512 B", "12.3 MB", "1.4 GB" (powers of 1,000); None as "-"."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 999.5 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


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
    """One JSON document on stdout (what --json promises): NumPy values as Python's, non-finite
    floats as null."""
    sys.stdout.write(json.dumps(service.encode.finite(value), indent=2, allow_nan=False) + "\n")


def emit_rows(rows: list[dict], fmt: str, first) -> None:
    """History or gradient rows as a table, CSV or JSON (``fmt``)."""
    if fmt == "json":
        print_json(rows)
    elif fmt == "csv":
        sys.stdout.write(to_csv(rows, first=first))
    else:
        typer.echo(to_table(rows, first=first) if rows else "no steps recorded")


def show_jobs(rows: list[dict], as_json: bool) -> None:
    """Jobs as `gradbook jobs` prints them: a table, or the JSON list."""
    if as_json:
        print_json(rows)
        return
    table = [{"id": r["id"], "name": r["name"], "status": r["status"], "steps": r["steps_done"],
              "last_loss": r["last_loss"], "created": (r["created_at"] or "")[:19]} for r in rows]
    typer.echo(to_table(table, first=("id",)) if table else "no jobs")


def storage_report(report: dict) -> str:
    """`gradbook db stats`: a table of bytes per job and kind of data with a total row, the
    database's size and free space, and each table's size when measured."""
    kinds = [k for k in report["totals"] if k != "total"] + ["total"]
    rows = [{"id": j["id"], "name": j["name"], "status": j["status"], "steps": j["steps"],
             **{k: human_bytes(j[k]) for k in kinds}} for j in report["jobs"]]
    rows.append({"id": "total", "name": "", "status": "", "steps": "",
                 **{k: human_bytes(report["totals"][k]) for k in kinds}})
    db = report["database"]
    how = {"dbstat": "measured with SQLite's dbstat", "postgresql": "measured by PostgreSQL"}
    lines = [to_table(rows, first=("id",)), "",
             f"rows sized {how.get(report['method'], 'by estimate (this SQLite has no dbstat)')}; "
             "snapshots and checkpoints by their arrays' bytes",
             f"database: {human_bytes(db['bytes'])}"]
    if db["file_bytes"] is not None:
        lines[-1] += (f" (file {human_bytes(db['file_bytes'])}, write-ahead log "
                      f"{human_bytes(db['wal_bytes'])}), {human_bytes(db['free_bytes'])} free inside "
                      "(`gradbook db vacuum` returns it)")
    if report["tables"]:
        tables = sorted(report["tables"].items(), key=lambda item: -item[1])
        lines.append("tables: " + ", ".join(f"{name} {human_bytes(size)}" for name, size in tables))
    return "\n".join(lines)


def show_datasets(rows: list[dict], as_json: bool) -> None:
    """Uploaded datasets as `gradbook datasets` prints them: a table, or the JSON list."""
    if as_json:
        print_json(rows)
        return
    table = [{"id": r["id"], "name": r["name"], "rows": r["meta"].get("rows"),
              "features": r["meta"].get("features"), "targets": r["meta"].get("targets"),
              "created": (r["created_at"] or "")[:19]} for r in rows]
    typer.echo(to_table(table, first=("id",)) if table else "no datasets")


def show_dataset(dataset: dict, as_json: bool) -> None:
    """A dataset just uploaded: a line saying how a spec names it, or the JSON document."""
    if as_json:
        print_json(dataset)
        return
    meta = dataset["meta"]
    typer.echo(f"dataset {dataset['id']} ({dataset['name']}): {meta['rows']:,} rows, {meta['features']} "
               f"feature(s), {meta['targets']} target(s); a spec uses it as "
               f'"data": {{"dataset_id": {dataset["id"]}}}')


def show_catalog(catalog: dict, as_json: bool) -> None:
    """The optimizers and schedules (GET /optimizers' document): each optimizer's hyperparameters,
    the options every optimizer takes, and each schedule's parameters, with defaults and ranges."""
    if as_json:
        print_json(catalog)
        return
    lines: list[str] = []
    options: dict[str, dict] = {}
    for opt in catalog["optimizers"]:
        lines += [f"{opt['name']}: {opt['summary']}", *settings_table(opt["hyperparameters"]), ""]
        options.update((o["name"], o) for o in opt.get("options", ()) if o["name"] not in options)
    if options:
        lines += ["every optimizer also takes:", *settings_table(list(options.values())), ""]
    lines.append('schedules ("schedule": {"name": NAME, ...}):')
    for schedule in catalog["schedules"]:
        lines += [f"  {schedule['name']}: {schedule['summary']}",
                  *("  " + line for line in settings_table(schedule["params"]))]
    typer.echo("\n".join(lines))


def settings_table(settings: list[dict]) -> list[str]:
    """Hyperparameters as aligned lines: name, default (as a spec writes it, or "required"), what
    values are allowed, and what it does."""
    rows = [(s["name"], "required" if s.get("required") else json.dumps(s.get("default")),
             s.get("allowed", ""), s.get("doc", "")) for s in settings]
    if not rows:
        return ["  (no parameters)"]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
            for row in rows]


def show_job(view: dict, as_json: bool) -> None:
    """A job as `gradbook show` prints it: one field a line, or the JSON document."""
    if as_json:
        print_json(view)
        return
    for key in ("id", "name", "status", "steps_done", "total_steps", "last_loss", "created_at", "started_at",
                "finished_at", "error", "param_names"):
        if view.get(key) is not None:
            typer.echo(f"{key:12} {short(view[key])}")
    if view.get("spec") is not None:
        typer.echo("spec         " + json.dumps(view["spec"]))


def summary(job: dict, *, seconds: float | None = None, first_loss: float | None = None) -> str:
    """How a job ended, in a line (and its error in a second): steps, time, loss."""
    text = f"job {job['id']} ({job['name']}) {job['status']}: {job['steps_done']:,} steps"
    if seconds is not None:
        text += f" in {seconds:.2f} s"
    last = job.get("last_loss")
    if last is not None:
        text += f", last loss {last:.6g}" if first_loss is None else f", loss {first_loss:.6g} -> {last:.6g}"
    if job.get("error"):
        text += f"\n  {job['error']}"
    return text


def show_ended(job: dict, text: str, as_json: bool) -> None:
    """A job that ran to its end here or was followed on a server: the summary, or with --json the
    job on stdout and the summary on stderr."""
    if as_json:
        err.print(text)
        print_json(job)
    else:
        typer.echo(text)


def show_verify(report: dict, as_json: bool) -> None:
    """The numerical check of a step (service.replay's report, from here or a server)."""
    if as_json:
        print_json(report)
        return

    def num(value) -> float:  # a server sends non-finite errors as null
        return float("nan") if value is None else value

    backprop, numerical = report["backprop_seconds"], report["numerical_seconds"]
    typer.echo(f"job {report['job_id']} step {report['step']}: {report['n_params']:,} parameters, "
               f"eps {report['eps']:g}")
    replayed = report.get("replayed")
    if replayed:  # no snapshot was kept at that step
        start = replayed["from_step"]
        origin = f"the checkpoint at step {start:,}" if start else "the initial parameters"
        outcome = "reproducing" if replayed["matches_record"] else "NOT reproducing"
        took = f"{replayed['seconds'] * 1e3:.0f} ms"
        typer.echo(f"  replayed {replayed['steps']:,} steps from {origin} ({took}), "
                   f"{outcome} the recorded loss and gradient statistics exactly")
    typer.echo(f"  backprop:  {backprop * 1e3:10.3f} ms  (one forward + backward)")
    typer.echo(f"  numerical: {numerical * 1e3:10.3f} ms  ({report['forward_passes']:,} forward "
               f"passes, {numerical / max(backprop, 1e-12):,.0f}x)")
    typer.echo(f"  largest relative error {num(report['max_rel_error']):.3g} (in {report['worst_param']}), "
               f"largest absolute error {num(report.get('max_abs_error')):.3g}")
    for name, e in report["per_param"].items():
        typer.echo(f"    {name:8} {num(e):.3g}")
    if report.get("kink_inputs"):
        typer.echo(f"  note: {report['kink_inputs']} ReLU inputs lie within eps of 0, where bumping sees a "
                   "slope of about 1/2 and backprop the subgradient; errors from them are not backprop's")
    if report.get("recorded_vs_replayed"):
        typer.echo(f"  note: replaying backprop differs from the record by "
                   f"{num(report['recorded_vs_replayed']):.3g}")


class ProgressBar:
    """A rich progress bar on stderr: step of total (when known), loss, status, elapsed time and ETA."""

    def __init__(self, label: str, total: int | None, enabled: bool, status: str = ""):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("step {task.completed:,.0f}/{task.fields[total_text]}"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, disable=not enabled)
        self.restored = False
        self.task = self.progress.add_task(label, total=total, loss="-", status=status,
                                           total_text=f"{total:,}" if total else "?")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def restoring(self, step: int | None = None) -> None:
        """A resume is restoring the job's checkpoint (of ``step``, once known); training continues
        from there, and the next ``step()`` says so."""
        self.restored = True
        if step is None:
            self.progress.update(self.task, status="restoring")
        else:
            self.progress.update(self.task, completed=step, status=f"restoring from step {step:,}")

    def step(self, done: int, loss: float | None) -> None:
        """Training has reached ``done`` steps with this loss."""
        fields = {"status": ""} if self.restored else {}  # the restoring note ends with it
        self.restored = False
        self.progress.update(self.task, completed=done, loss="-" if loss is None else f"{loss:.6g}", **fields)

    def state(self, status: str, total: int | None = None, done: int | None = None) -> None:
        """The job changed state (and may tell its total and progress with it)."""
        fields: dict = {"status": status}
        if total:
            fields.update(total=total, total_text=f"{total:,}")
        if done is not None:
            fields["completed"] = done
        self.progress.update(self.task, **fields)
