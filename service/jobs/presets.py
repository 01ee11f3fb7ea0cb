"""Ready-made job specs: the lecture's seed network and four classic toy problems."""

from __future__ import annotations

import copy

PRESETS: dict[str, dict] = {
    "seed": {
        "description": "The lecture's network: one hidden ReLU unit, x = 1, y = 5; its first step has "
                       "loss 2 and gradients w1 6, b1 6, w2 4, b2 2.",
        "spec": {
            "name": "seed",
            "model": {"layers": [{"units": 1, "activation": "relu"}, {"units": 1, "activation": "relu"}],
                      "init": {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}},
            "data": {"x": [[1.0]], "y": [[5.0]]},
            "loss": "half_squared_error",
            "optimizer": {"name": "sgd", "lr": 0.1},
            "steps": 100,
        },
    },
    "xor": {
        "description": "XOR of two bits: 2-4-1 tanh network, logistic loss, SGD with momentum.",
        "spec": {
            "name": "xor",
            "model": {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "linear"}],
                      "init": {"scheme": "xavier", "seed": 1}},
            "data": {"dataset": "xor"},
            "loss": "binary_cross_entropy_with_logits",
            "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
            "steps": 200,
        },
    },
    "moons": {
        "description": "Two interleaving half circles: 2-16-16-1 ReLU network, minibatches of 32, Adam, "
                       "20% held out for validation.",
        "spec": {
            "name": "moons",
            "model": {"layers": [{"units": 16, "activation": "relu"}, {"units": 16, "activation": "relu"},
                                 {"units": 1, "activation": "linear"}],
                      "init": {"scheme": "he", "seed": 0}},
            "data": {"dataset": "moons", "n": 200, "noise": 0.1, "seed": 0},
            "loss": "binary_cross_entropy_with_logits",
            "optimizer": {"name": "adam", "lr": 0.01},
            "epochs": 60,
            "batch_size": 32,
            "seed": 0,
            "validation": {"fraction": 0.2},
        },
    },
    "spirals": {
        "description": "Three spiral arms: 2-32-32-3 ReLU network, softmax cross-entropy, Adam.",
        "spec": {
            "name": "spirals",
            "model": {"layers": [{"units": 32, "activation": "relu"}, {"units": 32, "activation": "relu"},
                                 {"units": 3, "activation": "linear"}],
                      "init": {"scheme": "he", "seed": 0}},
            "data": {"dataset": "spirals", "n": 300, "classes": 3, "noise": 0.2, "seed": 0},
            "loss": "cross_entropy",
            "optimizer": {"name": "adam", "lr": 0.01},
            "steps": 1000,
        },
    },
    "sine": {
        "description": "Regression of sin(x) on [-pi, pi]: 1-16-16-1 tanh network, mean squared error, Adam.",
        "spec": {
            "name": "sine",
            "model": {"layers": [{"units": 16, "activation": "tanh"}, {"units": 16, "activation": "tanh"},
                                 {"units": 1, "activation": "linear"}],
                      "init": {"scheme": "xavier", "seed": 0}},
            "data": {"dataset": "sine", "n": 200, "seed": 0},
            "loss": "mse",
            "optimizer": {"name": "adam", "lr": 0.01},
            "steps": 1000,
        },
    },
}


def names() -> list[str]:
    return list(PRESETS)


def get(name: str) -> dict:
    """A fresh copy of the preset's spec document; KeyError with the known names otherwise."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name]["spec"])


def describe() -> list[dict]:
    """Name, description and spec of every preset (what `gradbook presets` and GET /presets show)."""
    return [{"name": n, "description": p["description"], "spec": copy.deepcopy(p["spec"])}
            for n, p in PRESETS.items()]
