"""The fenced examples of a Markdown file, and the commands inside the shell ones.

A fence's info string is a language and optional attributes: ```` ```json file=seed.json ```` saves
the block as ``seed.json`` in the example directory; ```` ```sh norun ```` is shown, never run (only
for commands that the test cannot run inside itself, such as ``make test``). In a ``sh`` block every
line is a command; in a ``console`` block lines starting with ``$ `` are commands and the lines after
one are output it must print. A trailing backslash continues a command on the next line. A command
whose comment says ``# exit N`` must exit with N (an expected failure); every other command, 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RUN = frozenset({"sh", "console"})                     # commands
CHECKED = frozenset({"json", "python", "toml"})        # parsed, and run or validated
SHOWN = frozenset({"text", "csv"})                     # output, trees, data: never run
LANGUAGES = RUN | CHECKED | SHOWN

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
EXPECTED_EXIT = re.compile(r"#\s*exits?\s+(?P<code>\d+)\b")


@dataclass
class Block:
    path: Path
    line: int                         # 1-based line of the opening fence
    lang: str
    attrs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def file(self) -> str | None:
        return self.attrs.get("file")

    @property
    def runs(self) -> bool:
        return "norun" not in self.attrs


@dataclass
class Command:
    line: int                         # 1-based line in the Markdown file
    text: str
    expected_exit: int = 0
    output: list[str] = field(default_factory=list)   # lines a console block shows after it


def parse_info(info: str) -> tuple[str, dict[str, str]]:
    words = info.split()
    if not words:
        return "", {}
    attrs = {}
    for word in words[1:]:
        key, _, value = word.partition("=")
        attrs[key] = value
    return words[0], attrs


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    found = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, start = m["fence"], i
        lang, attrs = parse_info(m["info"])
        body = []
        i += 1
        while i < len(lines) and not (lines[i].startswith(fence[0] * len(fence))
                                      and not lines[i].strip(fence[0]).strip()):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path.name}:{start + 1}: the fence is never closed")
        found.append(Block(path, start + 1, lang, attrs, "\n".join(body) + "\n"))
        i += 1
    return found


def commands(block: Block) -> list[Command]:
    """The commands of a ``sh`` or ``console`` block, continuation lines joined."""
    out: list[Command] = []
    pending: Command | None = None
    console = block.lang == "console"
    for offset, raw in enumerate(block.text.splitlines()):
        number = block.line + 1 + offset
        if pending is not None:  # a continued command
            part = raw[2:] if console and raw.startswith("> ") else raw
            pending.text = pending.text[:-1] + " " + part.strip()
            if not pending.text.endswith("\\"):
                _finish(pending)
                pending = None
            continue
        if console and not raw.startswith("$ "):
            if raw.strip():
                if not out:
                    raise ValueError(f"{block.where}: output before the first `$ ` command")
                out[-1].output.append(raw)
            continue
        text = raw[2:] if console else raw
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        command = Command(number, text.strip())
        out.append(command)
        if command.text.endswith("\\"):
            pending = command
        else:
            _finish(command)
    if pending is not None:
        raise ValueError(f"{block.where}: the last command ends with a backslash")
    return out


def _finish(command: Command) -> None:
    m = EXPECTED_EXIT.search(command.text)
    if m is not None:
        command.expected_exit = int(m["code"])


def output_matches(expected: list[str], *streams: str) -> str | None:
    """None when every expected line matches a line of the streams (stdout, stderr), in order
    within each stream; else the first line that does not.

    Whitespace runs compare equal, and ``...`` stands for any text (timings, dates)."""
    lines = [[" ".join(line.split()) for line in stream.splitlines()] for stream in streams]
    at = [0] * len(lines)
    for want in expected:
        pattern = re.compile(".*".join(re.escape(" ".join(part.split())) for part in want.split("...")))
        for i, stream in enumerate(lines):
            found = next((k for k in range(at[i], len(stream)) if pattern.fullmatch(stream[k])), None)
            if found is not None:
                at[i] = found + 1
                break
        else:
            return want
    return None
