"""`gradbook ... --help` for every command and group: a flag (an option that takes no value, --help
included) shows no type metavar such as `<bool>`."""

from __future__ import annotations

import re

import click
import pytest
import typer.main
from typer.testing import CliRunner

from cli.main import app


def command_paths(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple, click.Command]]:
    """Every command and group under ``command``, with the words that name it on the command line."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, (*path, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "train", "resume", "submit", "history", "db", "db upgrade"} <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) or "gradbook" for p, _ in COMMANDS])
def test_flags_show_no_type_in_help(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    ctx = click.Context(command)
    flags = [p for p in command.get_params(ctx) if getattr(p, "is_flag", False)]
    assert any("--help" in p.opts for p in flags)
    for flag in flags:
        lines = [line for line in result.output.splitlines()
                 if re.search(rf"(^|\s){re.escape(flag.opts[0])}(\s|$)", line) and "Usage:" not in line]
        assert lines, f"{flag.opts[0]} is not in the help"
        assert not re.search(r"<\w+>", lines[0]), lines[0]
