"""`gradbook db`: database maintenance: `upgrade` the schema, `vacuum` the free space away, `stats`
of what each job keeps."""

from __future__ import annotations

import typer

import service
from cli import render
from cli.backends import Local
from cli.options import Command, DatabaseUrl, Group, JsonFlag, usage_errors

app = typer.Typer(cls=Group, no_args_is_help=True, help="Database maintenance.")


@app.command("upgrade", cls=Command)
def upgrade(database_url: DatabaseUrl = None):
    """Apply the database migrations (also done automatically on start)."""
    with usage_errors():
        url = service.upgrade_database(database_url)
    typer.echo(f"database at {url} is up to date")


@app.command("vacuum", cls=Command)
def vacuum(database_url: DatabaseUrl = None):
    """Give the free space inside the database back to the file system (a full VACUUM); on SQLite
    it also makes every later `gradbook delete` return its space itself."""
    with usage_errors(), Local(database_url, read_only=True) as local:
        sizes = local.store.vacuum()
    before, after = sizes["before"]["bytes"], sizes["after"]["bytes"]
    typer.echo(f"vacuumed: {render.human_bytes(before)} before, {render.human_bytes(after)} after "
               f"(returned {render.human_bytes(max(0, before - after))})")


@app.command("stats", cls=Command)
def stats(as_json: JsonFlag = False, database_url: DatabaseUrl = None):
    """Bytes by job and by kind of data (history, param_stats, snapshots, checkpoints, rollups),
    their totals, and the database's size and free space."""
    with usage_errors(), Local(database_url, read_only=True) as local:
        report = local.store.storage_stats()
    if as_json:
        render.print_json(report)
    else:
        typer.echo(render.storage_report(report))
