"""Running the examples of one Markdown file, in order, in a directory of their own.

Each file gets a fresh directory (its working directory, holding its SQLite database ``gradbook.db``,
the files its blocks save, and plug-ins its ``toml`` blocks install) and an environment without any
GRADBOOK_* variable of the caller. What each kind of block does:

- ``sh`` / ``console``: each command runs and must exit 0 (or the code its ``# exit N`` comment
  names); a console block's output lines must appear in what the command printed. A plain
  ``gradbook ...`` command runs in a fork of the fork server; anything else (curl, pipes, redirects)
  in bash. ``gradbook serve ...`` starts a real server on 127.0.0.1 and a free port instead of the
  documented 8000, with one worker; ``127.0.0.1:8000`` in later commands means that server. A REST
  command before any ``gradbook serve`` line starts one too. The server stops at the end of the file.
- ``json``: parsed. A job spec (an object with "model" and "optimizer") must pass
  ``service.jobs.spec.parse_spec`` (or, marked ``invalid``, be refused by it), and a short one is
  trained with ``gradbook train`` into a scratch database, so the file's job ids stay as documented.
- ``python``: run as a script in the file's directory; with ``file=NAME`` only saved (a module).
- ``toml``: parsed; a ``[project]`` with ``gradbook.optimizers`` entry points is installed into the
  file's directory (a ``.dist-info`` as pip writes it, found through PYTHONPATH), as ``pip install``
  would install the package.
- ``text`` / ``csv``: shown, not run (saved when they name a file).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

from tests.docs.blocks import Block, Command, commands, output_matches

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_ADDRESS = re.compile(r"(?:127\.0\.0\.1|localhost):8000")
SHORT_STEPS = 2_000          # a documented spec up to this long is trained, not only validated
REPLY_DEADLINE_S = 300.0     # only for a hung example; nothing here waits for time otherwise
SERVER_START_S = 120.0
PLUGIN_GROUP = "gradbook.optimizers"

SPEC_CHECK = """
import json, math, sys
from service.jobs.spec import SpecError, parse_spec

path, expect, database_url = sys.argv[1:4]
with open(path, encoding="utf-8") as f:
    doc = json.load(f)
try:
    spec = parse_spec(doc)
except SpecError as e:
    print(e, file=sys.stderr)
    sys.exit(0 if expect == "invalid" else 1)
if expect == "invalid":
    sys.exit("parse_spec accepted a spec documented as invalid")
rows = len(spec.data.x) if hasattr(spec.data, "x") else getattr(spec.data, "n", None)
if spec.steps is not None:
    total = spec.steps
elif rows is not None:
    total = spec.epochs * math.ceil(rows / (spec.batch_size or rows))
else:
    total = None
if total is not None and total <= int(sys.argv[4]) and not hasattr(spec.data, "dataset_id"):
    from cli.main import app
    app(args=["train", path, "--quiet", "--database-url", database_url], prog_name="gradbook")
"""


def base_env(workdir: Path) -> dict[str, str]:
    """The caller's environment without GRADBOOK_*; this venv's scripts first on PATH; the example
    directory (its plug-ins) and this checkout importable; no colours, wide lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADBOOK_") and k != "PYTHONPATH"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=f"{workdir}{os.pathsep}{ROOT}", NO_COLOR="1", COLUMNS="200",
               GRADBOOK_WORKERS="1")
    return env


class ForkServer:
    """The client end of tests/docs/forkserver.py (one per test session)."""

    def __init__(self, logdir: Path):
        self.log = open(logdir / "forkserver.log", "wb")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # A session of its own: if an example hangs, close() ends the server and everything it started.
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        env=env, cwd=ROOT, text=True, start_new_session=True)

    def request(self, request: dict) -> dict:
        assert self.process.poll() is None, f"the fork server has ended; see {self.log.name}"
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], REPLY_DEADLINE_S)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self._kill()  # a late answer would be taken for the next request's
            raise AssertionError(f"the fork server did not answer {request.get('argv')}; see {self.log.name}")
        return json.loads(line)

    def run(self, request: dict) -> int:
        return self.request(request)["code"]

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:  # still waiting for a hung example
            self._kill()
        self.log.close()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


