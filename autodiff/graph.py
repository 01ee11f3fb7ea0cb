"""The computation graph as data: every node with its op, name, forward value and derivative.

    with ad.trace() as tr:
        J = model_and_loss(...)
    J.backward()
    print(tr.graph.table())      # or .dot(), .to_dict()

``Graph.from_output(J)`` builds the same from an output tensor (call it before ``backward``,
which frees the graph).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import numpy as np

from .core import Tensor, topological_order, tracing


@dataclass
class Node:
    index: int
    default_name: str
    op: str  # "input" for tensors made by the user, "const" for plain numbers and arrays
    inputs: list[int]
    tensor: Tensor | None = None
    constant: np.ndarray | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The tensor's name when it has one (read now: ops are named after they are recorded)."""
        return (self.tensor.name if self.tensor is not None else None) or self.default_name

    @property
    def value(self) -> np.ndarray:
        return self.tensor.data if self.tensor is not None else self.constant

    @property
    def grad(self) -> np.ndarray | None:
        return self.tensor.grad if self.tensor is not None else None


class Graph:
    """Nodes in topological order (inputs first, the output last)."""

    def __init__(self):
        self.nodes: list[Node] = []
        self._index: dict[int, int] = {}
        self._keep: list = []  # keeps recorded tensors' ids unique while the graph lives

    def _node_for(self, t: Tensor) -> int:
        key = id(t)
        if key not in self._index:
            self._add(t, "input", [])
        return self._index[key]

    def _add(self, t: Tensor, op: str, inputs: list[int]) -> int:
        i = len(self.nodes)
        self.nodes.append(Node(i, f"{op}{i}", op, inputs, tensor=t))
        self._index[id(t)] = i
        self._keep.append(t)
        return i

    def _add_op(self, t: Tensor) -> None:
        inputs = []
        for parent, arg in zip(t.parents, t.operands, strict=False):
            if parent is None:
                i = len(self.nodes)
                self.nodes.append(Node(i, _format(arg), "const", [], constant=np.asarray(arg)))
                inputs.append(i)
            else:
                inputs.append(self._node_for(parent))
        t.retain_grad()
        self._add(t, t.op, inputs)

    @classmethod
    def from_output(cls, out: Tensor) -> Graph:
        """The graph that computed `out`; marks its nodes so backward keeps their derivatives."""
        order = topological_order(out) if out.requires_grad else [out]
        graph = cls()
        for t in order:
            if t.is_leaf:
                graph._node_for(t)
            else:
                graph._add_op(t)
        return graph

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; nodes are {[n.name for n in self.nodes]}")

    # --- renderings

    def to_dict(self) -> dict:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=float).tolist()

        return {
            "output": self.output.name,
            "nodes": [
                {"index": n.index, "name": n.name, "op": n.op, "inputs": n.inputs,
                 "shape": list(np.shape(n.value)), "value": arr(n.value), "grad": arr(n.grad)}
                for n in self.nodes
            ],
        }

    @classmethod
    def from_dict(cls, doc: dict) -> Graph:
        """The graph back from its ``to_dict()`` form (as sent over JSON), so that it renders exactly
        as the original did. Non-finite entries sent as null come back as NaN."""
        def arr(value):  # NumPy reads None as NaN for a float array
            return None if value is None else np.asarray(value, dtype=float)

        graph = cls()
        for n in doc["nodes"]:
            tensor = Tensor(arr(n["value"]), name=n["name"])
            tensor.grad = arr(n.get("grad"))
            graph.nodes.append(Node(n["index"], n["name"], n["op"], list(n["inputs"]), tensor=tensor))
        return graph

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def table(self) -> str:
        out = self.output.name
        rows = [("node", "op", "inputs", "value", f"d{out}/d(node)")]
        for n in self.nodes:
            args = ", ".join(self.nodes[i].name for i in n.inputs)
            rows.append((n.name, n.op, args, _format(n.value), _format(n.grad)))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def dot(self) -> str:
        out = self.output.name
        lines = ["digraph computation {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
        for n in self.nodes:
            label = f"{n.name} = {n.op}" if n.op not in ("input", "const") else n.name
            label += f"\\nvalue {_format(n.value)}"
            if n.grad is not None:
                label += f"\\nd{out}/d{n.name} {_format(n.grad)}"
            style = ', style=dashed' if n.op == "const" else ""
            lines.append(f'  n{n.index} [label="{label}"{style}];')
            lines.extend(f"  n{i} -> n{n.index};" for i in n.inputs)
        lines.append("}")
        return "\n".join(lines)


def _format(a) -> str:
    if a is None:
        return "-"
    a = np.asarray(a)
    if a.size == 1:
        return f"{float(a.reshape(())):.7g}"
    flat = ", ".join(f"{float(v):.4g}" for v in a.reshape(-1)[:4])
    return f"[{flat}{', ...' if a.size > 4 else ''}] shape {a.shape}"


class Trace:
    def __init__(self):
        self.graph = Graph()


@contextlib.contextmanager
def _recording():
    tr = Trace()
    with tracing(tr.graph._add_op):
        yield tr


def trace(what=None, *inputs):
    """The computation graph, three ways:

    - ``with ad.trace() as tr: ...`` records every op evaluated in the block into ``tr.graph``;
    - ``ad.trace(output)`` is the graph that computed an output tensor (:meth:`Graph.from_output`);
    - ``ad.trace(fn, *inputs)`` evaluates ``fn(*inputs)``, runs backward when the result is a scalar
      that needs gradients, and returns the graph with values and derivatives.
    Derivatives appear once backward has run (call it after ``trace`` for the first two forms).
    """
    if what is None:
        return _recording()
    if isinstance(what, Tensor):
        return Graph.from_output(what)
    with _recording() as tr:
        out = what(*inputs)
    if isinstance(out, Tensor) and out.requires_grad and out.data.size == 1:
        out.backward()
    return tr.graph
