"""Runs documented commands and Python examples, each in a fresh fork of one process that has
already imported gradbook: a command then costs its own work, not a second of imports.

Started by the doc-test as ``python forkserver.py``. Requests arrive one JSON line at a time on
stdin: ``{"kind": "cli" | "python", "argv": [...], "code": "...", "cwd": ..., "env": {...},
"stdout": PATH, "stderr": PATH}``; the reply is ``{"code": EXIT_CODE}``. A ``cli`` request runs
``gradbook ARGV`` (the console script's ``cli.main:app``), a ``python`` request runs ``code`` as
``__main__`` with ``sys.argv = ["-", *argv]``. With ``"background": true`` the reply is ``{"pid":
PID}`` at once (a server); ``{"kind": "stop", "pid": PID}`` later sends it SIGTERM and answers
with its exit code once it has ended. Each child sets its own directory, environment, ``sys.path``
(PYTHONPATH entries first, as a new interpreter would) and output files, so it behaves like a new
process, without the start-up. This process never starts a thread, so forking it is safe.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import time
import traceback

# Heavy imports the commands would each pay for; a name that moved is simply not preloaded.
PRELOAD = ("numpy", "pydantic", "sqlalchemy", "alembic", "typer", "rich", "httpx", "uvicorn", "fastapi",
           "autodiff", "optim", "cli.main", "service.store", "service.runtime.runner", "service.jobs.spec",
           "service.jobs.replay", "service.api.app")
STOP_DEADLINE_S = 60.0  # then SIGKILL: a server that does not stop must not hang the test run


def preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def enter(request: dict) -> None:
    """Become the process the request describes: directory, environment, imports path, files."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = extra + [p for p in sys.path if p not in extra]
    if "optim" in sys.modules:  # plug-ins installed for this example are found as in a new process
        sys.modules["optim"].discover(force=True)
    for fd, name, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                           (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        target = os.open(name, mode | (os.O_TRUNC if fd else 0), 0o644)
        os.dup2(target, fd)
        os.close(target)


def run(request: dict) -> int:
    enter(request)
    try:
        if request["kind"] == "cli":
            from cli.main import app

            app(args=request["argv"], prog_name="gradbook")
        else:
            sys.argv = ["-", *request["argv"]]
            sys.path.insert(0, "")  # `python -` puts the working directory first
            exec(compile(request["code"], request.get("name", "<example>"), "exec"), {"__name__": "__main__"})
        return 0
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def start(request: dict) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = run(request)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    return pid


def stop(pid: int) -> int:
    """SIGTERM, then the exit code once it ended (SIGKILL past the deadline)."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE_S
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            ended = os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(ended[1])


def serve() -> None:
    preload()
    for line in sys.stdin:
        request = json.loads(line)
        if request["kind"] == "stop":
            reply = {"code": stop(request["pid"])}
        elif request.get("background"):
            reply = {"pid": start(request)}
        else:
            reply = {"code": os.waitstatus_to_exitcode(os.waitpid(start(request), 0)[1])}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve()
