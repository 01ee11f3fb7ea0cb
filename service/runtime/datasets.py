"""Uploaded datasets served to jobs: a spec's ``{"dataset_id": ID}`` read from the store."""

from __future__ import annotations

import numpy as np

from service.domain import MAX_ID
from service.jobs.data import DataError, parse_csv


def dataset_resolver(store):
    """``resolve(dataset_id) -> (x, y)`` reading uploaded datasets from ``store`` (parsed once each)."""
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def resolve(dataset_id):
        loc = ("data", "dataset_id")
        try:
            key = int(dataset_id)
        except (TypeError, ValueError):
            raise DataError(loc, f"expected the integer id of an uploaded dataset, got {dataset_id!r}") \
                from None
        if not 1 <= key <= MAX_ID:
            raise DataError(loc, f"no dataset {key}; upload one with `gradbook datasets upload` "
                                 "or POST /datasets")
        if key not in cache:
            row = store.get_dataset(key)
            if row is None:
                raise DataError(loc, f"no dataset {key}; upload one with `gradbook datasets upload` or "
                                     "POST /datasets (`gradbook datasets` and GET /datasets list them)")
            x, y, _ = parse_csv(row["content"].decode("utf-8"), int(row["meta"].get("targets", 1)), loc)
            cache[key] = (x, y)
        return cache[key]

    return resolve
