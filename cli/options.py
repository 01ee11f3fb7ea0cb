"""What every `gradbook` command shares: option types, the usage error and its exit code."""

from __future__ import annotations

import contextlib
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

import service
from cli import render

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="GRADBOOK_DATABASE_URL", show_envvar=True,
    help="SQLAlchemy URL of the database (default: sqlite:///gradbook.db in this directory).")]
Url = Annotated[str | None, typer.Option(
    "--url", envvar="GRADBOOK_URL", show_envvar=True,
    help="A gradbook server (http://host:port); without it, the local database is used.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="GRADBOOK_API_TOKEN", show_envvar=True, show_default=False,
    help="Bearer token of the server (prefer the environment variable to the option).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JobArg = Annotated[int, typer.Argument(metavar="JOB", min=1)]
Start = Annotated[int | None, typer.Option(min=0, help="First step (inclusive).")]
End = Annotated[int | None, typer.Option(min=0, help="Last step (inclusive).")]
MaxPoints = Annotated[int, typer.Option("--max-points", min=1, help="Downsample longer ranges into "
                                        "this many buckets (min/max/mean/last each).")]


class FlagsShowNoType:
    """Typer's rich help prints each option's type after it, flags included (`--json <bool>`,
    `--help <bool>`); a flag takes no value, so here it shows none."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # what the help prints in the type column
        return params


class Command(FlagsShowNoType, TyperCommand):
    """A `gradbook` command (``app.command(cls=Command)``)."""


class Group(FlagsShowNoType, TyperGroup):
    """A `gradbook` command group (``typer.Typer(cls=Group)``)."""


class RowFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class UsageError(Exception):
    """Something the user can fix: its message goes to stderr, the exit code is 2."""


def fail(message: str, code: int = 2):
    """One line on stderr and the exit code (2: usage error, something the user can fix)."""
    render.print_error(message)
    raise typer.Exit(code)


@contextlib.contextmanager
def usage_errors():
    """Known user errors become one clear line on stderr and exit code 2, never a traceback: a bad
    spec or data file, an unknown job or step, a refused state change, an unusable database, and any
    error answer from a server (or none at all)."""
    try:
        yield
    except Exception as e:
        if isinstance(e, (UsageError, *service_errors())):
            fail(str(e))
        raise


def service_errors() -> tuple[type[Exception], ...]:
    """The service's errors that are the user's to fix (loaded only when something went wrong)."""
    return (service.DatabaseError, service.SpecError, service.DataError, service.GraphError,
            service.VerifyError, service.StoreError)


def check_range(start: int | None, end: int | None) -> None:
    """The store's rule for a step range, its complaint spelled with the options' names."""
    try:
        service.check_range(start, end, 1)
    except ValueError as e:  # "start: 5 is after end 2" -> "--start 5 is after --end 2"
        raise UsageError(re.sub(r"\b(start|end)\b:?", r"--\1", str(e))) from None


def preset_spec(name: str) -> dict:
    """A fresh copy of the preset's spec; an unknown name is a usage error listing the known ones."""
    try:
        return service.presets.get(name)
    except KeyError as e:
        raise UsageError(e.args[0]) from None


def read_file(path: Path, what: str) -> bytes:
    """A file's bytes; one that cannot be read is a usage error naming ``what`` it was for."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{what}: cannot read {str(path)!r}: {e.strerror or e}") from None
