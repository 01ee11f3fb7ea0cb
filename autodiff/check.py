"""Gradients as functions, and the numerical methods that check them.

``numerical_grad`` is the lecture's "bump each parameter" method: two evaluations of the whole
function per parameter (central differences), so N x P work where backprop needs about N + P.
"""

from __future__ import annotations

import numpy as np

from .core import Tensor, no_grad


def _scalar(out, who):
    value = out.data if isinstance(out, Tensor) else np.asarray(out)
    if value.size != 1:
        raise ValueError(f"{who}: the function must return a scalar, it returned shape {value.shape}")
    return float(value.reshape(()))


def grad(fn, argnums=0):
    """``grad(fn)(*args)`` is the gradient of the scalar ``fn(*args)`` with respect to
    ``args[argnums]`` (a tuple of argnums gives a tuple of gradients), as NumPy arrays."""
    many = isinstance(argnums, tuple | list)
    nums = tuple(argnums) if many else (argnums,)

    def gradient(*args):
        args = list(args)
        wrt = []
        for i in nums:
            data = args[i].data if isinstance(args[i], Tensor) else args[i]
            arr = np.array(data, copy=True)
            if arr.dtype.kind != "f":
                arr = arr.astype(np.float64)
            args[i] = Tensor(arr, requires_grad=True)
            wrt.append(args[i])
        out = fn(*args)
        if not isinstance(out, Tensor) or out.data.size != 1:
            shape = getattr(out, "shape", ())
            raise ValueError(f"grad: the function must return a scalar Tensor, got shape {shape}")
        out.backward()
        grads = tuple(t.grad if t.grad is not None else np.zeros_like(t.data) for t in wrt)
        return grads if many else grads[0]

    return gradient


def _as_inputs(inputs):
    single = isinstance(inputs, Tensor | np.ndarray | float | int)
    items = [inputs] if single else list(inputs)
    arrays = [np.array(x.data if isinstance(x, Tensor) else x, dtype=None, copy=True) for x in items]
    for k, a in enumerate(arrays):
        if a.dtype.kind != "f":
            arrays[k] = a.astype(np.float64)
    return single, arrays


