"""Learning-rate schedules as closed-form functions of the optimizer's own step counter.

A schedule is described by a JSON-able spec, ``{"name": "warmup_cosine", "warmup_steps": 10,
"total_steps": 100}``, and computes ``lr(t, base_lr)`` for the step about to be taken, ``t`` being
the number of steps already taken (0 for the first step). The optimizer calls it inside ``step()``,
so there is no scheduler object to step in the wrong order, and resuming needs only the spec and
the counter. ``base_lr`` is each parameter group's ``lr`` hyperparameter.

The formulas are torch.optim.lr_scheduler's closed forms (``t`` = torch's ``last_epoch``):

====================  =========================================================================
constant              base·factor while t < total_iters, then base (ConstantLR; factor 1 = plain)
step                  base·gamma^⌊t / step_size⌋ (StepLR)
multistep             base·gamma^(number of milestones ≤ t) (MultiStepLR)
exponential           base·gamma^t (ExponentialLR)
cosine                eta_min + (base − eta_min)(1 + cos(π t / t_max))/2 (CosineAnnealingLR's
                      closed form, which keeps oscillating past t_max as torch's does)
linear_warmup         base·(start + (end − start)·min(t, total_iters)/total_iters) (LinearLR)
warmup_cosine         base·(start + (1 − start)·t/warmup_steps) for t < warmup_steps, then cosine
                      from base to eta_min over the remaining steps, eta_min after total_steps
one_cycle             OneCycleLR with max_lr = base (learning rate only: no momentum cycling);
                      holds its final value after total_steps where torch would raise
====================  =========================================================================
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

from .errors import HyperparameterError, raise_all, shown
from .hyper import Hyper, to_json, validate_all


class Schedule:
    """Base class: subclasses declare ``name``, ``params`` (Hyper fields) and ``lr(t, base_lr)``."""

    name: str = ""
    params: tuple[Hyper, ...] = ()
    summary: str = ""
    run_length: str | None = None
    """The parameter that is the length of the run (t_max, total_steps), for callers that know it."""

    def __init__(self, **values):
        specs = {h.name: h for h in self.params}
        self.values = validate_all(specs, values, f"schedule {self.name!r}", "schedule parameter")
        self.check()

    def check(self) -> None:
        """Cross-field checks; raise HyperparameterError."""

    def lr(self, t: int, base_lr: float) -> float:
        raise NotImplementedError

    def spec(self) -> dict:
        return {"name": self.name, **to_json(self.values)}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return isinstance(other, Schedule) and self.spec() == other.spec()

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "summary": cls.summary, "params": [h.describe() for h in cls.params]}


def _pos_int(name, default=None, doc=""):
    return Hyper(name, "int", default, doc, low=1)


def _factor(name, default, doc=""):
    return Hyper(name, "float", default, doc, low=0.0)


class Constant(Schedule):
    name = "constant"
    summary = "base·factor for the first total_iters steps, then base"
    params = (_factor("factor", 1.0, "multiplier during the first total_iters steps"),
              Hyper("total_iters", "int", 0, "steps that use the factor", low=0))

    def lr(self, t, base_lr):
        v = self.values
        return base_lr * v["factor"] if t < v["total_iters"] else base_lr


class Step(Schedule):
    name = "step"
    summary = "multiply by gamma every step_size steps"
    params = (_pos_int("step_size", None, "steps between decays"), _factor("gamma", 0.1, "decay factor"))

    def lr(self, t, base_lr):
        v = self.values
        return base_lr * v["gamma"] ** (t // v["step_size"])


class MultiStep(Schedule):
    name = "multistep"
    summary = "multiply by gamma at each milestone step"
    params = (Hyper("milestones", "int_list", None, "steps at which to decay", low=1),
              _factor("gamma", 0.1, "decay factor"))

    def lr(self, t, base_lr):
        v = self.values
        return base_lr * v["gamma"] ** bisect.bisect_right(v["milestones"], t)


class Exponential(Schedule):
    name = "exponential"
    summary = "multiply by gamma every step"
    params = (_factor("gamma", None, "decay factor per step"),)

    def lr(self, t, base_lr):
        return base_lr * self.values["gamma"] ** t


class Cosine(Schedule):
    name = "cosine"
    summary = "cosine annealing from base to eta_min over t_max steps"
    run_length = "t_max"
    params = (_pos_int("t_max", None, "half period in steps"),
              _factor("eta_min", 0.0, "lowest learning rate"))

    def lr(self, t, base_lr):
        v = self.values
        return v["eta_min"] + (base_lr - v["eta_min"]) * (1 + math.cos(math.pi * t / v["t_max"])) / 2


class LinearWarmup(Schedule):
    name = "linear_warmup"
    summary = "linear ramp of the multiplier from start_factor to end_factor over total_iters steps"
    params = (Hyper("start_factor", "float", 1.0 / 3, "multiplier at step 0", low=0.0, high=1.0,
                    low_open=True),
              Hyper("end_factor", "float", 1.0, "multiplier from total_iters on", low=0.0, high=1.0),
              _pos_int("total_iters", 5, "length of the ramp in steps"))

    def lr(self, t, base_lr):
        v = self.values
        frac = min(t, v["total_iters"]) / v["total_iters"]
        return base_lr * (v["start_factor"] + (v["end_factor"] - v["start_factor"]) * frac)


class WarmupCosine(Schedule):
    name = "warmup_cosine"
    summary = "linear warm-up to base over warmup_steps, then cosine decay to eta_min at total_steps"
    run_length = "total_steps"
    params = (Hyper("warmup_steps", "int", None, "length of the warm-up", low=0),
              _pos_int("total_steps", None, "step at which eta_min is reached"),
              _factor("eta_min", 0.0, "final learning rate"),
              Hyper("start_factor", "float", 0.0, "multiplier at step 0", low=0.0, high=1.0))

    def check(self):
        v = self.values
        if v["warmup_steps"] > v["total_steps"]:
            raise HyperparameterError(
                f"schedule 'warmup_cosine': warmup_steps must be in [0, total_steps={v['total_steps']}], "
                f"got {v['warmup_steps']}",
                name="warmup_steps", allowed=f"[0, {v['total_steps']}]", value=v["warmup_steps"],
            )

    def lr(self, t, base_lr):
        v = self.values
        warm, total, eta_min = v["warmup_steps"], v["total_steps"], v["eta_min"]
        if t < warm:
            return base_lr * (v["start_factor"] + (1.0 - v["start_factor"]) * t / warm)
        if t >= total:
            return eta_min
        progress = (t - warm) / (total - warm)
        return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * progress)) / 2


class OneCycle(Schedule):
    name = "one_cycle"
    summary = "one-cycle policy: rise from base/div_factor to base, then anneal to the minimum"
    run_length = "total_steps"
    params = (Hyper("total_steps", "int", None, "length of the cycle", low=2),
              Hyper("pct_start", "float", 0.3, "fraction of the cycle spent rising", low=0.0, high=1.0,
                    low_open=True, high_open=True),
              Hyper("div_factor", "float", 25.0, "initial lr = base / div_factor", low=0.0, low_open=True),
              Hyper("final_div_factor", "float", 1e4, "min lr = initial lr / final_div_factor", low=0.0,
                    low_open=True),
              Hyper("anneal_strategy", "choice", "cos", "shape of each phase", choices=("cos", "linear")),
              Hyper("three_phase", "bool", False, "add a symmetric descent back to the initial lr"))

    def check(self):
        v = self.values
        first_end = float(v["pct_start"] * v["total_steps"]) - 1
        if first_end <= 0 or (v["three_phase"] and 2 * first_end + 1 >= v["total_steps"] - 1):
            raise HyperparameterError(
                f"schedule 'one_cycle': pct_start·total_steps must exceed 1 step (and leave room for the "
                f"third phase), got pct_start={v['pct_start']} with total_steps={v['total_steps']}",
                name="pct_start", allowed="(1/total_steps, 1)", value=v["pct_start"],
            )

    def _phases(self, base_lr):
        v = self.values
        initial = base_lr / v["div_factor"]
        minimum = initial / v["final_div_factor"]
        total, pct = v["total_steps"], v["pct_start"]
        if v["three_phase"]:
            return [(float(pct * total) - 1, initial, base_lr),
                    (float(2 * pct * total) - 2, base_lr, initial),
                    (total - 1, initial, minimum)]
        return [(float(pct * total) - 1, initial, base_lr), (total - 1, base_lr, minimum)]

    def lr(self, t, base_lr):
        phases = self._phases(base_lr)
        t = min(t, self.values["total_steps"] - 1)  # hold the last value past the cycle
        start_step = 0.0
        for i, (end_step, start_lr, end_lr) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                pct = (t - start_step) / (end_step - start_step)
                if self.values["anneal_strategy"] == "cos":
                    return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (end_lr - start_lr) * pct + start_lr
            start_step = end_step
        raise AssertionError("unreachable")


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (Constant, Step, MultiStep, Exponential, Cosine, LinearWarmup, WarmupCosine, OneCycle)
}


def make_schedule(spec) -> Schedule | None:
    """Build a schedule from None, a Schedule, a name (schedules whose parameters all have defaults)
    or a spec dict ``{"name": ..., **params}``."""
    if spec is None or isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise HyperparameterError(
            f"schedule must be null, a schedule name or an object {{'name': ..., params...}}, "
            f"got {shown(spec)}",
            name="schedule", allowed="null or {name, ...params}", value=spec,
        )
    params = dict(spec)
    name = params.pop("name", None)
    if name not in SCHEDULES:
        known = ", ".join(SCHEDULES)
        raise HyperparameterError(
            f"schedule: unknown name {shown(name)}; known schedules: {known}",
            name="schedule.name", allowed=known, value=name,
        )
    cls = SCHEDULES[name]
    raise_all([HyperparameterError(f"schedule {name!r}: missing required parameter {h.name!r} "
                                   f"({h.allowed()})", name=h.name, value=None)
               for h in cls.params if h.default is None and not h.nullable and h.name not in params])
    return cls(**params)


def available_schedules() -> list[dict]:
    """JSON-able list of the schedules with their parameters (type, default, allowed range)."""
    return [cls.describe() for cls in SCHEDULES.values()]
