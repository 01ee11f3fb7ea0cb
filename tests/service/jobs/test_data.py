"""Built-in datasets, CSV parsing and the data checks (independent expectations, no training)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.jobs import data as datasets
from service.jobs.data import DataError, check_arrays, parse_csv


@pytest.mark.parametrize("name", list(datasets.GENERATORS))
def test_generators_are_deterministic_in_their_seed(name):
    x1, y1 = datasets.generate(name, seed=3)
    x2, y2 = datasets.generate(name, seed=3)
    x3, _ = datasets.generate(name, seed=4)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.dtype == np.float64 and x1.ndim == 2 and y1.ndim == 2 and len(x1) == len(y1)
    if name != "xor":  # xor without noise is the four corners whatever the seed
        assert not np.array_equal(x1, x3)


def test_xor_labels_are_the_exclusive_or_of_the_corner():
    x, y = datasets.xor(n=8)
    assert x.shape == (8, 2)
    expected = np.logical_xor(x[:, 0] > 0.5, x[:, 1] > 0.5).astype(float)
    assert np.array_equal(y[:, 0], expected)
    assert {tuple(r) for r in x} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_moons_without_noise_lie_on_their_half_circles():
    x, y = datasets.moons(n=101, noise=0.0, seed=0)
    upper, lower = x[y[:, 0] == 0], x[y[:, 0] == 1]
    assert len(upper) == 50 and len(lower) == 51
    assert np.allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0)            # centred (0, 0)
    assert np.allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0)  # centred (1, 0.5)


def test_spirals_have_balanced_integer_classes():
    x, y = datasets.spirals(n=301, classes=4, seed=1)
    labels, counts = np.unique(y, return_counts=True)
    assert list(labels) == [0, 1, 2, 3] and sorted(counts) == [75, 75, 75, 76]
    assert np.all(np.hypot(x[:, 0], x[:, 1]) <= 1 + 1e-12)  # radius runs 0..1


def test_sine_without_noise_is_the_sine():
    x, y = datasets.sine(n=50, seed=2)
    assert np.all(np.abs(x) <= np.pi) and np.array_equal(y, np.sin(x))


def test_linear_without_noise_is_fitted_exactly_by_least_squares():
    x, y = datasets.linear(n=40, features=3, outputs=2, noise=0.0, seed=5)
    design = np.hstack([x, np.ones((40, 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert np.allclose(design @ coef, y, atol=1e-12)


def test_unknown_dataset_names_the_field():
    with pytest.raises(DataError, match=r"data.dataset: unknown dataset 'nope'; choose from xor"):
        datasets.generate("nope")


# --- CSV ---------------------------------------------------------------------------------------------


def test_csv_with_header_splits_trailing_targets():
    x, y, cols = parse_csv("a,b,label\n1,2,0\n3,4.5,1\n", targets=1)
    assert cols == ["a", "b", "label"]
    assert np.array_equal(x, [[1, 2], [3, 4.5]]) and np.array_equal(y, [[0], [1]])


def test_csv_without_header_and_two_targets():
    x, y, cols = parse_csv("1,2,3\n4,5,6\n", targets=2)
    assert cols == ["x1", "y1", "y2"]
    assert np.array_equal(x, [[1], [4]]) and np.array_equal(y, [[2, 3], [5, 6]])


@pytest.mark.parametrize("text, message", [
    ("", "data.csv: the file has no rows"),
    ("a,b\n", "data.csv: the file has a header but no data rows"),
    ("a,b\n1,2\n3\n", "data.csv: row 3 has 1 columns, expected 2"),
    ("1,2\n3,x\n", "data.csv: row 2 column 2: 'x' is not a number"),
    ("1\n2\n", r"data.csv: need more than 1 column\(s\)"),
    ("1,2\r3,4\n", "data.csv: not readable as CSV: new-line character seen in unquoted field"),
])
def test_csv_errors_name_row_and_column(text, message):
    with pytest.raises(DataError, match=message):
        parse_csv(text)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 5)),
              elements=st.floats(allow_nan=False, allow_infinity=False, width=64)))
def test_csv_round_trips_any_finite_matrix_exactly(values):
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in values)
    x, y, _ = parse_csv(text, targets=1)
    assert np.array_equal(np.hstack([x, y]), values)


def test_read_csv_reports_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="data.csv: cannot read"):
        datasets.read_csv(str(tmp_path / "missing.csv"))


# --- checks -----------------------------------------------------------------------------------------


def test_cross_entropy_labels_become_integers():
    data = check_arrays([[0.0], [1.0], [2.0]], [[2], [0], [1]], "cross_entropy", 3)
    assert data.y.dtype == np.int64 and list(data.y) == [2, 0, 1]


@pytest.mark.parametrize("x, y, loss, n_out, message", [
    ([[1.0]], [[3.0]], "cross_entropy", 3,
     r"data.y: cross_entropy labels must be integers in \[0, 3\).*got 3 in row 1"),
    ([[1.0], [2]], [[0.5], [1]], "cross_entropy", 3, "got 0.5 in row 1"),
    ([[1.0]], [[0.0, 1.0]], "cross_entropy", 2, "cross_entropy needs one column of class labels, got 2"),
    ([[1.0]], [[0.5]], "binary_cross_entropy_with_logits", 1,
     "data.y: binary_cross_entropy_with_logits targets must be 0 or 1, got 0.5"),
    ([[1.0]], [[1.0, 2.0]], "mse", 1, r"data.y: has 2 column\(s\) but the last layer has 1 unit\(s\)"),
    ([[1.0], [2.0]], [[1.0]], "mse", 1, "data.y: has 1 rows but x has 2"),
    ([[1.0, np.inf]], [[1.0]], "mse", 1, "data.x: contains inf at row 1 column 2"),
    ([[1.0]], [[np.nan]], "mse", 1, "data.y: contains nan at row 1 column 1"),
    ([[1.0, 2.0], [3.0]], [[1.0], [2.0]], "mse", 1, "data.x: must be a list of rows"),
    ([], [], "mse", 1, "data.x: needs at least one row"),
])
def test_bad_data_names_the_field(x, y, loss, n_out, message):
    with pytest.raises(DataError, match=message):
        check_arrays(x, y, loss, n_out)


@given(st.integers(2, 500), st.floats(0.01, 0.99), st.integers(0, 2**32))
@settings(max_examples=50, deadline=None)
def test_split_is_a_seeded_partition(n, fraction, seed):
    train, val = datasets.split(n, fraction, seed)
    assert len(val) == int(np.floor(n * fraction))
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    again = datasets.split(n, fraction, seed)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
