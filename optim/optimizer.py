"""The Optimizer base class: named parameters, ``step``/``zero_grad``, hyperparameters, the
schedule, clipping and the non-finite policy.

Its other parts are its base classes: layout.py (the flat buffers every parameter, gradient and
state array lives in) and state.py (versioned state dicts keyed by parameter name); options.py
declares the options every optimizer takes.
"""

from __future__ import annotations

import inspect
import math
import operator
from types import MappingProxyType

import numpy as np

from autodiff import enable_grad

from .errors import NonFiniteGradientError, attempt, raise_all
from .hyper import Hyper, validate_all
from .kernels import clip_to_norm_
from .layout import BLOCK_BYTES, Chunk, FlatLayout
from .options import OPTION_NAMES, OPTION_SPECS, parameters_doc, refuse_unknown, validate_options
from .params import collect
from .schedules import Schedule, make_schedule
from .state import StateDicts

_get_data = operator.attrgetter("data")
_get_grad = operator.attrgetter("grad")
_is = operator.is_


class Optimizer(FlatLayout, StateDicts):
    """Base class of every optimizer. Subclasses declare:

    - ``name``: the registry name (also written into state dicts);
    - ``hyperparameters``: a tuple of :class:`~optim.hyper.Hyper` (lr first);
    - ``n_scratch``: how many scratch arrays ``update`` needs;
    - ``scalar_state``: initial per-parameter scalars besides the step counter (NAdam's mu_product);
    - ``state_keys(hp)``: names of the per-element state arrays for a group's hyperparameters;
    - ``init_state(key, hp, size, dtype)``: a fresh state array (zeros by default);
    - ``check(hp, owner)``: cross-field validation;
    - ``update(p, g, state, scratch, step, lr, hp, scalars)``: the pure-array update rule. It updates
      the flat arrays ``p`` and ``state[key]`` in place, may overwrite ``scratch`` arrays, must not
      modify ``g``, and returns the new ``scalars`` dict (or None when there are none). ``step`` is
      the per-parameter step count including this step (1 on the first).
    """

    name: str = ""
    hyperparameters: tuple[Hyper, ...] = ()
    n_scratch: int = 2
    scalar_state: dict = {}
    accepts_grad_norm: bool = True
    """Whether ``step`` takes ``grad_norm=`` (a global gradient norm the caller has just computed).
    Decided for each subclass from its own ``step``'s signature, so that a plug-in overriding
    ``step`` without that keyword is called without it."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__ and "accepts_grad_norm" not in cls.__dict__:
            cls.accepts_grad_norm = any(p.name == "grad_norm" or p.kind is p.VAR_KEYWORD
                                        for p in inspect.signature(cls.step).parameters.values())
        if cls.__dict__.get("__doc__"):  # a class with a docstring of its own gets the shared pieces
            cls.__doc__ = inspect.cleandoc(cls.__doc__) + "\n\n" + parameters_doc(cls.hyperparameters)

    # ---- subclass hooks

    @classmethod
    def state_keys(cls, hp: dict) -> tuple[str, ...]:
        return ()

    @classmethod
    def init_state(cls, key: str, hp: dict, size: int, dtype) -> np.ndarray:
        return np.zeros(size, dtype=dtype)

    @classmethod
    def check(cls, hp: dict, owner: str) -> None:
        """Cross-field checks (raise HyperparameterError)."""

    @staticmethod
    def update(p, g, state, scratch, step, lr, hp, scalars):
        raise NotImplementedError

    # ---- construction

    def __init__(self, params, defaults: dict | None = None, **options):
        owner = type(self).__name__
        specs = {h.name: h for h in self.hyperparameters}
        if "lr" not in specs:
            raise TypeError(f"{owner}: an optimizer must declare an 'lr' hyperparameter")
        schedule = options.pop("schedule", None)
        # every bad field at once: unknown names, options, the schedule and the hyperparameters
        errors: list = []
        attempt(errors, refuse_unknown, options, OPTION_SPECS, owner, "hyperparameter",
                (*specs, *OPTION_NAMES))
        self._options = attempt(errors, validate_options, options, owner)
        self.schedule: Schedule | None = attempt(errors, make_schedule, schedule)
        self.defaults = attempt(errors, self.validate_hyperparameters, dict(defaults or {}), owner)
        raise_all(errors)

        named, overrides = collect(params, owner)
        self._group_hp = [self.validate_hyperparameters({**self.defaults, **o}, f"{owner} group {gi}")
                          for gi, o in enumerate(overrides)]
        self._names = [p.name for p in named]
        self._tensors = [p.tensor for p in named]
        self._groups_of = [p.group for p in named]
        self._index = {n: i for i, n in enumerate(self._names)}
        self._build_layout()

        self.step_count = 0
        """Steps taken (skipped steps excluded): the schedule's clock."""
        self.skipped_steps = 0
        self.last_lrs: list[float] | None = None
        self.last_grad_norm: float | None = None
        self.last_step_skipped = False

    @classmethod
    def validate_hyperparameters(cls, values: dict, owner: str) -> dict:
        """Every declared hyperparameter, validated (defaults filled in), then the class's own
        cross-field :meth:`check`; raises :class:`HyperparameterError` naming ``owner``."""
        hp = validate_all({h.name: h for h in cls.hyperparameters}, values, owner)
        cls.check(hp, owner)  # only once every field is valid: cross-field checks assume that
        return hp

    # ---- introspection

    @property
    def params(self) -> dict:
        """Name -> Tensor, in the order given."""
        return dict(zip(self._names, self._tensors, strict=True))

    @property
    def param_names(self) -> list[str]:
        return list(self._names)

    @property
    def param_groups(self) -> list[MappingProxyType]:
        """Each group as a read-only mapping ``{"params": [names], **hyperparameters}``: assigning
        to it (torch's ``group["lr"] = ...``) raises instead of silently doing nothing; change
        values with :meth:`set_hyperparameters`."""
        out = []
        for gi, hp in enumerate(self._group_hp):
            names = [n for n, g in zip(self._names, self._groups_of, strict=True) if g == gi]
            out.append(MappingProxyType({"params": names, **hp}))
        return out

    @property
    def options(self) -> dict:
        return {"schedule": self.schedule.spec() if self.schedule else None, **self._options}

    def lrs(self) -> list[float]:
        """Learning rate of each group for the next step (the schedule applied to the step counter)."""
        return self._lrs_at(self.step_count)

    @property
    def lr(self) -> float:
        """Learning rate of group 0 for the next step."""
        return self._lrs_at(self.step_count)[0]

    @property
    def last_lr(self) -> float | None:
        """Learning rate group 0 used in the last step taken (None before the first)."""
        return None if self.last_lrs is None else self.last_lrs[0]

    def _lrs_at(self, t: int) -> list[float]:
        if self.schedule is None:
            return [hp["lr"] for hp in self._group_hp]
        return [self.schedule.lr(t, hp["lr"]) for hp in self._group_hp]

    def set_hyperparameters(self, group: int | None = None, **values) -> None:
        """Change hyperparameters of one group (or all), validated like the constructor's."""
        groups = range(len(self._group_hp)) if group is None else [group]
        owner = type(self).__name__
        for gi in groups:
            if not 0 <= gi < len(self._group_hp):
                raise IndexError(f"{owner}: group must be in [0, {len(self._group_hp)}), got {gi}")
            hp = self.validate_hyperparameters({**self._group_hp[gi], **values}, f"{owner} group {gi}")
            self._group_hp[gi].clear()
            self._group_hp[gi].update(hp)
        for ch in self._chunks:
            self._alloc_state(ch)

    def set_options(self, **options) -> None:
        """Change ``schedule``, ``clip_grad_norm``, ``clip_grad_value`` or ``nonfinite``."""
        owner = type(self).__name__
        refuse_unknown(options, OPTION_NAMES, owner, "option")
        if "schedule" in options:
            self.schedule = make_schedule(options.pop("schedule"))
        self._options = validate_options(options, owner, current=self._options)

    def __repr__(self):
        groups = "; ".join(", ".join(f"{k}={v!r}" for k, v in hp.items()) for hp in self._group_hp)
        return f"{type(self).__name__}({len(self._names)} parameters; {groups})"

    # ---- gradients

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Reset gradients.

        Default (``set_to_none=False``): fill the flat gradient buffers with zeros and make every
        parameter's ``.grad`` a view into them, so the next backward accumulates in place and the
        next step takes the fast path. Every parameter then takes part in the next step, with a zero
        gradient if backward does not reach it (torch's ``zero_grad(set_to_none=False)`` once each
        parameter has had a gradient). Tensors with ``requires_grad=False`` keep ``.grad = None``
        and are skipped.

        ``set_to_none=True`` (torch's default): set every ``.grad`` to None; parameters that the next
        backward does not reach are skipped by the next step, exactly as torch skips them.
        """
        tensors = self._tensors
        if set_to_none:
            for t in tensors:
                t.grad = None
            return
        for buf in self._grad_bufs:
            buf.fill(0)
        views = self._grad_views
        if not all(map(_is, map(_get_grad, tensors), views)):
            for t, v in zip(tensors, views, strict=True):
                # a frozen tensor keeps grad None, so step() skips it as torch does
                t.grad = v if t.requires_grad else None

    def gather_grads(self) -> None:
        """Bring gradients that backward left in arrays of their own (after
        ``zero_grad(set_to_none=True)``) into the flat buffers and point ``.grad`` there, as
        :meth:`step` does first: a caller that reads the gradients before the step then reads one
        flat buffer, and the step finds nothing left to copy. Parameters without a gradient keep
        ``.grad = None`` (the step skips them, as torch does)."""
        self._sync()

    # ---- the step

    def step(self, closure=None, *, grad_norm: float | None = None):
        """Update every parameter that has a gradient; return ``closure()``'s value if one is given.

        Order: sync views; non-finite check (raise / skip without advancing the counter); clipping by
        value then by global norm; the schedule's lr for the current counter; the update rule on each
        chunk; counter + 1. ``last_lr``/``last_lrs``, ``last_grad_norm`` (2-norm before clipping,
        when a check or clipping computed it) and ``last_step_skipped`` describe the step.

        ``grad_norm``: the global 2-norm of the gradients this step will use, when the caller has
        just computed it (a recorder of gradient statistics does), saving the pass over them that the
        non-finite check and clipping would make (as torch's GradScaler hands ``found_inf`` over).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        tensors = self._tensors
        if all(map(_is, map(_get_grad, tensors), self._grad_views)) and all(
                map(_is, map(_get_data, tensors), self._data_views)):
            active = None
        else:
            active = self._sync()

        opts = self._options
        policy = opts["nonfinite"]
        clip_norm, clip_value = opts["clip_grad_norm"], opts["clip_grad_value"]
        norm = None
        if policy != "ignore" or clip_norm is not None or clip_value is not None:
            norm = math.sqrt(self._grad_sumsq()) if grad_norm is None else float(grad_norm)
            if not math.isfinite(norm) and policy != "ignore":
                bad = self._nonfinite_names()
                if bad:
                    self.last_grad_norm = norm
                    if policy == "raise":
                        raise NonFiniteGradientError(
                            f"non-finite gradient in {', '.join(repr(b) for b in bad)} at step "
                            f"{self.step_count}; nothing was updated (nonfinite='skip' skips such steps)",
                            names=bad,
                        )
                    self.skipped_steps += 1
                    self.last_step_skipped = True
                    return loss
            if clip_value is not None:
                for buf in self._grad_bufs:
                    np.clip(buf, -clip_value, clip_value, out=buf)
            if clip_norm is not None:
                total = norm if clip_value is None else math.sqrt(self._grad_sumsq())
                clip_to_norm_(self._grad_bufs, clip_norm, total)
        self.last_grad_norm = norm

        t = self.step_count
        lrs = self._lrs_at(t)
        update = type(self).update
        for ch in self._chunks:
            lr = lrs[ch.group]
            if active is None and ch.per_param is None:
                step = ch.step + 1
                scalars = ch.scalars
                new = None
                for p, g, state, scratch in ch.blocks:
                    new = update(p, g, state, scratch, step, lr, ch.hp, scalars)
                ch.step = step
                if new is not None:
                    ch.scalars = new
            else:
                self._update_runs(ch, active, lr)
        self.step_count = t + 1
        self.last_lrs = lrs
        self.last_step_skipped = False
        return loss

    def _update_runs(self, ch: Chunk, active, lr: float) -> None:
        """Slow path: update runs of consecutive parameters that have a gradient and equal step
        counters (torch keeps a step counter per parameter, so a skipped one lags behind)."""
        n = len(ch.members)
        states = ch.per_param if ch.per_param is not None else [(ch.step, ch.scalars)] * n
        flags = [True] * n if active is None else [active[i] for i in ch.members]
        new_states = list(states)
        i = 0
        while i < n:
            if not flags[i]:
                i += 1
                continue
            j = i + 1
            while j < n and flags[j] and states[j] == states[i]:
                j += 1
            step, scalars = states[i]
            new = self._run_kernel(ch, ch.offsets[i][0], ch.offsets[j - 1][1], step + 1, lr, scalars)
            for k in range(i, j):
                new_states[k] = (step + 1, scalars if new is None else new)
            i = j
        self._set_chunk_states(ch, new_states)

    def _run_kernel(self, ch: Chunk, a: int, b: int, step: int, lr: float, scalars):
        block = max(1, BLOCK_BYTES // ch.dtype.itemsize)
        scratch = self._scratch[ch.dtype]
        new = None
        for x in range(a, b, block):
            y = min(b, x + block)
            new = type(self).update(ch.p[x:y], ch.g[x:y], {k: v[x:y] for k, v in ch.state.items()},
                                    [s[:y - x] for s in scratch], step, lr, ch.hp, scalars)
        return new
