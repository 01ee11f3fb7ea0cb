"""autodiff against hand-written NumPy (and PyTorch, when importable), measured side by side.

    .venv/bin/python benchmarks/bench_autodiff.py [--quick]

Prints ratios; absolute times on a shared machine mean little. Targets:
  MLP training step             <= 1.15x hand-written NumPy
  lecture graph fwd+bwd         >= 3x faster than PyTorch eager (matrix form, and scalar form)
  no_grad forward               <= 1.3x bare NumPy
  backprop vs bumping           N + P against N x P growth
"""

from __future__ import annotations

import sys
import time

import numpy as np

import autodiff as ad
from autodiff import nn

QUICK = "--quick" in sys.argv


def best_time(fn, repeat=7, number=None, budget=0.3):
    """Best of `repeat` rounds, each running fn `number` times; seconds per call."""
    if number is None:
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        number = max(1, int(budget / repeat / once))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def interleaved(fns: dict, rounds=5, **kw):
    """Time several functions in alternating rounds so drift on a noisy machine hits all alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], best_time(fn, repeat=2, **kw))
    return best


# --- 1. MLP training step: 784-256-10, batch 128, float32, ReLU, softmax cross-entropy, SGD ----


def mlp_step_benchmark():
    rng = np.random.default_rng(0)
    f32 = np.float32
    x = rng.standard_normal((128, 784)).astype(f32)
    labels = rng.integers(0, 10, 128)
    onehot = np.eye(10, dtype=f32)[labels]
    lr = f32(0.01)

    model = nn.MLP([784, 256, 10], ["relu", "linear"], seed=0, dtype=f32)
    params = list(model.parameters().values())
    xt = ad.Tensor(x)

    def autodiff_step():
        loss = nn.cross_entropy(model(xt), labels)
        loss.backward()
        for p in params:
            p.data -= lr * p.grad
            p.grad = None

    W1, b1, W2, b2 = (p.data.copy() for p in params)

    def numpy_step():
        h = x @ W1 + b1
        a = np.maximum(h, 0)
        logits = a @ W2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        p = e / e.sum(axis=1, keepdims=True)
        _ = -np.mean(np.log(p[np.arange(128), labels]))
        dlogits = (p - onehot) / f32(128)
        dW2 = a.T @ dlogits
        db2 = dlogits.sum(axis=0)
        da = dlogits @ W2.T
        dh = da * (h > 0)
        dW1 = x.T @ dh
        db1 = dh.sum(axis=0)
        for param, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            param -= lr * g

    # the two implementations agree on the first step
    m2 = nn.MLP([784, 256, 10], ["relu", "linear"], seed=0, dtype=f32)
    loss = nn.cross_entropy(m2(xt), labels)
    loss.backward()
    W1c, b1c, W2c, b2c = (p.data.copy() for p in m2.parameters().values())
    h = x @ W1c + b1c
    a = np.maximum(h, 0)
    logits = a @ W2c + b2c
    pr = np.exp(logits - logits.max(1, keepdims=True))
    pr /= pr.sum(1, keepdims=True)
    dW1_ref = x.T @ (((pr - onehot) / 128) @ W2c.T * (h > 0))
    assert np.allclose(m2.parameters()["w1"].grad, dW1_ref, atol=1e-5), "gradients disagree"

    fns = {"numpy": numpy_step, "autodiff": autodiff_step}
    try:
        import torch

        torch.set_num_threads(max(1, np.__config__ and 2))
        tW1 = torch.tensor(W1.copy(), requires_grad=True)
        tb1 = torch.tensor(b1.copy(), requires_grad=True)
        tW2 = torch.tensor(W2.copy(), requires_grad=True)
        tb2 = torch.tensor(b2.copy(), requires_grad=True)
        tx, tl = torch.tensor(x), torch.tensor(labels)

        def torch_step():
            out = torch.relu(tx @ tW1 + tb1) @ tW2 + tb2
            loss = torch.nn.functional.cross_entropy(out, tl)
            loss.backward()
            with torch.no_grad():
                for p in (tW1, tb1, tW2, tb2):
                    p -= 0.01 * p.grad
                    p.grad = None

        fns["torch"] = torch_step
    except ImportError:
        pass

    t = interleaved(fns, rounds=3 if QUICK else 6)
    print("MLP step 784-256-10, batch 128, float32 (forward + backward + SGD update)")
    for k, v in t.items():
        print(f"  {k:9s} {v * 1e3:8.3f} ms   {v / t['numpy']:.3f}x numpy")
    print(f"  autodiff / hand-written NumPy = {t['autodiff'] / t['numpy']:.3f}  (target <= 1.15)")

    # no_grad forward vs the same forward in bare NumPy
    def numpy_forward():
        return np.maximum(x @ W1 + b1, 0) @ W2 + b2

    def autodiff_forward():
        with ad.no_grad():
            return model(xt)

    t = interleaved({"numpy": numpy_forward, "autodiff": autodiff_forward}, rounds=3 if QUICK else 6)
    print(f"no_grad forward: numpy {t['numpy'] * 1e3:.3f} ms, autodiff {t['autodiff'] * 1e3:.3f} ms, "
          f"ratio {t['autodiff'] / t['numpy']:.3f}  (target <= 1.3)")


# --- 2. The lecture's graph, forward + backward ----------------------------------------------


def lecture_benchmark():
    seed = {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}
    model = nn.MLP([1, 1, 1], ["relu", "relu"], values=seed)
    params = list(model.parameters().values())
    x, y = ad.Tensor([[1.0]]), ad.Tensor([[5.0]])

    def ours():
        J = nn.half_squared_error(model(x), y)
        J.backward()
        for p in params:
            p.grad = None

    fns = {"autodiff": ours}
    try:
        import torch

        tw1 = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
        tb1 = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
        tw2 = torch.tensor([[3.0]], dtype=torch.float64, requires_grad=True)
        tb2 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
        tx = torch.tensor([[1.0]], dtype=torch.float64)
        ty = torch.tensor([[5.0]], dtype=torch.float64)

        def torch_eager():
            a2 = torch.relu(torch.relu(tx @ tw1 + tb1) @ tw2 + tb2)
            J = 0.5 * ((a2 - ty) ** 2).sum(-1).mean()
            J.backward()
            for p in (tw1, tb1, tw2, tb2):
                p.grad = None

        fns["torch"] = torch_eager
    except ImportError:
        pass
    _against_torch("lecture graph (t1 z1 a1 t2 z2 a2 J), forward + backward, per iteration", fns)


def _against_torch(title, fns):
    t = interleaved(fns, rounds=3 if QUICK else 6)
    print(title)
    print(f"  autodiff {t['autodiff'] * 1e6:8.1f} us")
    if "torch" in t:
        print(f"  torch    {t['torch'] * 1e6:8.1f} us   autodiff is {t['torch'] / t['autodiff']:.2f}x faster"
              "  (target >= 3x)")
    else:
        print("  torch not importable (run under a Python that has it, with PYTHONPATH=.)")


def lecture_scalar_benchmark():
    """The same graph written with scalar elementwise ops on 0-d tensors, as a lecture writes it."""
    w1, b1, w2, b2 = (ad.Tensor(v, requires_grad=True) for v in (2.0, 0.0, 3.0, 1.0))
    params = (w1, b1, w2, b2)
    relu = ad.relu

    def ours():
        J = 0.5 * (relu(w2 * relu(w1 * 1.0 + b1) + b2) - 5.0) ** 2
        J.backward()
        for p in params:
            p.grad = None

    J = 0.5 * (relu(w2 * relu(w1 * 1.0 + b1) + b2) - 5.0) ** 2  # a1 = 2, a2 = 7, J = 2
    J.backward()
    assert J.item() == 2.0 and [p.grad.item() for p in params] == [6.0, 6.0, 4.0, 2.0], "wrong gradients"
    for p in params:
        p.grad = None
    fns = {"autodiff": ours}
    try:
        import torch

        tparams = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (2.0, 0.0, 3.0, 1.0)]
        tw1, tb1, tw2, tb2 = tparams

        def torch_eager():
            J = 0.5 * (torch.relu(tw2 * torch.relu(tw1 * 1.0 + tb1) + tb2) - 5.0) ** 2
            J.backward()
            for p in tparams:
                p.grad = None

        fns["torch"] = torch_eager
    except ImportError:
        pass
    _against_torch("lecture graph, scalar form: 0.5 * (relu(w2 * relu(w1 * 1.0 + b1) + b2) - 5.0) ** 2 "
                   "on 0-d tensors, forward + backward", fns)


# --- 3. Backprop vs bumping each parameter ---------------------------------------------------


def backprop_vs_bumping():
    print("backprop vs numerical_grad (bump each parameter, central differences), MLP [h, h, 1], batch 8")
    print(f"  {'P':>8} {'backward':>12} {'bumping':>12} {'ratio':>10}")
    rng = np.random.default_rng(0)
    for h in (2, 9, 31, 99, 315)[: 4 if QUICK else 5]:
        model = nn.MLP([h, h, 1], ["tanh", "linear"], seed=1)
        x = ad.Tensor(rng.standard_normal((8, h)))
        y = ad.Tensor(rng.standard_normal((8, 1)))
        P, t_back, t_bump, err = _compare_methods(model, x, y)
        print(f"  {P:>8} {t_back * 1e3:>10.3f}ms {t_bump * 1e3:>10.1f}ms {t_bump / t_back:>9.0f}x"
              f"   max |backprop - numerical| {err:.1e}")
    print("  backward grows like N + P, bumping like N x P")


def _compare_methods(model, x, y):
    params = model.parameters()
    names = list(params)
    originals = [params[n] for n in names]
    P = sum(p.data.size for p in originals)

    def backprop():
        nn.mse(model(x), y).backward()
        for p in originals:
            p.grad = None

    def loss(*tensors):
        _load(model, names, tensors)
        return nn.mse(model(x), y)

    t_back = best_time(backprop, repeat=3)
    t0 = time.perf_counter()
    numeric = ad.numerical_grad(loss, originals)
    t_bump = time.perf_counter() - t0
    _load(model, names, originals)
    nn.mse(model(x), y).backward()
    err = max(float(np.max(np.abs(g - p.grad))) for g, p in zip(numeric, originals, strict=True))
    return P, t_back, t_bump, err


def _load(model, names, tensors):
    """Point the model's layers at the given parameter tensors (numerical_grad passes copies)."""
    for name, t in zip(names, tensors, strict=True):
        setattr(model.layers[int(name[1:]) - 1], name[0], t)


if __name__ == "__main__":
    mlp_step_benchmark()
    print()
    lecture_benchmark()
    print()
    lecture_scalar_benchmark()
    print()
    backprop_vs_bumping()
