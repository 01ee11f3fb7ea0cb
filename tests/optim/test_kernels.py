"""optim.sumsq: the squared norm behind gradient clipping, the non-finite check and the
recorded gradient norms must be accurate and the same bits in every process."""

import math
import os
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from optim import DOT_ROW, dot_rows, sumsq

# Prints sumsq of one array at eight memory offsets (as hex), in a process with a given BLAS
# thread count.
PROBE = """
import numpy as np
from optim import sumsq
x = np.random.default_rng(7).standard_normal(100_352)
out = set()
for offset in range(8):
    buf = np.empty(x.size + 8)
    view = buf[offset:offset + x.size]
    view[:] = x
    out.add(sumsq(view).hex())
print(" ".join(sorted(out)))
"""


def _probe(threads: int) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_sumsq_is_the_same_bits_whatever_the_thread_count_and_alignment():
    one, two = _probe(1), _probe(2)
    assert len(one) == 1  # eight alignments, one result
    assert one == two


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3 * DOT_ROW + 17), st.integers(0, 2**32 - 1), st.floats(1e-150, 1e150))
def test_sumsq_matches_an_exact_sum_of_squares(n, seed, scale):
    x = np.random.default_rng(seed).standard_normal(n) * scale
    exact = math.fsum(v * v for v in x.tolist())  # each square rounded once, the sum exact
    assert math.isclose(sumsq(x), exact, rel_tol=1e-13, abs_tol=0.0)


def test_dot_rows_are_views_that_tile_the_array():
    x = np.arange(2 * DOT_ROW + 5, dtype=np.float64)
    body, tail = dot_rows(x)
    assert body.shape == (2, DOT_ROW) and tail.shape == (5,)
    assert np.shares_memory(body, x) and np.shares_memory(tail, x)
    np.testing.assert_array_equal(np.concatenate([body.ravel(), tail]), x)


def test_sumsq_propagates_nan_and_inf():
    x = np.ones(3 * DOT_ROW)
    x[DOT_ROW + 3] = np.inf
    assert sumsq(x) == math.inf
    x[5] = np.nan
    assert math.isnan(sumsq(x))


def test_sumsq_overflowing_total_of_finite_rows_is_inf():
    x = np.zeros(2 * DOT_ROW)
    x[0] = x[DOT_ROW] = 1e154  # each row's sum of squares is finite (1e308), their total is not
    assert sumsq(x) == math.inf
