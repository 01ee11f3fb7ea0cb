"""Parameters over flat buffers: how an optimizer lays out what it updates.

At construction every parameter's values are copied into one flat buffer per dtype and the
tensor's ``.data`` is re-pointed at a view of it; gradients get the same layout. Parameters of one
(group, dtype) pair are contiguous (a *chunk*), and the optimizer state of a chunk is a set of flat
arrays. An update rule (a subclass's ``update``) therefore runs a handful of NumPy ufuncs per chunk
(per cache-sized block of a chunk), never a Python loop over tensors.

Each ``step()`` first checks, with C-level ``map`` calls, that every ``.data`` and ``.grad`` is still
the view it was given. If not (a gradient set to None, a fresh gradient array from a backward after
``zero_grad(set_to_none=True)``, or ``.data`` replaced by the user), it falls back to a slower path
(:meth:`FlatLayout._sync`) that copies the new arrays in, and skips parameters whose gradient is
None, as torch does.

:class:`FlatLayout` is a part of :class:`~optim.Optimizer` (a base class of it), kept here so that
optimizer.py reads as the step and its options.
"""

from __future__ import annotations

import numpy as np

from .kernels import sumsq

# Blocks of this many bytes per array keep the ~6 arrays one update touches inside L2 cache; the
# ufunc passes of an update then reuse cached data instead of streaming each array from memory.
BLOCK_BYTES = 1 << 19


class Chunk:
    """The parameters of one (group, dtype) pair: flat views, state arrays, and the per-parameter
    step counters (``step``/``scalars`` when all members agree, else ``per_param``)."""

    __slots__ = ("group", "dtype", "members", "offsets", "size", "p", "g", "state", "blocks", "hp",
                 "step", "scalars", "per_param")


class FlatLayout:
    """The flat buffers, chunks and views of an optimizer's parameters (``_tensors``, ``_names``,
    ``_groups_of`` and ``_group_hp`` are set by the optimizer before :meth:`_build_layout`)."""

    @property
    def grad_buffers(self) -> list[np.ndarray]:
        """The flat gradient buffers, one per dtype, that every ``.grad`` views after ``zero_grad()``
        or ``gather_grads()``: a caller reading all gradients at once may read them here."""
        return list(self._grad_bufs)

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
        self._grad_bufs: list[np.ndarray] = []  # one per dtype
        self._chunks: list[Chunk] = []
        self._chunk_of = [0] * n
        self._scratch: dict[np.dtype, list[np.ndarray]] = {}
        for dt in dtypes:
            members = [i for i in order if tensors[i].data.dtype == dt]
            total = sum(tensors[i].data.size for i in members)
            pbuf = np.empty(total, dtype=dt)
            gbuf = np.zeros(total, dtype=dt)
            self._grad_bufs.append(gbuf)
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
                    self._adopt_grad(i, gview)
                offsets[i] = (a, b)
                a = b
            block = max(1, BLOCK_BYTES // dt.itemsize)
            largest = 0
            for gi in sorted({self._groups_of[i] for i in members}):
                ids = [i for i in members if self._groups_of[i] == gi]
                ch = Chunk()
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

    def _alloc_state(self, ch: Chunk) -> None:
        """Create missing state arrays for the chunk's hyperparameters and rebuild its block views."""
        keys = type(self).state_keys(ch.hp)
        ch.state = {k: ch.state[k] if k in ch.state else type(self).init_state(k, ch.hp, ch.size, ch.dtype)
                    for k in keys}
        block = max(1, BLOCK_BYTES // ch.dtype.itemsize)
        scratch = self._scratch[ch.dtype]
        ch.blocks = [
            (ch.p[a:a + block], ch.g[a:a + block], {k: v[a:a + block] for k, v in ch.state.items()},
             [s[:min(block, ch.size - a)] for s in scratch])
            for a in range(0, ch.size, block)
        ]

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
                self._adopt_grad(i, gv)
                active.append(True)
        return None if all(active) else active

    def _adopt_grad(self, i: int, view: np.ndarray) -> None:
        """Copy parameter i's gradient, an array of its own, into its view of the flat gradient
        buffer and point ``.grad`` there."""
        t = self._tensors[i]
        g = np.asarray(t.grad)
        if g.shape != view.shape:
            raise ValueError(f"parameter {self._names[i]!r}: gradient has shape {g.shape}, parameter "
                             f"has shape {view.shape}")
        np.copyto(view, g)
        t.grad = view

    def _grad_sumsq(self) -> float:
        bufs = self._grad_bufs
        return sumsq(bufs[0]) if len(bufs) == 1 else sum(map(sumsq, bufs))

    def _nonfinite_names(self) -> list[str]:
        return [n for n, v in zip(self._names, self._grad_views, strict=True) if not np.isfinite(v).all()]

    @staticmethod
    def _set_chunk_states(ch: Chunk, states: list) -> None:
        if all(s == states[0] for s in states):
            ch.step, ch.scalars = states[0]
            ch.per_param = None
        else:
            ch.per_param = states

    def _param_state(self, i: int) -> tuple[int, dict]:
        ch = self._chunks[self._chunk_of[i]]
        if ch.per_param is None:
            return ch.step, ch.scalars
        return ch.per_param[ch.members.index(i)]

    def _state_slice(self, i: int, key: str) -> np.ndarray:
        ch = self._chunks[self._chunk_of[i]]
        a, b = ch.offsets[ch.members.index(i)]
        return ch.state[key][a:b].reshape(self._data_views[i].shape)
