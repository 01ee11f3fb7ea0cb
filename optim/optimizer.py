"""The Optimizer base class: named parameters over flat buffers, ``step``/``zero_grad``, the schedule,
clipping and the non-finite policy, and versioned state dicts keyed by parameter name.

Layout. At construction every parameter's values are copied into one flat buffer per dtype and the
tensor's ``.data`` is re-pointed at a view of it; gradients get the same layout. Parameters of one
(group, dtype) pair are contiguous (a *chunk*), and the optimizer state of a chunk is a set of flat
arrays. An update rule (a subclass's ``update``) therefore runs a handful of NumPy ufuncs per chunk
(per cache-sized block of a chunk), never a Python loop over tensors.

Each ``step()`` first checks, with C-level ``map`` calls, that every ``.data`` and ``.grad`` is still
the view it was given. If not (a gradient set to None, a fresh gradient array from a backward after
``zero_grad(set_to_none=True)``, or ``.data`` replaced by the user), it falls back to a slower path
that copies the new arrays in, and skips parameters whose gradient is None, as torch does.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from autodiff import enable_grad

from .errors import HyperparameterError, NonFiniteGradientError, OptimError, StateDictError
from .hyper import Hyper, to_json, validate_all
from .kernels import sumsq
from .params import collect, dtype_name
from .schedules import Schedule, make_schedule

_get_data = operator.attrgetter("data")
_get_grad = operator.attrgetter("grad")
_is = operator.is_

STATE_FORMAT = "gradbook.optim.state"
STATE_VERSION = 1
NONFINITE_POLICIES = ("raise", "skip", "ignore")
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ divides by (total_norm + 1e-6)

# Blocks of this many bytes per array keep the ~6 arrays one update touches inside L2 cache; the
# ufunc passes of an update then reuse cached data instead of streaming each array from memory.
_BLOCK_BYTES = 1 << 19

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


def describe_options() -> list[dict]:
    return [SCHEDULE_OPTION] + [h.describe() for h in OPTION_SPECS.values()]


class _Chunk:
    """The parameters of one (group, dtype) pair: flat views, state arrays, and the per-parameter
    step counters (``step``/``scalars`` when all members agree, else ``per_param``)."""

    __slots__ = ("group", "dtype", "members", "offsets", "size", "p", "g", "state", "blocks", "hp",
                 "step", "scalars", "per_param")


class Optimizer:
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
        unknown = [k for k in options if k not in OPTION_SPECS]
        if unknown:
            known = ", ".join(list(specs) + ["schedule"] + list(OPTION_SPECS))
            raise HyperparameterError(
                f"{owner}: unknown hyperparameter {unknown[0]!r}; known: {known}",
                name=unknown[0], allowed=known, value=options[unknown[0]],
            )
        self._options = {k: h.validate(options.get(k, h.default), owner) for k, h in OPTION_SPECS.items()}
        self.schedule: Schedule | None = make_schedule(schedule)
        self.defaults = self._validate_hp(dict(defaults or {}), owner)

        named, overrides = collect(params, owner)
        self._group_hp = [self._validate_hp({**self.defaults, **o}, f"{owner} group {gi}")
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

    def _validate_hp(self, values: dict, owner: str) -> dict:
        specs = {h.name: h for h in self.hyperparameters}
        hp = validate_all(specs, values, owner)
        type(self).check(hp, owner)
        return hp

    def _build_layout(self) -> None:
        tensors = self._tensors
        dtypes: list[np.dtype] = []
        for t in tensors:
            if t.data.dtype not in dtypes:
                dtypes.append(t.data.dtype)
        order = sorted(range(len(tensors)), key=lambda i: (dtypes.index(tensors[i].data.dtype),
                                                           self._groups_of[i]))
        n = len(tensors)
        self._data_views: list = [None] * n
        self._grad_views: list = [None] * n
        self._param_bufs: dict[np.dtype, np.ndarray] = {}
        self._grad_bufs: dict[np.dtype, np.ndarray] = {}
        self._chunks: list[_Chunk] = []
        self._chunk_of = [0] * n
        self._scratch: dict[np.dtype, list[np.ndarray]] = {}
        for dt in dtypes:
            members = [i for i in order if tensors[i].data.dtype == dt]
            total = sum(tensors[i].data.size for i in members)
            pbuf = np.empty(total, dtype=dt)
            gbuf = np.zeros(total, dtype=dt)
            self._param_bufs[dt] = pbuf
            self._grad_bufs[dt] = gbuf
            a = 0
            offsets = {}
            for i in members:
                t = tensors[i]
                b = a + t.data.size
                pbuf[a:b] = t.data.ravel()
                view = pbuf[a:b].reshape(t.data.shape)
                t.data = view
                self._data_views[i] = view
                gview = gbuf[a:b].reshape(view.shape)
                self._grad_views[i] = gview
                if t.grad is not None:
                    g = np.asarray(t.grad)
                    if g.shape != view.shape:
                        raise ValueError(f"parameter {self._names[i]!r}: gradient has shape {g.shape}, "
                                         f"parameter has shape {view.shape}")
                    np.copyto(gview, g)
                    t.grad = gview
                offsets[i] = (a, b)
                a = b
            block = max(1, _BLOCK_BYTES // dt.itemsize)
            largest = 0
            for gi in sorted({self._groups_of[i] for i in members}):
                ids = [i for i in members if self._groups_of[i] == gi]
                ch = _Chunk()
                ch.group, ch.dtype, ch.members = gi, dt, ids
                start, stop = offsets[ids[0]][0], offsets[ids[-1]][1]
                ch.offsets = [(offsets[i][0] - start, offsets[i][1] - start) for i in ids]
                ch.size = stop - start
                ch.p, ch.g = pbuf[start:stop], gbuf[start:stop]
                ch.hp = self._group_hp[gi]
                ch.state = {}
                ch.step, ch.scalars, ch.per_param = 0, dict(self.scalar_state), None
                largest = max(largest, ch.size)
                for i in ids:
                    self._chunk_of[i] = len(self._chunks)
                self._chunks.append(ch)
            self._scratch[dt] = [np.empty(min(block, largest), dtype=dt) for _ in range(self.n_scratch)]
        for ch in self._chunks:
            self._alloc_state(ch)
        self._grad_buf_list = list(self._grad_bufs.values())

    def _alloc_state(self, ch: _Chunk) -> None:
        """Create missing state arrays for the chunk's hyperparameters and rebuild its block views."""
        keys = type(self).state_keys(ch.hp)
        ch.state = {k: ch.state[k] if k in ch.state else type(self).init_state(k, ch.hp, ch.size, ch.dtype)
                    for k in keys}
        block = max(1, _BLOCK_BYTES // ch.dtype.itemsize)
        scratch = self._scratch[ch.dtype]
        ch.blocks = [
            (ch.p[a:a + block], ch.g[a:a + block], {k: v[a:a + block] for k, v in ch.state.items()},
             [s[:min(block, ch.size - a)] for s in scratch])
            for a in range(0, ch.size, block)
        ]

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
            hp = self._validate_hp({**self._group_hp[gi], **values}, f"{owner} group {gi}")
            self._group_hp[gi].clear()
            self._group_hp[gi].update(hp)
        for ch in self._chunks:
            self._alloc_state(ch)

    def set_options(self, **options) -> None:
        """Change ``schedule``, ``clip_grad_norm``, ``clip_grad_value`` or ``nonfinite``."""
        owner = type(self).__name__
        if "schedule" in options:
            self.schedule = make_schedule(options.pop("schedule"))
        for k, v in options.items():
            if k not in OPTION_SPECS:
                known = ", ".join(["schedule", *OPTION_SPECS])
                raise HyperparameterError(f"{owner}: unknown option {k!r}; known: {known}", name=k,
                                          allowed=known, value=v)
            self._options[k] = OPTION_SPECS[k].validate(v, owner)

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
        for buf in self._grad_bufs.values():
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

    def _sync(self) -> list[bool] | None:
        """Bring replaced ``.data``/``.grad`` arrays back into the flat buffers; return which
        parameters have a gradient (None when all do)."""
        active = []
        for i, t in enumerate(self._tensors):
            dv = self._data_views[i]
            d = t.data
            if d is not dv:
                if not isinstance(d, np.ndarray) or d.shape != dv.shape or d.dtype != dv.dtype:
                    raise ValueError(
                        f"parameter {self._names[i]!r}: .data was replaced by an array of shape "
                        f"{np.shape(d)} and dtype {getattr(d, 'dtype', type(d).__name__)}, the optimizer "
                        f"holds shape {dv.shape} and dtype {dv.dtype}; build a new optimizer for a "
                        "changed model"
                    )
                np.copyto(dv, d)
                t.data = dv
            gv = self._grad_views[i]
            g = t.grad
            if g is gv:
                active.append(True)
            elif g is None:
                gv.fill(0)  # so global norms and clipping see only the gradients that exist
                active.append(False)
            else:
                g = np.asarray(g)
                if g.shape != gv.shape:
                    raise ValueError(f"parameter {self._names[i]!r}: gradient has shape {g.shape}, parameter "
                                     f"has shape {gv.shape}")
                np.copyto(gv, g)
                t.grad = gv
                active.append(True)
        return None if all(active) else active

    def _grad_sumsq(self) -> float:
        bufs = self._grad_buf_list
        return sumsq(bufs[0]) if len(bufs) == 1 else sum(map(sumsq, bufs))

    def _nonfinite_names(self) -> list[str]:
        return [n for n, v in zip(self._names, self._grad_views, strict=True) if not np.isfinite(v).all()]

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
                for buf in self._grad_bufs.values():
                    np.clip(buf, -clip_value, clip_value, out=buf)
            if clip_norm is not None:
                total = norm if clip_value is None else math.sqrt(self._grad_sumsq())
                coef = clip_norm / (total + CLIP_EPS)
                if not coef >= 1.0:  # also multiplies by NaN, as torch does, under nonfinite="ignore"
                    for buf in self._grad_bufs.values():
                        buf *= coef
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

    def _update_runs(self, ch: _Chunk, active, lr: float) -> None:
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

    def _run_kernel(self, ch: _Chunk, a: int, b: int, step: int, lr: float, scalars):
        block = max(1, _BLOCK_BYTES // ch.dtype.itemsize)
        scratch = self._scratch[ch.dtype]
        new = None
        for x in range(a, b, block):
            y = min(b, x + block)
            new = type(self).update(ch.p[x:y], ch.g[x:y], {k: v[x:y] for k, v in ch.state.items()},
                                    [s[:y - x] for s in scratch], step, lr, ch.hp, scalars)
        return new

    @staticmethod
    def _set_chunk_states(ch: _Chunk, states: list) -> None:
        if all(s == states[0] for s in states):
            ch.step, ch.scalars = states[0]
            ch.per_param = None
        else:
            ch.per_param = states

    # ---- state dicts

    def _param_state(self, i: int) -> tuple[int, dict]:
        ch = self._chunks[self._chunk_of[i]]
        if ch.per_param is None:
            return ch.step, ch.scalars
        return ch.per_param[ch.members.index(i)]

    def _state_slice(self, i: int, key: str) -> np.ndarray:
        ch = self._chunks[self._chunk_of[i]]
        a, b = ch.offsets[ch.members.index(i)]
        return ch.state[key][a:b].reshape(self._data_views[i].shape)

    def state_dict(self) -> dict:
        """``{"meta": <JSON-able dict>, "arrays": {key: ndarray}}``; see the optim package docstring."""
        arrays: dict[str, np.ndarray] = {}
        params_meta = {}
        for i, name in enumerate(self._names):
            step, scalars = self._param_state(i)
            gi = self._groups_of[i]
            entry = {"shape": list(self._data_views[i].shape), "dtype": dtype_name(self._data_views[i].dtype),
                     "group": gi, "step": step, "scalars": dict(scalars) if step else {}, "arrays": {}}
            if step:
                for key in type(self).state_keys(self._group_hp[gi]):
                    akey = f"state.{name}.{key}"
                    arrays[akey] = self._state_slice(i, key).copy()
                    entry["arrays"][key] = akey
            params_meta[name] = entry
        groups = []
        for gi, hp in enumerate(self._group_hp):
            names = [n for n, g in zip(self._names, self._groups_of, strict=True) if g == gi]
            groups.append({"hyperparameters": to_json(hp), "params": names})
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "optimizer": self.name or type(self).__name__,
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "last_lrs": None if self.last_lrs is None else list(self.last_lrs),
            "schedule": self.schedule.spec() if self.schedule else None,
            "options": dict(self._options),
            "groups": groups,
            "params": params_meta,
        }
        return {"meta": meta, "arrays": arrays}

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> LoadReport:
        """Restore a :meth:`state_dict`: per-parameter state matched by name, and the checkpoint's
        hyperparameters, options, schedule and step counter (as torch restores param_groups).

        Raises :class:`StateDictError` listing every missing, unexpected, reshaped, retyped or
        regrouped parameter, and leaves the optimizer untouched. With ``strict=False`` missing
        parameters start from fresh state and unexpected ones are ignored (both reported in the
        returned :class:`LoadReport`); shape, dtype and group mismatches are always errors.
        """
        owner = type(self).__name__
        meta, arrays = _split(state_dict)
        try:
            return self._load(meta, arrays, strict, owner)
        except (OptimError, NonFiniteGradientError):
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            # a hand-edited or truncated dict: say so rather than leak a bare KeyError
            raise StateDictError(f"{owner}: malformed state dict ({type(e).__name__}: {e})") from None

    def _load(self, meta: dict, arrays: Mapping, strict: bool, owner: str) -> LoadReport:
        if meta.get("format") != STATE_FORMAT:
            raise StateDictError(f"{owner}: not an optimizer state dict (format {meta.get('format')!r}, "
                                 f"expected {STATE_FORMAT!r})")
        if meta.get("version") != STATE_VERSION:
            raise StateDictError(f"{owner}: state dict version {meta.get('version')!r} is not supported "
                                 f"(this gradbook reads version {STATE_VERSION})")
        mine = self.name or type(self).__name__
        if meta.get("optimizer") != mine:
            raise StateDictError(
                f"{owner}: state dict is for optimizer {meta.get('optimizer')!r}, not {mine!r}")
        groups = meta.get("groups") or []
        if len(groups) != len(self._group_hp):
            raise StateDictError(f"{owner}: state dict has {len(groups)} parameter groups, this optimizer "
                                 f"has {len(self._group_hp)}")
        group_hp = [self._validate_hp(dict(g["hyperparameters"]), f"{owner} state dict group {gi}")
                    for gi, g in enumerate(groups)]
        options = {k: h.validate(meta.get("options", {}).get(k, h.default), f"{owner} state dict")
                   for k, h in OPTION_SPECS.items()}
        schedule = make_schedule(meta.get("schedule"))

        saved = meta.get("params") or {}
        missing = [n for n in self._names if n not in saved]
        unexpected = [n for n in saved if n not in self._index]
        reshaped, retyped, regrouped = [], [], []
        for n, entry in saved.items():
            if n not in self._index:
                continue
            i = self._index[n]
            view = self._data_views[i]
            if tuple(entry["shape"]) != view.shape:
                reshaped.append((n, tuple(entry["shape"]), view.shape))
            if entry["dtype"] != dtype_name(view.dtype):
                retyped.append((n, entry["dtype"], dtype_name(view.dtype)))
            if entry["group"] != self._groups_of[i]:
                regrouped.append((n, entry["group"], self._groups_of[i]))
        problems = []
        if missing:
            problems.append(f"missing from the state dict: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected in the state dict: {', '.join(unexpected)}")
        problems += [f"{n} has shape {list(s)} in the state dict, the parameter has {list(p)}"
                     for n, s, p in reshaped]
        problems += [f"{n} has dtype {s} in the state dict, the parameter has {p}" for n, s, p in retyped]
        problems += [f"{n} is in group {s} in the state dict, in group {p} here" for n, s, p in regrouped]
        fatal = reshaped or retyped or regrouped or (strict and (missing or unexpected))
        if fatal:
            raise StateDictError(f"{owner}: cannot load state dict: " + "; ".join(problems),
                                 missing=missing, unexpected=unexpected, reshaped=reshaped,
                                 retyped=retyped, regrouped=regrouped)

        # Check every array before changing anything, so a bad state dict leaves us untouched.
        loaded = {}
        for n, entry in saved.items():
            if n not in self._index:
                continue
            i = self._index[n]
            step = entry.get("step", 0)
            if not isinstance(step, int) or step < 0:
                raise StateDictError(f"{owner}: parameter {n!r} has step {step!r}, expected an integer >= 0")
            keys = type(self).state_keys(group_hp[self._groups_of[i]]) if step else ()
            got = {}
            for key in keys:
                akey = entry.get("arrays", {}).get(key)
                if akey is None or akey not in arrays:
                    raise StateDictError(f"{owner}: state dict lacks the {key!r} array of parameter {n!r}")
                arr = np.asarray(arrays[akey])
                if arr.shape != self._data_views[i].shape:
                    raise StateDictError(f"{owner}: array {akey!r} has shape {list(arr.shape)}, parameter "
                                         f"{n!r} has {list(self._data_views[i].shape)}")
                got[key] = arr
            scalars = dict(self.scalar_state)
            if step:
                scalars.update({k: float(v) for k, v in entry.get("scalars", {}).items()
                                if k in self.scalar_state})
            loaded[i] = (step, scalars, got)

        for gi, hp in enumerate(group_hp):
            self._group_hp[gi].clear()
            self._group_hp[gi].update(hp)
        self._options = options
        self.schedule = schedule
        for ch in self._chunks:
            ch.state = {}
            self._alloc_state(ch)  # fresh state everywhere, then overwrite what the dict holds
            states = []
            for i in ch.members:
                step, scalars, got = loaded.get(i, (0, dict(self.scalar_state), {}))
                for key, arr in got.items():
                    a, b = ch.offsets[ch.members.index(i)]
                    ch.state[key][a:b] = arr.ravel()
                states.append((step, scalars))
            self._set_chunk_states(ch, states)
        self.step_count = int(meta.get("step_count", 0))
        self.skipped_steps = int(meta.get("skipped_steps", 0))
        last = meta.get("last_lrs")
        self.last_lrs = None if last is None else [float(x) for x in last]
        self.last_step_skipped = False
        return LoadReport(missing=missing, unexpected=unexpected)


class LoadReport:
    """What ``load_state_dict(strict=False)`` did not load: ``missing`` parameters (fresh state) and
    ``unexpected`` names in the state dict (ignored). Empty after a strict load."""

    def __init__(self, missing=(), unexpected=()):
        self.missing = list(missing)
        self.unexpected = list(unexpected)

    def __bool__(self):
        return bool(self.missing or self.unexpected)

    def __repr__(self):
        return f"LoadReport(missing={self.missing}, unexpected={self.unexpected})"


def _split(state_dict) -> tuple[dict, Mapping]:
    if not isinstance(state_dict, Mapping) or "meta" not in state_dict or "arrays" not in state_dict:
        raise StateDictError("a state dict must be a mapping with 'meta' and 'arrays' entries, as "
                             "returned by Optimizer.state_dict()")
    meta = state_dict["meta"]
    if not isinstance(meta, Mapping):
        raise StateDictError("state dict 'meta' must be a mapping")
    return dict(meta), state_dict["arrays"]
