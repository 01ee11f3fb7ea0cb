"""Versioned optimizer state dicts keyed by parameter name (the format is described in the optim
package docstring): :class:`StateDicts`, a part of :class:`~optim.Optimizer` (a base class of it),
and the :class:`LoadReport` of a non-strict load.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import NonFiniteGradientError, OptimError, StateDictError
from .hyper import to_json
from .options import validate_options
from .params import dtype_name
from .schedules import make_schedule

STATE_FORMAT = "gradbook.optim.state"
STATE_VERSION = 1


class StateDicts:
    """``state_dict`` and ``load_state_dict`` over an optimizer's flat layout (layout.py)."""

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
        group_hp = [self.validate_hyperparameters(dict(g["hyperparameters"]),
                                                  f"{owner} state dict group {gi}")
                    for gi, g in enumerate(groups)]
        options = validate_options(meta.get("options", {}), f"{owner} state dict")
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
