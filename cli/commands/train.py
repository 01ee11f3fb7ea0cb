"""Running jobs: `train` (here, or on a server with --url), `resume`, and `submit` to a server.

Exit codes: 0 the job succeeded (or was submitted), 1 it failed or was cancelled, 2 usage error,
130 interrupted here by SIGINT/SIGTERM (continue it with `gradbook resume`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import service
from cli import render
from cli.backends import Remote, open_backend
from cli.options import DatabaseUrl, JsonFlag, Quiet, Token, Url, UsageError, fail, preset_spec, usage_errors

SpecFile = Annotated[Path | None, typer.Argument(metavar="[SPEC.json]", show_default=False,
                                                 help="Job spec file (or use --preset).")]
Preset = Annotated[str | None, typer.Option(help="A preset's spec (see `gradbook presets`).")]
Name = Annotated[str | None, typer.Option(help="Override the job name.")]


def read_spec(path: Path) -> dict:
    """A spec file's JSON document (NaN and Infinity refused)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read spec file {str(path)!r}: {e.strerror or e}") from None
    try:
        return service.encode.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None


def spec_document(spec_file: Path | None, preset: str | None, name: str | None) -> tuple[dict, str]:
    """The spec to run, from a file or a preset, with ``name`` applied; and where it came from."""
    if (spec_file is None) == (preset is None):
        raise UsageError("give a spec file or --preset NAME (not both)")
    doc = preset_spec(preset) if preset is not None else read_spec(spec_file)
    if name is not None and isinstance(doc, dict):
        doc["name"] = name
    return doc, str(spec_file) if spec_file is not None else f"preset {preset}"


def show_ended(job: dict, text: str, as_json: bool) -> None:
    """The job's summary (with --json: the job on stdout, the summary on stderr); exit 1 unless it
    succeeded."""
    render.show_ended(job, text, as_json)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def train(spec_file: SpecFile = None, preset: Preset = None, name: Name = None, as_json: JsonFlag = False,
          quiet: Quiet = False, database_url: DatabaseUrl = None, url: Url = None, token: Token = None):
    """Train a job from a spec file or a preset, recording every step (on a server with --url)."""
    with usage_errors():
        doc, source = spec_document(spec_file, preset, name)
        with open_backend(url, token, database_url, read_only=False) as backend:
            job, text = backend.train(doc, source, quiet)
    show_ended(job, text, as_json)


def resume(job_id: Annotated[int, typer.Argument(metavar="JOB")], as_json: JsonFlag = False,
           quiet: Quiet = False, database_url: DatabaseUrl = None, url: Url = None, token: Token = None):
    """Continue an interrupted job from its last checkpoint (here, or on the server with --url)."""
    with usage_errors(), open_backend(url, token, database_url, read_only=False) as backend:
        job, text = backend.resume(job_id, quiet)
    show_ended(job, text, as_json)


def submit(
    spec_file: SpecFile = None, preset: Preset = None, name: Name = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a live progress bar until it "
                                                      "ends; exit 1 unless it succeeded.")] = False,
    quiet: Quiet = False, as_json: JsonFlag = False, url: Url = None, token: Token = None,
):
    """Submit a job to a gradbook server (--url or GRADBOOK_URL)."""
    if url is None:
        fail("submit needs a server: give --url http://host:port or set GRADBOOK_URL "
             "(`gradbook train` runs a job locally)")
    with usage_errors():
        doc, source = spec_document(spec_file, preset, name)
        server = Remote(url, token)
        if wait:
            job, text = server.train(doc, source, quiet)
        else:
            job = server.submit(doc)
    if wait:
        show_ended(job, text, as_json)
    elif as_json:
        render.print_json(job)
    else:
        typer.echo(f"job {job['id']} ({job['name']}) {job['status']}")
