"""The options every optimizer takes besides its hyperparameters (``schedule``, ``clip_grad_norm``,
``clip_grad_value``, ``nonfinite``), and the docstring pieces every optimizer shares.

As torch.optim keeps ``_params_doc``, ``_maximize_doc``, ``_foreach_doc`` ... once and pastes them
into each optimizer's docstring, :func:`parameters_doc` writes the "what it takes" part of each
docstring from the declarations that also validate and describe the values (:class:`Hyper` docs,
with the fields every built-in shares made once in hyper.py), so no docstring repeats them.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import HyperparameterError, attempt, raise_all, shown
from .hyper import Hyper

NONFINITE_POLICIES = ("raise", "skip", "ignore")

OPTION_SPECS: dict[str, Hyper] = {
    "clip_grad_norm": Hyper("clip_grad_norm", "float", None,
                            "clip the global 2-norm of the gradients to this value (torch's formula)",
                            low=0.0, low_open=True, nullable=True),
    "clip_grad_value": Hyper("clip_grad_value", "float", None,
                             "clamp every gradient entry to [-value, value]", low=0.0, low_open=True,
                             nullable=True),
    "nonfinite": Hyper("nonfinite", "choice", "raise",
                       "what a NaN/inf gradient does: raise, skip the step (schedule not advanced), or "
                       "ignore (no check, as torch)", choices=NONFINITE_POLICIES),
}
SCHEDULE_OPTION = {
    "name": "schedule", "type": "schedule", "default": None, "nullable": True, "required": False,
    "allowed": "null or an object {name, ...params}; see available_schedules()",
    "doc": "learning-rate schedule applied inside step() from the optimizer's step counter",
}
OPTION_NAMES = ("schedule", *OPTION_SPECS)

PARAMS_DOC = ("params: a mapping name -> Tensor, an iterable of Tensors, or a list of group dicts "
              "{\"params\": ..., <hyperparameter overrides>}")


def describe_options() -> list[dict]:
    return [SCHEDULE_OPTION] + [h.describe() for h in OPTION_SPECS.values()]


def refuse_unknown(values: Mapping, accepted, owner: str, what: str, listed=None) -> None:
    """Raise :class:`HyperparameterError` for the names in ``values`` not in ``accepted`` (all of
    them, see HyperparameterError.errors), listing ``listed`` (default: ``accepted``) as the known."""
    known = ", ".join(accepted if listed is None else listed)
    raise_all([HyperparameterError(f"{owner}: unknown {what} {shown(k)}; known: {known}",
                                   name=k, allowed=known, value=values[k])
               for k in values if k not in accepted])


def validate_options(values: Mapping, owner: str, current: Mapping | None = None) -> dict:
    """Every option but the schedule, validated: as given in ``values``, else as ``current`` has it,
    else its default."""
    errors: list = []
    out = {k: attempt(errors, h.validate, values[k] if k in values else h.default if current is None
                      else current[k], owner)
           for k, h in OPTION_SPECS.items()}
    raise_all(errors)
    return out


def parameters_doc(hyperparameters: tuple[Hyper, ...]) -> str:
    """What an optimizer takes, for its docstring: params, its hyperparameters, the common options."""

    def line(name, default, doc, allowed):
        return f"    {name} (default {default!r}): {doc}; {allowed}"

    lines = ["Arguments:", "    " + PARAMS_DOC]
    lines += [line(h.name, h.default, h.doc, h.allowed()) for h in hyperparameters]
    lines.append("Options (every optimizer takes them):")
    lines.append(line("schedule", None, SCHEDULE_OPTION["doc"], SCHEDULE_OPTION["allowed"]))
    lines += [line(h.name, h.default, h.doc, h.allowed()) for h in OPTION_SPECS.values()]
    return "\n".join(lines)
