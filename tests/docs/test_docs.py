"""Docs are code: every fenced example of README.md and docs/*.md runs, in order, file by file (see
tests/docs/examples.py for what each kind of block does), so a renamed flag, a changed output or a
spec field that no longer validates fails here instead of misleading a reader."""

from __future__ import annotations

import re

import pytest

from tests.docs.blocks import LANGUAGES, blocks
from tests.docs.examples import ROOT, DocRun, ForkServer

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES = ("architecture", "cli", "optimizers", "performance", "rest", "spec", "storage")
README_MAX_CHARS = 12_500  # a front door: what gradbook is, the quick start, a tour, links to docs/
ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)`")
LINK = re.compile(r"\]\((?!https?://|#)(?P<target>[^)#\s]+)(?:#[^)]*)?\)")


@pytest.fixture(scope="module")
def forks(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server
    server.close()


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_examples_run(path, forks, tmp_path):
    DocRun(forks, tmp_path).run(blocks(path))


def test_every_page_is_there_and_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert (ROOT / "docs" / f"{page}.md").is_file(), f"docs/{page}.md is missing"
        assert f"docs/{page}.md" in readme, f"README.md does not link docs/{page}.md"


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_links_and_fences(path):
    text = path.read_text(encoding="utf-8")
    for m in LINK.finditer(text):
        assert (path.parent / m["target"]).exists(), f"{path.name}: broken link {m['target']}"
    for block in blocks(path):
        assert block.lang in LANGUAGES, (f"{block.where}: fence language {block.lang!r}; use one of "
                                         f"{', '.join(sorted(LANGUAGES))} (text for output and trees)")


def test_readme_stays_a_front_door():
    size = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert size <= README_MAX_CHARS, f"README.md has {size:,} characters; move details to docs/"


# --- the harness itself: a broken example must fail ----------------------------------------------------


BROKEN = {
    "a command that fails": "```sh\ngradbook jobs --no-such-option\n```\n",
    "an expected failure that succeeds": "```sh\ngradbook presets  # exit 2\n```\n",
    "output that is not printed": "```console\n$ gradbook presets\nno such preset\n```\n",
    "a spec that does not validate": '```json\n{"model": {"layers": []}, "optimizer": {}}\n```\n',
    "a Python example that raises": "```python\nraise SystemExit('broken')\n```\n",
    "a norun line that is not a make target": "```sh norun\nmake no-such-target\n```\n",
}


@pytest.mark.parametrize("markdown", BROKEN.values(), ids=list(BROKEN))
def test_a_broken_example_fails(markdown, forks, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(markdown)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssertionError):
        DocRun(forks, work).run(blocks(page))


def test_console_output_and_expected_exit_codes_pass(forks, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ gradbook presets\nseed ... The lecture's network: ...\n"
                    "$ gradbook train --preset nope  # exit 2\n... unknown preset ...\n```\n")
    work = tmp_path / "work"
    work.mkdir()
    DocRun(forks, work).run(blocks(page))


def test_cli_md_covers_every_command_and_option():
    """A command or option added to `gradbook` without a word in docs/cli.md fails here."""
    import typer.main

    from cli.main import app

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")

    def walk(group, prefix=""):
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):
                yield from walk(command, f"{prefix}{name} ")
            else:
                yield prefix + name, command

    for name, command in walk(typer.main.get_command(app)):
        assert f"\n## {name}\n" in text, f"docs/cli.md has no section for `gradbook {name}`"
        options = [o for p in command.params for o in p.opts if o.startswith("--") and o != "--help"]
        missing = [o for o in options if o not in text]
        assert not missing, f"docs/cli.md does not mention {', '.join(missing)} of `gradbook {name}`"


def test_rest_md_covers_every_endpoint():
    """An endpoint in the OpenAPI document without a word in docs/rest.md fails here."""
    from service.api.app import create_app

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    text = (ROOT / "docs" / "rest.md").read_text(encoding="utf-8")
    documented = {(method, shape(path)) for method, path in ENDPOINT.findall(text)}
    for path, operations in create_app().openapi()["paths"].items():
        for method in operations:
            assert (method.upper(), shape(path)) in documented, f"docs/rest.md lacks {method.upper()} {path}"
