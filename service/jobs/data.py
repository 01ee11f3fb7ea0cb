"""Training data: built-in generators, CSV parsing, the checks every data source goes through, and
:func:`load_data`, which reads a job spec's data from wherever it says it is.

Built-in datasets are generated from a seed with NumPy's PCG64, so the same options give the same
arrays on every machine. Every source ends as ``x`` (n, features) floats and ``y`` (n, targets)
floats; cross-entropy labels travel as one float column and become integers in :func:`check_arrays`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from optim.errors import shown
from service.config import settings
from service.jobs.errors import DataError


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # (n, features) float
    y: np.ndarray  # (n, targets) float, or (n,) int64 class labels for cross-entropy


# --- built-in generators -------------------------------------------------------------------------


def xor(n: int = 4, noise: float = 0.0, seed: int = 0):
    """The four corners of the unit square, cycled to n points, label = x1 XOR x2 (0 or 1)."""
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0.0, 1.0, 1.0, 0.0])
    idx = np.arange(n) % 4
    x = corners[idx]
    if noise > 0:
        x = x + np.random.default_rng(seed).normal(0.0, noise, x.shape)
    return x, labels[idx][:, None]


def moons(n: int = 200, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles (as scikit-learn's make_moons), label 0 or 1, shuffled."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    x = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
        np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1),
    ])
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    if noise > 0:
        x = x + rng.normal(0.0, noise, x.shape)
    order = rng.permutation(n)
    return x[order], y[order][:, None]


def spirals(n: int = 300, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """``classes`` interleaved spiral arms (the CS231n toy problem), integer labels, shuffled."""
    rng = np.random.default_rng(seed)
    per = np.full(classes, n // classes)
    per[: n % classes] += 1
    xs, ys = [], []
    for k, m in enumerate(per):
        r = np.linspace(0.0, 1.0, m)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, m) + rng.normal(0.0, noise, m)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(m, float(k)))
    order = rng.permutation(n)
    return np.concatenate(xs)[order], np.concatenate(ys)[order][:, None]


def sine(n: int = 200, noise: float = 0.0, seed: int = 0):
    """y = sin(x) for x uniform on [-pi, pi], plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    y = np.sin(x)
    if noise > 0:
        y = y + rng.normal(0.0, noise, y.shape)
    return x, y


