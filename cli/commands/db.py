"""`gradbook db`: database maintenance."""

from __future__ import annotations

import typer

import service
from cli.options import Command, DatabaseUrl, Group, usage_errors

app = typer.Typer(cls=Group, no_args_is_help=True, help="Database maintenance.")


@app.command("upgrade", cls=Command)
def upgrade(database_url: DatabaseUrl = None):
    """Apply the database migrations (also done automatically on start)."""
    with usage_errors():
        url = service.upgrade_database(database_url)
    typer.echo(f"database at {url} is up to date")
