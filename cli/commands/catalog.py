"""What a spec can name: `optimizers` (with their schedules) and `datasets` (list, `upload`), on this
machine or on a server (--url)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import render
from cli.backends import open_backend
from cli.options import (
    Command,
    DatabaseUrl,
    Group,
    JsonFlag,
    Token,
    Url,
    read_file,
    usage_errors,
)


def optimizers(as_json: JsonFlag = False, url: Url = None, token: Token = None):
    """List the optimizers (hyperparameters, defaults, ranges) and the learning-rate schedules."""
    with usage_errors(), open_backend(url, token, None, read_only=True) as backend:
        catalog = backend.optimizers()
    render.show_catalog(catalog, as_json)


datasets = typer.Typer(cls=Group, help="Uploaded datasets: list them, or upload a CSV file.")


@datasets.callback(invoke_without_command=True)
def list_datasets(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """List the uploaded datasets, newest first (`gradbook datasets upload FILE.csv` adds one)."""
    if ctx.invoked_subcommand is not None:
        return
    with usage_errors(), open_backend(url, token, database_url, read_only=True) as backend:
        rows = backend.datasets(limit, offset)
    render.show_datasets(rows, as_json)


@datasets.command("upload", cls=Command)
def upload(
    path: Annotated[Path, typer.Argument(metavar="FILE.csv", show_default=False,
                                         help="Rows of numbers, an optional header row.")],
    targets: Annotated[int, typer.Option(min=1, help="How many trailing columns are targets.")] = 1,
    name: Annotated[str | None, typer.Option(help="A name to know it by (default: the file's).")] = None,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None, url: Url = None, token: Token = None,
):
    """Check a CSV file of training data and store it; a spec then names it {"dataset_id": ID}."""
    with usage_errors():
        content = read_file(path, "FILE.csv")
        with open_backend(url, token, database_url, read_only=False) as backend:
            dataset = backend.upload_dataset(name or path.name, content, targets)
    render.show_dataset(dataset, as_json)
