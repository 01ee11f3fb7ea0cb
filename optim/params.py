"""Turn what a user passes as ``params`` into named parameters and groups.

Accepted: a mapping name -> Tensor (``MLP.parameters()``), an iterable of Tensors, or a list of
group dicts ``{"params": <mapping or iterable or Tensor>, <hyperparameter overrides>...}``.
Names matter because state dicts match by name: a mapping's keys win; otherwise the tensors' own
``.name`` when every tensor has one and they are all distinct; otherwise positions ("0", "1", ...
for one group, "<group>.<index>" for several).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from autodiff import Tensor


class NamedParam:
    __slots__ = ("name", "tensor", "group")

    def __init__(self, name: str, tensor: Tensor, group: int):
        self.name = name
        self.tensor = tensor
        self.group = group


def _is_tensor_mapping(obj) -> bool:
    return isinstance(obj, Mapping) and "params" not in obj


def _group_members(params, owner: str, where: str) -> tuple[list[Tensor], list[str] | None]:
    """Tensors of one group and their mapping keys (None when the group was not a mapping)."""
    if isinstance(params, Tensor):
        return [params], None
    if isinstance(params, Mapping):
        keys = list(params)
        bad = [k for k in keys if not isinstance(k, str) or not k]
        if bad:
            raise TypeError(f"{owner}: parameter names must be non-empty strings, got {bad[0]!r}{where}")
        tensors = list(params.values())
        names: list[str] | None = keys
    else:
        try:
            tensors = list(params)
        except TypeError:
            raise TypeError(
                f"{owner}: params must be a mapping name -> Tensor, an iterable of Tensors or a list of "
                f"parameter-group dicts, got {type(params).__name__}{where}"
            ) from None
        names = None
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            label = repr(names[i]) if names else f"at position {i}"
            raise TypeError(
                f"{owner}: parameter {label}{where} is a {type(t).__name__}, not an autodiff.Tensor")
        if t.data.dtype.kind != "f":
            label = repr(names[i]) if names else f"at position {i}"
            raise TypeError(
                f"{owner}: parameter {label}{where} has dtype {t.data.dtype}; optimizers need floating-point "
                "parameters"
            )
    return tensors, names


def collect(params, owner: str) -> tuple[list[NamedParam], list[dict]]:
    """Return the named parameters (in the order given) and each group's hyperparameter overrides."""
    if isinstance(params, Tensor):
        raise TypeError(f"{owner}: params must be an iterable of Tensors or a mapping, not a single Tensor; "
                        "wrap it in a list")
    if _is_tensor_mapping(params):
        raw_groups = [{"params": params}]
    else:
        try:
            items = list(params)
        except TypeError:
            raise TypeError(
                f"{owner}: params must be a mapping name -> Tensor, an iterable of Tensors or a list of "
                f"parameter-group dicts, got {type(params).__name__}"
            ) from None
        if items and all(isinstance(x, Mapping) for x in items):
            for gi, g in enumerate(items):
                if "params" not in g:
                    raise TypeError(f"{owner}: parameter group {gi} has no 'params' entry")
            raw_groups = [dict(g) for g in items]
        elif any(isinstance(x, Mapping) for x in items):
            raise TypeError(f"{owner}: params mixes parameter-group dicts with other items; pass only groups")
        else:
            raw_groups = [{"params": items}]

    members = []
    for gi, g in enumerate(raw_groups):
        where = f" (group {gi})" if len(raw_groups) > 1 else ""
        members.append(_group_members(g["params"], owner, where))
    if sum(len(t) for t, _ in members) == 0:
        raise ValueError(f"{owner}: got an empty parameter list")

    all_tensors = [t for ts, _ in members for t in ts]
    tensor_names = [t.name for t in all_tensors]
    use_tensor_names = all(isinstance(n, str) and n for n in tensor_names) and len(set(tensor_names)) == len(
        tensor_names
    )
    named: list[NamedParam] = []
    for gi, (tensors, keys) in enumerate(members):
        for i, t in enumerate(tensors):
            if keys is not None:
                name = keys[i]
            elif use_tensor_names:
                name = t.name
            elif len(members) == 1:
                name = str(i)
            else:
                name = f"{gi}.{i}"
            named.append(NamedParam(name, t, gi))

    seen_names: dict[str, int] = {}
    seen_tensors: dict[int, str] = {}
    for p in named:
        if p.name in seen_names:
            raise ValueError(f"{owner}: two parameters are named {p.name!r}; names must be unique")
        seen_names[p.name] = 1
        if id(p.tensor) in seen_tensors:
            raise ValueError(
                f"{owner}: the same tensor appears twice, as {seen_tensors[id(p.tensor)]!r} and {p.name!r}"
            )
        seen_tensors[id(p.tensor)] = p.name
    overrides = [{k: v for k, v in g.items() if k != "params"} for g in raw_groups]
    return named, overrides


def dtype_name(dtype) -> str:
    return np.dtype(dtype).name