class Server:
    """`gradbook serve` as a documented line starts it, on a free loopback port (a fork of the fork
    server, so it starts without a second of imports)."""

    def __init__(self, forks: ForkServer, argv: list[str], workdir: Path, env: dict):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.forks = forks
        self.log = workdir / f"server-{self.port}.log"
        argv = [*_without_options(argv, ("--port", "--host", "--log-level")), "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning"]
        self.pid = forks.request({"kind": "cli", "argv": argv, "background": True, "cwd": str(workdir),
                                  "env": env, "stdout": str(self.log), "stderr": str(self.log)})["pid"]
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _health(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            health = self._health()
            if health and health["executor"]["ready"] == health["executor"]["workers"]:
                return
            assert _running(self.pid), f"gradbook serve exited:\n{self._log_tail()}"
            assert time.monotonic() < deadline, f"gradbook serve never became ready:\n{self._log_tail()}"
            time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.forks.run({"kind": "stop", "pid": self.pid})


def _running(pid: int) -> bool:
    """False once the process has exited (a zombie until the fork server reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(n + "=" for n in names)):
            out.append(arg)
    return out


def _check_not_run(block: Block, command: Command) -> None:
    """A ``norun`` block may only show what cannot run inside this test, and that must exist: make
    targets (they build the venv and run the whole suite) and benchmark scripts (minutes of load)."""
    words = shlex.split(command.text, comments=True)
    where = f"{block.path.name}:{command.line}"
    if words[:1] == ["make"]:
        targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
        assert set(words[1:]) <= targets, f"{where}: no make target {sorted(set(words[1:]) - targets)}"
        return
    scripts = [w for w in words if w.startswith("benchmarks/")]
    assert scripts, f"{where}: only make targets and benchmarks may be shown without running"
    for script in scripts:
        assert (ROOT / script).is_file(), f"{where}: no {script}"


def _plain_gradbook(text: str) -> list[str] | None:
    """The arguments of a plain `gradbook ...` command (no shell syntax), or None."""
    if re.search(r"[|&;<>()$`*?~\\]", text):
        return None
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    if not words or words[0] != "gradbook":
        return None
    return words[1:]


class DocRun:
    """The examples of one Markdown file, run in ``workdir`` through ``forks``."""

    def __init__(self, forks: ForkServer, workdir: Path):
        self.forks = forks
        self.workdir = workdir
        self.env = base_env(workdir)
        self.server: Server | None = None
        self.scratch = workdir / ".scratch"
        self.scratch.mkdir()
        self.counter = 0

    def run(self, blocks: list[Block]) -> None:
        try:
            for block in blocks:
                self.block(block)
        finally:
            if self.server is not None:
                self.server.stop()

    # --- blocks

    def block(self, block: Block) -> None:
        if not block.runs:
            for command in commands(block):
                _check_not_run(block, command)
            return
        if block.file:
            (self.workdir / block.file).write_text(block.text, encoding="utf-8")
        if block.lang in ("sh", "console"):
            for command in commands(block):
                self.command(block, command)
        elif block.lang == "json":
            self.json_block(block)
        elif block.lang == "python":
            if block.file:
                compile(block.text, block.file, "exec")  # a module: imported by the examples after it
            else:
                self.python(block)
        elif block.lang == "toml":
            self.toml_block(block)

    def json_block(self, block: Block) -> None:
        try:
            doc = json.loads(block.text)
        except json.JSONDecodeError as e:
            raise AssertionError(f"{block.where}: not JSON: {e}") from None
        if not (isinstance(doc, dict) and "model" in doc and "optimizer" in doc):
            return
        path = self.workdir / block.file if block.file else self._scratch_file(".json", block.text)
        expect = "invalid" if "invalid" in block.attrs else "valid"
        scratch_db = f"sqlite:///{self.scratch / 'specs.db'}"
        code, out, err = self._fork({"kind": "python", "code": SPEC_CHECK, "name": "<spec check>",
                                     "argv": [str(path), expect, scratch_db, str(SHORT_STEPS)]})
        assert code == 0, f"{block.where}: the job spec failed its check (exit {code}):\n{out}{err}"

    def python(self, block: Block) -> None:
        code, out, err = self._fork({"kind": "python", "code": block.text, "name": block.where, "argv": []})
        assert code == 0, f"{block.where}: the Python example failed (exit {code}):\n{out}{err}"

    def toml_block(self, block: Block) -> None:
        try:
            doc = tomllib.loads(block.text)
        except tomllib.TOMLDecodeError as e:
            raise AssertionError(f"{block.where}: not TOML: {e}") from None
        project = doc.get("project", {})
        plugins = project.get("entry-points", {}).get(PLUGIN_GROUP)
        if plugins:
            self._install(project["name"], project.get("version", "0"), plugins)

    def _install(self, name: str, version: str, plugins: dict[str, str]) -> None:
        """What pip writes for the package's metadata: enough for importlib.metadata to list it."""
        info = self.workdir / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{key} = {value}\n" for key, value in plugins.items())
        (info / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\n{lines}")

    # --- commands

    def command(self, block: Block, command: Command) -> None:
        where = f"{block.path.name}:{command.line}"
        text = command.text
        argv = _plain_gradbook(text)
        if argv is not None and argv[:1] == ["serve"]:
            assert self.server is None, f"{where}: a second server in one file"
            self.server = Server(self.forks, argv, self.workdir, self.env)
            return
        if DOCUMENTED_ADDRESS.search(text):
            if self.server is None:
                self.server = Server(self.forks, ["serve"], self.workdir, self.env)
            text = DOCUMENTED_ADDRESS.sub(f"127.0.0.1:{self.server.port}", text)
            argv = _plain_gradbook(text)
        if argv is not None:
            code, out, err = self._fork({"kind": "cli", "argv": argv})
        else:
            done = subprocess.run(["bash", "-c", text], cwd=self.workdir, env=self.env, capture_output=True,
                                  text=True, timeout=REPLY_DEADLINE_S)
            code, out, err = done.returncode, done.stdout, done.stderr
        assert code == command.expected_exit, (
            f"{where}: `{command.text}` exited {code}, expected {command.expected_exit}\n"
            f"--- stdout\n{out}--- stderr\n{err}")
        missing = output_matches(command.output, out, err)
        assert missing is None, (f"{where}: `{command.text}` did not print {missing!r}\n"
                                 f"--- stdout\n{out}--- stderr\n{err}")

    def _fork(self, request: dict) -> tuple[int, str, str]:
        self.counter += 1
        out, err = (self.scratch / f"{self.counter}.{s}" for s in ("out", "err"))
        code = self.forks.run({"cwd": str(self.workdir), "env": self.env, "stdout": str(out),
                               "stderr": str(err), **request})
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")

    def _scratch_file(self, suffix: str, text: str) -> Path:
        self.counter += 1
        path = self.scratch / f"{self.counter}{suffix}"
        path.write_text(text, encoding="utf-8")
        return path

