"""Declared hyperparameters: name, type, default and allowed range, used to validate and to describe.

Every optimizer, schedule and option declares its fields as :class:`Hyper` objects; the same
declaration validates user input (errors name the field and the range) and feeds
``optim.available()``, which the service serves as JSON.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import HyperparameterError, attempt, raise_all, shown

KINDS = ("float", "int", "bool", "pair", "int_list", "choice")


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return repr(int(x)) if float(x).is_integer() else repr(x)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True)
class Hyper:
    """One field: ``kind`` is float, int, bool, pair (two floats, e.g. betas), int_list (sorted
    non-negative integers, e.g. milestones) or choice (one of ``choices``). Numbers lie in
    ``[low, high]``, with either end open when ``low_open``/``high_open``. ``nullable`` admits None."""

    name: str
    kind: str
    default: object
    doc: str = ""
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    nullable: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Hyper {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")

    # --- text

    def interval(self) -> str:
        lo = "(" if self.low_open or self.low == -math.inf else "["
        hi = ")" if self.high_open or self.high == math.inf else "]"
        return f"{lo}{_fmt(self.low)}, {_fmt(self.high)}{hi}"

    def allowed(self) -> str:
        if self.kind == "float":
            text = f"a number in {self.interval()}"
        elif self.kind == "int":
            text = f"an integer in {self.interval()}"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "pair":
            text = f"a pair of numbers, each in {self.interval()}"
        elif self.kind == "int_list":
            text = f"a list of increasing integers, each in {self.interval()}"
        else:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        return text + (" or null" if self.nullable else "")

    # --- checking

    def _in_range(self, x: float) -> bool:
        if math.isnan(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def validate(self, value, owner: str):
        """Return ``value`` normalised (floats as float, pairs as tuples) or raise
        :class:`HyperparameterError` naming ``owner`` and this field."""
        if value is None and self.nullable:
            return None
        normalised = self._normalise(value)
        if normalised is _BAD:
            raise HyperparameterError(
                f"{owner}: {self.name} must be {self.allowed()}, got {shown(value)}",
                name=self.name, allowed=self.allowed(), value=value,
            )
        return normalised

    def _normalise(self, value):
        kind = self.kind
        if kind == "float":
            return float(value) if _is_number(value) and self._in_range(float(value)) else _BAD
        if kind == "int":
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            return int(value) if ok and self._in_range(int(value)) else _BAD
        if kind == "bool":
            return bool(value) if isinstance(value, bool) or type(value).__name__ == "bool_" else _BAD
        if kind == "pair":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
                return _BAD
            if not all(_is_number(v) and self._in_range(float(v)) for v in value):
                return _BAD
            return (float(value[0]), float(value[1]))
        if kind == "int_list":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                return _BAD
            items = list(value)
            if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
                return _BAD
            items = [int(v) for v in items]
            increasing = all(b > a for a, b in zip(items[:-1], items[1:], strict=True))
            if not increasing or not all(self._in_range(v) for v in items):
                return _BAD
            return tuple(items)
        return value if value in self.choices else _BAD

    # --- description

    def describe(self) -> dict:
        """JSON-able description: name, type, default, allowed range (inf becomes null)."""

        def num(x):
            return None if math.isinf(x) else x

        out = {"name": self.name, "type": self.kind, "default": _jsonable(self.default),
               "allowed": self.allowed(), "doc": self.doc, "nullable": self.nullable,
               "required": self.default is None and not self.nullable}
        if self.kind in ("float", "int", "pair", "int_list"):
            out.update(min=num(self.low), max=num(self.high),
                       min_inclusive=not self.low_open and not math.isinf(self.low),
                       max_inclusive=not self.high_open and not math.isinf(self.high))
        if self.kind == "choice":
            out["choices"] = list(self.choices)
        return out


_BAD = object()


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def validate_all(specs: dict[str, Hyper], values: dict, owner: str, what: str = "hyperparameter") -> dict:
    """Validate a dict of values against declared fields, filling defaults; unknown names are an
    error that lists the known ones. Every bad field is reported (see HyperparameterError.errors)."""
    known = ", ".join(specs) or "(none)"
    errors = [HyperparameterError(f"{owner}: unknown {what} {shown(k)}; known {what}s: {known}",
                                  name=k, allowed=known, value=values[k])
              for k in values if k not in specs]
    out = {name: attempt(errors, spec.validate, values.get(name, spec.default), owner)
           for name, spec in specs.items()}
    raise_all(errors)
    return out


def to_json(values: dict) -> dict:
    return {k: _jsonable(v) for k, v in values.items()}


# --- fields shared by the built-in optimizers (torch's ranges)


def lr_field(default: float) -> Hyper:
    return Hyper("lr", "float", default, "learning rate (the base value under a schedule)", low=0.0)


def betas_field(default=(0.9, 0.999)) -> Hyper:
    return Hyper("betas", "pair", default, "decay rates of the first and second moment estimates",
                 low=0.0, high=1.0, high_open=True)


def eps_field(default: float) -> Hyper:
    return Hyper("eps", "float", default, "added to the denominator for numerical stability", low=0.0)


def weight_decay_field(default: float = 0.0, decoupled: bool = False) -> Hyper:
    doc = ("decoupled weight decay: θ is multiplied by (1 − lr·weight_decay) before the update"
           if decoupled else "L2 penalty: weight_decay·θ is added to the gradient")
    return Hyper("weight_decay", "float", default, doc, low=0.0)


def maximize_field() -> Hyper:
    return Hyper("maximize", "bool", False, "maximize the objective (the gradient is negated first)")
