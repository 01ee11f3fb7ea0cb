"""Limits and tunables, read from the environment each time they are asked for.

Every limit has a ``GRADBOOK_*`` variable so an operator can raise or lower it without a code change;
reading at call time (not import time) lets tests and the service change them per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    max_steps: int = 1_000_000          # GRADBOOK_MAX_STEPS: updates per job
    max_params: int = 5_000_000         # GRADBOOK_MAX_PARAMS: model parameters per job
    max_data_values: int = 20_000_000   # GRADBOOK_MAX_DATA_VALUES: entries of x plus y
    max_layers: int = 64                # GRADBOOK_MAX_LAYERS
    max_units: int = 100_000            # GRADBOOK_MAX_UNITS: units in one layer
    small_model_params: int = 10_000    # GRADBOOK_SMALL_MODEL_PARAMS: snapshot every step up to this size
    large_snapshot_every: int = 100     # GRADBOOK_LARGE_SNAPSHOT_EVERY: least default for bigger models
    checkpoint_every: int = 100         # GRADBOOK_CHECKPOINT_EVERY: default when the spec gives none ...
    checkpoint_seconds: float = 10.0    # GRADBOOK_CHECKPOINT_SECONDS: ... and then at most this often
    keep_checkpoints: int = 2           # GRADBOOK_KEEP_CHECKPOINTS: the newest ones kept per job
    flush_rows: int = 2_000             # GRADBOOK_FLUSH_ROWS: history rows buffered before a write
    flush_seconds: float = 0.5          # GRADBOOK_FLUSH_SECONDS: longest time a step waits to be written
    heartbeat_seconds: float = 1.0      # GRADBOOK_HEARTBEAT_SECONDS
    writer_process_after: float = 5.0   # GRADBOOK_WRITER_PROCESS_AFTER: a job's history is written by a
                                        # process of its own once the job has run this long (inf: never)
    verify_max_params: int = 20_000     # GRADBOOK_VERIFY_MAX_PARAMS: bumping costs 2 forwards per parameter
    graph_max_values: int = 200_000     # GRADBOOK_GRAPH_MAX_VALUES: entries over all nodes of a shown graph

    @classmethod
    def from_env(cls, environ=None) -> Settings:
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            key = "GRADBOOK_" + f.name.upper()
            raw = env.get(key)
            if raw is None or raw.strip() == "":
                continue
            kind = float if isinstance(f.default, float) else int
            try:
                value = kind(raw.replace("_", ""))
            except ValueError:
                raise ValueError(f"{key}: expected a number, got {raw!r}") from None
            if value <= 0:
                raise ValueError(f"{key}: must be positive, got {raw!r}")
            values[f.name] = value
        return cls(**values)


def settings() -> Settings:
    return Settings.from_env()
