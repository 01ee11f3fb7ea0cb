"""The optimizer registry: ``register``, ``create``, ``available``, fed by entry points.

Every optimizer, built-in or third-party, is found through the entry-point group
``gradbook.optimizers`` (``name = "module:Class"``); gradbook's own pyproject.toml registers the
built-ins there, so discovery runs on every lookup path. ``@register(name)`` adds a class directly
(for a notebook or a test). Discovery happens once, lazily; a plug-in that fails to import does not
break the others: its error is kept and reported when its name is asked for.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points

from .errors import RegistryError, UnknownOptimizerError
from .optimizer import Optimizer
from .options import describe_options

GROUP = "gradbook.optimizers"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_registry: dict[str, type[Optimizer]] = {}
_sources: dict[str, str] = {}
_broken: dict[str, str] = {}
_discovered = False


def _add(name: str, cls, source: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(f"optimizer names are lower-case identifiers ([a-z][a-z0-9_]*), got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise RegistryError(f"optimizer {name!r} from {source}: {cls!r} is not a subclass of optim.Optimizer")
    old = _registry.get(name)
    if old is not None and old is not cls:
        raise RegistryError(
            f"optimizer name {name!r} is taken by {old.__module__}.{old.__qualname__} "
            f"(from {_sources[name]}); "
            f"cannot register {cls.__module__}.{cls.__qualname__} from {source}"
        )
    if not cls.__dict__.get("name"):
        cls.name = name  # state dicts record it
    _registry[name] = cls
    _sources[name] = source


def register(name: str):
    """Class decorator: ``@optim.register("signsgd") class SignSGD(optim.Optimizer): ...``."""

    def decorate(cls):
        _add(name, cls, "optim.register")
        return cls

    return decorate


def unregister(name: str) -> None:
    """Remove a name added with :func:`register` (a test cleaning up after itself)."""
    if name not in _registry:
        raise UnknownOptimizerError(f"unknown optimizer {name!r}; nothing to unregister")
    del _registry[name]
    del _sources[name]


def discover(force: bool = False) -> None:
    """Load every entry point of the ``gradbook.optimizers`` group (once, unless ``force``)."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    for ep in entry_points(group=GROUP):
        source = f"entry point {ep.name} = {ep.value}" + (f" of {ep.dist.name}" if ep.dist else "")
        try:
            _add(ep.name, ep.load(), source)
            _broken.pop(ep.name, None)
        except Exception as e:  # a broken plug-in must not take the others down
            _broken[ep.name] = f"{source}: {type(e).__name__}: {e}"


def get(name: str) -> type[Optimizer]:
    """The optimizer class registered under ``name``."""
    discover()
    cls = _registry.get(name)
    if cls is not None:
        return cls
    if name in _broken:
        raise UnknownOptimizerError(f"optimizer {name!r} failed to load: {_broken[name]}")
    known = ", ".join(sorted(_registry)) or "(none: is gradbook installed, e.g. pip install -e .?)"
    raise UnknownOptimizerError(f"unknown optimizer {name!r}; known optimizers: {known}")


def create(name: str, params, **hyperparameters) -> Optimizer:
    """``create("adam", model.parameters(), lr=1e-3, schedule={...}, clip_grad_norm=1.0)``."""
    return get(name)(params, **hyperparameters)


def available() -> list[dict]:
    """JSON-able description of every registered optimizer: name, class, source, summary, each
    hyperparameter (name, type, default, allowed range) and the common options."""
    discover()
    out = []
    for name in sorted(_registry):
        cls = _registry[name]
        doc = (cls.__doc__ or "").strip()
        out.append({
            "name": name,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "source": _sources[name],
            "summary": " ".join(doc.split("\n\n")[0].split()),
            "hyperparameters": [h.describe() for h in cls.hyperparameters],
            "options": describe_options(),
        })
    return out


def load_errors() -> dict[str, str]:
    """Entry points that failed to load, name -> reason."""
    discover()
    return dict(_broken)
