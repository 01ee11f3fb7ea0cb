"""Optimizer state on disk: JSON metadata plus raw little-endian arrays in one byte string.

Layout of :func:`pack_state` (the same idea as safetensors): 8 bytes little-endian header length
``n``, then ``n`` bytes of UTF-8 JSON ``{"meta": <state_dict meta>, "arrays": {key: {"dtype": "<f8",
"shape": [...], "offset": [start, stop]}}}``, then the array bytes, C order, little-endian, each
starting at a multiple of 8 bytes (offsets count from the end of the header). A trainer that stores
arrays its own way needs only ``state_dict()``'s ``meta`` (already JSON-able) and ``arrays``.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from .errors import StateDictError


def _little_endian(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("<"), copy=False)


def pack_state(state_dict: dict) -> bytes:
    """Serialize ``{"meta": ..., "arrays": ...}`` to bytes (see the module docstring)."""
    index = {}
    chunks = []
    pos = 0
    for key, arr in state_dict["arrays"].items():
        data = _little_endian(np.asarray(arr)).tobytes()
        index[key] = {"dtype": _little_endian(np.asarray(arr)).dtype.str, "shape": list(np.shape(arr)),
                      "offset": [pos, pos + len(data)]}
        pad = (-len(data)) % 8
        chunks.append(data + b"\0" * pad)
        pos += len(data) + pad
    header = json.dumps({"meta": state_dict["meta"], "arrays": index}, allow_nan=False).encode()
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)


def unpack_state(blob: bytes) -> dict:
    """Inverse of :func:`pack_state`; arrays come back in native byte order."""
    if len(blob) < 8:
        raise StateDictError("optimizer state blob is truncated (no header)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise StateDictError("optimizer state blob is truncated (header runs past the end)")
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        raise StateDictError(f"optimizer state blob has a corrupt header: {e}") from None
    body = memoryview(blob)[8 + n:]
    arrays = {}
    for key, info in header["arrays"].items():
        a, b = info["offset"]
        if not 0 <= a <= b <= len(body):
            raise StateDictError(f"optimizer state blob: array {key!r} lies outside the data")
        dt = np.dtype(info["dtype"])
        arr = np.frombuffer(body[a:b], dtype=dt).reshape(info["shape"])
        arrays[key] = arr.astype(dt.newbyteorder("="), copy=True)
    return {"meta": header["meta"], "arrays": arrays}


def save_state(state_dict: dict, path) -> None:
    """Write :func:`pack_state` bytes to ``path`` atomically (write, then rename)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(pack_state(state_dict))
    os.replace(tmp, path)


def load_state(path) -> dict:
    with open(path, "rb") as f:
        return unpack_state(f.read())