def numerical_grad(fn, inputs, eps: float = 1e-6):
    """Central-difference gradient of the scalar ``fn(*inputs)``: bump each entry of each input
    by ±eps and re-evaluate. Returns an array per input (one array for a single input)."""
    single, arrays = _as_inputs(inputs)
    tensors = [Tensor(a) for a in arrays]
    grads = []
    with no_grad():
        for t in tensors:
            g = np.zeros_like(t.data)
            flat, gflat = t.data.reshape(-1), g.reshape(-1)
            for k in range(flat.size):
                orig = flat[k]
                flat[k] = orig + eps
                up = _scalar(fn(*tensors), "numerical_grad")
                flat[k] = orig - eps
                down = _scalar(fn(*tensors), "numerical_grad")
                flat[k] = orig
                gflat[k] = (up - down) / (2 * eps)
            grads.append(g)
    return grads[0] if single else grads


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` with a report of the worst mismatching entries."""


def _output(fn, tensors):
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(out).__name__}")
    return out


def _numerical_jvp(fn, tensors, direction, eps):
    """(f(x + eps d) - f(x - eps d)) / 2 eps for a direction d over all inputs."""
    saved = [t.data.copy() for t in tensors]
    with no_grad():
        for t, s, d in zip(tensors, saved, direction, strict=True):
            t.data[...] = s + eps * d
        up = np.array(_output(fn, tensors).data, dtype=np.float64)
        for t, s, d in zip(tensors, saved, direction, strict=True):
            t.data[...] = s - eps * d
        down = np.array(_output(fn, tensors).data, dtype=np.float64)
        for t, s in zip(tensors, saved, strict=True):
            t.data[...] = s
    return (up - down) / (2 * eps)


def _vjp(fn, tensors, cotangent):
    for t in tensors:
        t.grad = None
    out = _output(fn, tensors)
    if not out.requires_grad:  # no input reaches the output: all gradients are zero
        return [np.zeros_like(t.data) for t in tensors]
    out.backward(np.asarray(cotangent, dtype=out.dtype).reshape(out.shape))
    grads = []
    for t in tensors:
        g = np.zeros_like(t.data) if t.grad is None else t.grad
        if not isinstance(g, np.ndarray) or g.shape != t.data.shape or g.dtype != t.data.dtype:
            raise GradcheckError(
                f"gradient is a {type(g).__name__} of shape {g.shape} and dtype {g.dtype}, the input "
                f"is an array of shape {t.data.shape} and dtype {t.data.dtype}"
            )
        grads.append(g)
    return grads


def gradcheck(fn, inputs, eps=None, atol=None, rtol=None, mode="auto", projections=8, seed=0):
    """Compare backprop with central differences for ``fn(*inputs)`` (any output shape).

    ``mode="full"`` builds the whole Jacobian both ways; ``"random"`` compares random projections
    u^T J v, for large inputs; ``"auto"`` picks full while the Jacobian has at most 20,000 entries.
    Inputs are checked in float64; float32 inputs are refused unless tolerances are given, since
    their rounding makes the default tolerances meaningless. Returns True or raises
    :class:`GradcheckError` naming the worst entries.
    """
    raw = [inputs] if isinstance(inputs, Tensor | np.ndarray) else list(inputs)
    low_precision = any(
        np.asarray(x.data if isinstance(x, Tensor) else x).dtype == np.float32 for x in raw
    )
    if low_precision and (atol is None or rtol is None):
        raise ValueError(
            "gradcheck: float32 inputs need explicit atol= and rtol= (the float64 defaults "
            "1e-6/1e-5 are below float32 rounding); or pass float64 inputs"
        )
    eps = 1e-6 if eps is None else eps
    atol = 1e-6 if atol is None else atol
    rtol = 1e-5 if rtol is None else rtol
    keep_dtype = low_precision
    tensors = []
    for x in raw:
        arr = np.array(x.data if isinstance(x, Tensor) else x, copy=True)
        if not keep_dtype or arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        tensors.append(Tensor(arr, requires_grad=True))
    with no_grad():
        out_size = _output(fn, tensors).data.size
    in_size = sum(t.data.size for t in tensors)
    if mode == "auto":
        mode = "full" if in_size * out_size <= 20_000 else "random"

    if mode == "full":
        analytic = np.zeros((out_size, in_size))
        for j in range(out_size):
            onehot = np.zeros(out_size)
            onehot[j] = 1
            analytic[j] = np.concatenate([g.ravel() for g in _vjp(fn, tensors, onehot)])
        numeric = np.zeros((out_size, in_size))
        col = 0
        for i, t in enumerate(tensors):
            for k in range(t.data.size):
                direction = [np.zeros_like(s.data) for s in tensors]
                direction[i].reshape(-1)[k] = 1
                numeric[:, col] = _numerical_jvp(fn, tensors, direction, eps).ravel()
                col += 1
        _compare(analytic, numeric, atol, rtol, tensors, "full")
    elif mode == "random":
        rng = np.random.default_rng(seed)
        analytic, numeric = np.zeros(projections), np.zeros(projections)
        for p in range(projections):
            u = rng.standard_normal(out_size)
            v = [rng.standard_normal(t.data.shape) for t in tensors]
            grads = _vjp(fn, tensors, u)
            analytic[p] = sum(float(np.sum(g * d)) for g, d in zip(grads, v, strict=True))
            numeric[p] = float(np.dot(u, _numerical_jvp(fn, tensors, v, eps).ravel()))
        _compare(analytic[None, :], numeric[None, :], atol, rtol, tensors, "random")
    else:
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'random', got {mode!r}")
    return True


def _compare(analytic, numeric, atol, rtol, tensors, mode):
    bad = ~np.isclose(analytic, numeric, atol=atol, rtol=rtol, equal_nan=False)
    if not bad.any():
        return
    err = np.where(bad, np.abs(analytic - numeric), -1)
    worst = np.argsort(err, axis=None)[::-1][: min(5, int(bad.sum()))]
    offsets = np.cumsum([0] + [t.data.size for t in tensors])
    lines = [f"gradcheck failed ({mode} mode): {int(bad.sum())} of {bad.size} entries differ "
             f"beyond atol={atol:g}, rtol={rtol:g}"]
    for flat in worst:
        j, col = np.unravel_index(flat, analytic.shape)
        if mode == "full":
            i = int(np.searchsorted(offsets, col, side="right") - 1)
            where = np.unravel_index(col - offsets[i], tensors[i].data.shape)
            label = f"d out[{j}] / d input{i}{list(map(int, where))}"
        else:
            label = f"projection {col}"
        lines.append(f"  {label}: backprop {analytic[j, col]:.10g}, numerical "
                     f"{numeric[j, col]:.10g}, |diff| {abs(analytic[j, col] - numeric[j, col]):.3g}")
    raise GradcheckError("\n".join(lines))