def linear(n: int = 100, features: int = 1, outputs: int = 1, noise: float = 0.1, seed: int = 0):
    """y = x W + b + noise with W, b drawn from N(0, 1) and x from N(0, 1)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((features, outputs))
    b = rng.standard_normal(outputs)
    x = rng.standard_normal((n, features))
    y = x @ w + b
    if noise > 0:
        y = y + rng.normal(0.0, noise, y.shape)
    return x, y


GENERATORS = {"xor": xor, "moons": moons, "spirals": spirals, "sine": sine, "linear": linear}


def generate(name: str, **options) -> tuple[np.ndarray, np.ndarray]:
    if name not in GENERATORS:
        raise DataError(("data", "dataset"),
                        f"unknown dataset {shown(name)}; choose from {', '.join(GENERATORS)}")
    return GENERATORS[name](**options)


# --- CSV ---------------------------------------------------------------------------------------------


def parse_csv(text: str, targets: int = 1, loc: tuple = ("data", "csv")):
    """Numbers in rows; the last ``targets`` columns are y. A first row with any non-number is a header.

    Returns (x, y, column names). Errors name the row (1-based, as an editor shows it) and column.
    """
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except csv.Error as e:  # e.g. a stray carriage return inside a field
        raise DataError(loc, f"not readable as CSV: {e}") from None
    if not rows:
        raise DataError(loc, "the file has no rows")
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise DataError(loc, "the file has a header but no data rows")
    width = len(header) if header else len(rows[0])
    if width <= targets:
        raise DataError(loc, f"need more than {targets} column(s) (features, then {targets} target(s)), "
                             f"got {width}")
    values = np.empty((len(rows), width))
    first = 2 if header else 1
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(loc, f"row {i + first} has {len(row)} columns, expected {width}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DataError(loc, f"row {i + first} column {j + 1}: {cell!r} is not a number") from None
    columns = header or [f"x{j + 1}" for j in range(width - targets)] + [f"y{j + 1}" for j in range(targets)]
    return values[:, : width - targets], values[:, width - targets:], columns


def check_upload(raw: bytes, targets: int, loc: tuple = ("body",)) -> dict:
    """Parse and check an uploaded CSV of training data (what POST /datasets and `gradbook datasets
    upload` store): its meta (rows, features, targets, columns), or a DataError at ``loc`` naming the
    offending row and column."""
    if not raw.strip():
        raise DataError(loc, "the CSV is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(loc, f"not UTF-8 text (byte {e.start})") from None
    try:
        x, y, columns = parse_csv(text, targets, loc)
    except csv.Error as e:  # e.g. a lone carriage return inside a field
        raise DataError(loc, f"not readable as CSV: {e}") from None
    for a, offset in ((x, 0), (y, x.shape[1])):
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise DataError(loc, f"row {i + 1} column {j + 1 + offset}: {a[i, j]} is not a finite number")
    limit = settings().max_data_values
    if x.size + y.size > limit:
        raise DataError(loc, f"{x.size + y.size:,} values exceed the limit of {limit:,} "
                             "(GRADBOOK_MAX_DATA_VALUES)")
    return {"rows": int(x.shape[0]), "features": int(x.shape[1]), "targets": int(y.shape[1]),
            "columns": columns}


def read_csv(path: str, targets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise DataError(("data", "csv"), f"cannot read {path!r}: {e.strerror or e}") from None
    x, y, _ = parse_csv(text, targets)
    return x, y


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# --- checks shared by every source -----------------------------------------------------------------


def check_arrays(x, y, loss: str, n_out: int, dtype=np.float64) -> Dataset:
    """Validate x and y for a model with ``n_out`` outputs trained with ``loss``; convert them.

    cross_entropy wants one column of integer labels in [0, n_out); binary_cross_entropy_with_logits wants 0/1
    targets with n_out columns; the regression losses want n_out real columns.
    """
    x = _as_matrix(x, ("data", "x"))
    y = _as_matrix(y, ("data", "y"))
    if x.shape[0] == 0:
        raise DataError(("data", "x"), "needs at least one row")
    if x.shape[1] == 0:
        raise DataError(("data", "x"), "needs at least one column")
    if y.shape[0] != x.shape[0]:
        raise DataError(("data", "y"), f"has {y.shape[0]} rows but x has {x.shape[0]}")
    _finite(x, ("data", "x"))
    _finite(y, ("data", "y"))
    if loss == "cross_entropy":
        if y.shape[1] != 1:
            raise DataError(("data", "y"), "cross_entropy needs one column of class labels, got "
                                           f"{y.shape[1]} columns")
        labels = y[:, 0]
        bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= n_out))
        if bad.size:
            i = int(bad[0])
            raise DataError(("data", "y"), f"cross_entropy labels must be integers in [0, {n_out}) (the last "
                                           f"layer has {n_out} units), got {labels[i]:g} in row {i + 1}")
        return Dataset(x.astype(dtype), labels.astype(np.int64))
    if y.shape[1] != n_out:
        raise DataError(("data", "y"), f"has {y.shape[1]} column(s) but the last layer has {n_out} unit(s)")
    if loss == "binary_cross_entropy_with_logits":
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            i = int(bad[0])
            raise DataError(("data", "y"), f"binary_cross_entropy_with_logits targets must be 0 or 1, got "
                                           f"{y.reshape(-1)[i]:g} in row {i // y.shape[1] + 1}")
    return Dataset(x.astype(dtype), y.astype(dtype))


def _as_matrix(a, loc) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(loc, "must be a list of rows of numbers, all rows the same length") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(loc, f"must be a list of rows (2-D), got {arr.ndim}-D with shape {arr.shape}")
    return arr


def _finite(a: np.ndarray, loc) -> None:
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise DataError(loc, f"contains {a[i, j]} at row {i + 1} column {j + 1}; values must be finite")


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation): a seeded permutation, the last ``fraction`` held out."""
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_val = int(math.floor(n * fraction))
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val:])


# --- a spec's data, wherever it is ----------------------------------------------------------------


def load_data(spec, resolve_dataset=None) -> tuple[np.ndarray, np.ndarray]:
    """Raw (x, y) of a job spec's data. ``resolve_dataset(id) -> (x, y)`` serves uploaded datasets.

    The data section is told apart by its fields, as the spec's own parser picks its model
    (this module sits below spec.py and does not import it)."""
    data = spec.data
    if hasattr(data, "x"):
        return data.x, data.y
    if hasattr(data, "dataset"):
        return generate(data.dataset, **data.model_dump(exclude={"dataset"}))
    if hasattr(data, "csv"):
        return read_csv(data.csv, data.targets)
    if resolve_dataset is None:
        raise DataError(("data", "dataset_id"), "uploaded datasets are only available through the REST "
                                                "service; use inline data, a built-in dataset or a CSV file")
    return resolve_dataset(data.dataset_id)
