"""Every setting of gradbook, each with a ``GRADBOOK_*`` environment variable.

``Settings``: the training limits and tunables, read from the environment each time they are asked
for (``settings()``), so tests and the service can change them per process. ``ServerSettings``: the
REST service's, read once when the app is built; ``gradbook serve`` options override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace


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


EXECUTORS = ("process", "thread")


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServerSettings:
    database_url: str | None = None          # GRADBOOK_DATABASE_URL (default sqlite:///gradbook.db)
    api_token: str | None = field(default=None, repr=False)  # GRADBOOK_API_TOKEN: bearer token, if set
    workers: int = field(default_factory=_default_workers)  # GRADBOOK_WORKERS: training processes
    executor: str = "process"                # GRADBOOK_EXECUTOR: process (default) or thread
    max_body_bytes: int = 32 * 1024 * 1024   # GRADBOOK_MAX_BODY_BYTES: larger request bodies get 413
    host: str = "127.0.0.1"                  # GRADBOOK_HOST
    port: int = 8000                         # GRADBOOK_PORT
    events_poll_seconds: float = 0.1         # GRADBOOK_EVENTS_POLL_SECONDS: event stream's database poll
    recover_seconds: float = 1.0             # GRADBOOK_RECOVER_SECONDS: sweep for jobs whose process died
    cancel_wait_seconds: float = 1.5         # GRADBOOK_CANCEL_WAIT_SECONDS: cancel waits for the worker
    response_cache_bytes: int = 64 * 1024 * 1024  # GRADBOOK_RESPONSE_CACHE_BYTES: ready history answers

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise ValueError(f"GRADBOOK_EXECUTOR: expected one of {', '.join(EXECUTORS)}, "
                             f"got {self.executor!r}")
        for name in ("workers", "max_body_bytes", "port", "response_cache_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "port" else 1):
                raise ValueError(f"GRADBOOK_{name.upper()}: expected a positive integer, got {value!r}")
        for name in ("events_poll_seconds", "recover_seconds", "cancel_wait_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GRADBOOK_{name.upper()}: must be positive, got {getattr(self, name)!r}")
        if self.api_token is not None and not self.api_token.strip():
            object.__setattr__(self, "api_token", None)  # an empty variable means "no token"

    @classmethod
    def from_env(cls, environ=None, **overrides) -> ServerSettings:
        """Settings from ``GRADBOOK_*`` variables; keyword overrides that are not None win."""
        env = os.environ if environ is None else environ
        values: dict = {}
        kinds = {"workers": int, "max_body_bytes": int, "port": int, "response_cache_bytes": int,
                 "events_poll_seconds": float,
                 "recover_seconds": float, "cancel_wait_seconds": float}
        for name in ("database_url", "api_token", "executor", "host", *kinds):
            raw = env.get("GRADBOOK_" + name.upper())
            if raw is None or (raw.strip() == "" and name != "api_token"):
                continue
            kind = kinds.get(name, str)
            try:
                values[name] = kind(raw.strip().replace("_", "")) if kind is not str else raw
            except ValueError:
                raise ValueError(f"GRADBOOK_{name.upper()}: expected a number, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> ServerSettings:
        return replace(self, **changes)
