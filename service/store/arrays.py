"""Arrays as raw little-endian bytes plus dtype and shape (never pickle)."""

from __future__ import annotations

import json

import numpy as np

# Booleans, integers and floats only: anything else (objects, strings) could not be raw bytes.
_KINDS = "biuf"


def encode_array(name: str, value) -> tuple[str, str, bytes]:
    """``(dtype, shape, data)`` for storing ``value``; dtype is NumPy's explicit little-endian string."""
    arr = np.asarray(value)
    if arr.dtype.kind not in _KINDS:
        raise ValueError(f"array {name!r}: dtype {arr.dtype} cannot be stored; expected bool, int or float")
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return little.dtype.str, json.dumps(list(arr.shape)), np.ascontiguousarray(little).tobytes()


def decode_array(name: str, dtype: str, shape: str, data: bytes) -> np.ndarray:
    """The array stored by :func:`encode_array`, as a writable array in native byte order."""
    dt = np.dtype(dtype)
    if dt.kind not in _KINDS:
        raise ValueError(f"array {name!r}: stored dtype {dtype!r} is not a plain numeric type")
    dims = tuple(json.loads(shape))
    return np.frombuffer(data, dtype=dt).reshape(dims).astype(dt.newbyteorder("="))
