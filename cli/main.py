"""`gradbook`: train models and read back the book of every step, from the command line.

Exit codes: 0 success, 1 the job failed (or was cancelled; for `delete`, a job was not deleted), 2 usage
error (bad spec, unknown job, bad option, a server's refusal), 130 training interrupted. Every job
command works on the local database (--database-url or GRADBOOK_DATABASE_URL; its dead jobs are first
marked interrupted) or, with --url (or GRADBOOK_URL), on a gradbook server. The commands live in
cli/commands/; this module wires them.
"""

from __future__ import annotations

import typer

from cli.commands import catalog, db, inspect, jobs, serve, train
from cli.options import Command, Group

app = typer.Typer(cls=Group, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="Train neural networks and keep the book of every step: loss and every gradient.")

for command in (train.train, train.resume, jobs.presets, jobs.jobs, jobs.show, inspect.history,
                inspect.gradients, inspect.graph, inspect.verify, serve.serve, train.submit, jobs.cancel,
                jobs.delete, inspect.export, catalog.optimizers):
    app.command(cls=Command)(command)
app.add_typer(catalog.datasets, name="datasets")
app.add_typer(db.app, name="db")


def main():  # pragma: no cover - `python -m cli.main`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
