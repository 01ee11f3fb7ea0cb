"""The lecture's example, end to end: forward values, backprop derivatives, and the bump check.

    python -m autodiff.demo
"""

import numpy as np

import autodiff as ad
from autodiff import nn


def seed_network():
    """x = 1, y = 5, w1 = 2, b1 = 0, w2 = 3, b2 = 1, ReLU on both layers."""
    values = {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}
    return nn.MLP([1, 1, 1], ["relu", "relu"], values=values)


def main():
    model = seed_network()
    x, y = ad.Tensor([[1.0]], name="x"), ad.Tensor([[5.0]], name="y")
    with ad.trace() as tr:
        J = nn.half_squared_error(model(x), y)
    J.backward()
    print(tr.graph.table())

    params = model.parameters()
    w1 = params["w1"]
    print(f"\nbackprop: dJ/dw1 = {w1.grad.item():g}")
    with ad.no_grad():
        w1.data[...] = 2.001
        bumped = nn.half_squared_error(model(x), y).item()
        w1.data[...] = 2.0
    print(f"bump w1 to 2.001: J = {bumped:.7f}, (J - 2) / 0.001 = {(bumped - 2) / 0.001:.4f}")

    names = list(params)
    numeric = ad.numerical_grad(
        lambda *ps: nn.half_squared_error(_with(model, names, ps)(x), y), [params[n] for n in names]
    )
    for name, g in zip(names, numeric, strict=True):
        print(f"  d J/d {name}: backprop {params[name].grad.item():g}, numerical {float(g.item()):.6f}")


def _with(model, names, tensors):
    for name, t in zip(names, tensors, strict=True):
        layer = model.layers[int(name[1:]) - 1]
        setattr(layer, name[0], t)
    return model


if __name__ == "__main__":
    np.set_printoptions(precision=6)
    main()
