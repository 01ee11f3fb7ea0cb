"""What every `gradbook` command shares: option types, the stderr console and the usage-error exit."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False)  # progress and errors go to stderr; --json owns stdout

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="GRADBOOK_DATABASE_URL", show_envvar=True,
    help="SQLAlchemy URL of the database (default: sqlite:///gradbook.db in this directory).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
JobArg = Annotated[int, typer.Argument(metavar="JOB", min=1)]
Url = Annotated[str | None, typer.Option(
    "--url", envvar="GRADBOOK_URL", show_envvar=True,
    help="A gradbook server (http://host:port); without it, the local database is used.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="GRADBOOK_API_TOKEN", show_envvar=True, show_default=False,
    help="Bearer token of the server (prefer the environment variable to the option).")]


class RowFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 2):
    """One line on stderr and the exit code (2: usage error, something the user can fix)."""
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)
