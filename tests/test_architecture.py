"""The structure docs/architecture.md describes, checked: imports point one way and never form a
circle, counting imports made inside functions, and the CLI reaches the service only through its
face (service/__init__.py) and the app it serves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("autodiff", "optim", "service", "cli")

# Which top-level parts may import which (a part imports itself freely). Listed by what each may use.
ALLOWED = {
    "autodiff": set(),
    "optim": {"autodiff"},
    "service.domain": set(),
    "service.config": set(),
    "service.jobs": {"autodiff", "optim", "service.domain", "service.config"},
    "service.store": {"service.domain", "service.config"},
    "service.runtime": {"autodiff", "optim", "service.domain", "service.config", "service.jobs",
                        "service.store"},
    "service.api": {"autodiff", "optim", "service.domain", "service.config", "service.jobs",
                    "service.store", "service.runtime"},
    # the face re-exports for the CLI; cli reaches the service only through it (and the app it serves)
    "service": {"autodiff", "optim", "service.domain", "service.config", "service.jobs", "service.store",
                "service.runtime", "service.api"},
    "cli": {"service", "service.api.app"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that ``name`` imports, anywhere in the file (functions included)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def part(module: str) -> str:
    """The entry of ALLOWED a module belongs to: the longest matching prefix."""
    best = max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)
    return best


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_imports_point_one_way():
    wrong = []
    for name, targets in GRAPH.items():
        here = part(name)
        for target in targets:
            there = part(target)
            ok = there == here or there in ALLOWED[here] or (here == "cli" and target in ALLOWED["cli"])
            if not ok:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle():
    # A package's __init__ re-exporting its own modules is not a circle of the design; an import
    # of a package goes to its __init__, so a module importing its own package counts here.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(n for n in modules() if not n.startswith("autodiff.ops")))
def test_modules_stay_small(name):
    lines = modules()[name].read_text().count("\n")
    assert lines <= 520, f"{name} has {lines} lines; split it by concern"
