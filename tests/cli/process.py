"""`gradbook` as a process of its own, the way a user starts it."""

import sys
from pathlib import Path


def gradbook(*args) -> list[str]:
    """The command line for `gradbook ARGS`: the installed script, else `python -m cli.main`."""
    script = Path(sys.executable).with_name("gradbook")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    return head + [str(a) for a in args]
