"""Every setting of gradbook, each with a ``GRADBOOK_*`` environment variable, read by one parser.

``Settings``: the training limits and tunables, read from the environment each time they are asked
for (``settings()``), so tests and the service can change them per process. ``ServerSettings``: the
REST service's, read once when the app is built; ``gradbook serve`` options override them.
``database_url()``: the database every part of gradbook uses unless told another.

A field ``max_steps`` is set by ``GRADBOOK_MAX_STEPS``; its type (int, float or str) comes from the
field's annotation, and every number must be positive unless the field's metadata says otherwise. A
variable that is unset or blank leaves the default.
"""

from __future__ import annotations

import functools
import os
import typing
from dataclasses import dataclass, field, fields, replace

ENV_PREFIX = "GRADBOOK_"
DATABASE_URL_ENV = "GRADBOOK_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///gradbook.db"


def env_name(name: str) -> str:
    """The environment variable of the setting ``name``: max_steps -> GRADBOOK_MAX_STEPS."""
    return ENV_PREFIX + name.upper()


def database_url(explicit: str | None = None, environ=None) -> str:
    """The database to use: ``explicit`` if given, else $GRADBOOK_DATABASE_URL, else ./gradbook.db."""
    env = os.environ if environ is None else environ
    return explicit or (env.get(DATABASE_URL_ENV) or "").strip() or DEFAULT_DATABASE_URL


# --- the parser, driven by the dataclass fields -----------------------------------------------------------

_EXPECTED = {int: "an integer", float: "a number"}


@functools.cache
def _kinds(cls) -> dict[str, type]:
    """Field name -> int, float or str, from the annotations (``str | None`` is str)."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kinds[name] = args[0]
    return kinds


class _FromEnvironment:
    """``from_env()`` and the range checks, for a frozen dataclass of settings."""

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Settings from ``GRADBOOK_*`` variables; keyword overrides that are not None win."""
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            key, raw = env_name(f.name), env.get(env_name(f.name))
            if raw is None or not raw.strip():
                continue
            kind = _kinds(cls)[f.name]
            if kind is str:
                values[f.name] = raw
                continue
            try:
                values[f.name] = kind(raw.strip().replace("_", ""))
            except ValueError:
                raise ValueError(f"{key}: expected {_EXPECTED[kind]}, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self):
        for f in fields(self):
            key, kind, value = env_name(f.name), _kinds(type(self))[f.name], getattr(self, f.name)
            if kind is str:
                choices = f.metadata.get("choices")
                if choices and value not in choices:
                    raise ValueError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
                continue
            least = f.metadata.get("least")
            allowed = (int,) if kind is int else (int, float)
            ok = not isinstance(value, bool) and isinstance(value, allowed)
            ok = ok and (value >= least if least is not None else value > 0)
            if not ok:
                what = (f"{_EXPECTED[kind]} of at least {least}" if least is not None
                        else f"a positive {'integer' if kind is int else 'number'}")
                raise ValueError(f"{key}: expected {what}, got {value!r}")


@dataclass(frozen=True)
class Settings(_FromEnvironment):
    max_steps: int = 1_000_000          # GRADBOOK_MAX_STEPS: updates per job
    max_params: int = 5_000_000         # GRADBOOK_MAX_PARAMS: model parameters per job
    max_data_values: int = 20_000_000   # GRADBOOK_MAX_DATA_VALUES: entries of x plus y
    max_layers: int = 64                # GRADBOOK_MAX_LAYERS
    max_units: int = 100_000            # GRADBOOK_MAX_UNITS: units in one layer
    small_model_params: int = 10_000    # GRADBOOK_SMALL_MODEL_PARAMS: snapshot every step up to this size
    large_snapshot_every: int = 100     # GRADBOOK_LARGE_SNAPSHOT_EVERY: least default for bigger models
    checkpoint_every: int = 100         # GRADBOOK_CHECKPOINT_EVERY: default when the spec gives none ...
    checkpoint_seconds: float = 1.0     # GRADBOOK_CHECKPOINT_SECONDS: ... and then at most this often
                                        # (a step without a snapshot replays from one: about this long)
    snapshot_budget_mb: float = 64.0    # GRADBOOK_SNAPSHOT_BUDGET_MB: snapshots and replay checkpoints
                                        # per job, when the spec gives no snapshot_budget_mb
    keep_checkpoints: int = 2           # GRADBOOK_KEEP_CHECKPOINTS: the newest ones kept per job
    flush_rows: int = 2_000             # GRADBOOK_FLUSH_ROWS: history rows buffered before a write
    flush_seconds: float = 0.5          # GRADBOOK_FLUSH_SECONDS: longest time a step waits to be written
    heartbeat_seconds: float = 1.0      # GRADBOOK_HEARTBEAT_SECONDS
    writer_process_after: float = 5.0   # GRADBOOK_WRITER_PROCESS_AFTER: a job's history is written by a
                                        # process of its own once the job has run this long (inf: never)
    verify_max_params: int = 20_000     # GRADBOOK_VERIFY_MAX_PARAMS: bumping costs 2 forwards per parameter
    graph_max_values: int = 200_000     # GRADBOOK_GRAPH_MAX_VALUES: entries over all nodes of a shown graph


def settings() -> Settings:
    return Settings.from_env()


EXECUTORS = ("process", "thread")


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServerSettings(_FromEnvironment):
    database_url: str | None = None          # GRADBOOK_DATABASE_URL (default: database_url())
    api_token: str | None = field(default=None, repr=False)  # GRADBOOK_API_TOKEN: bearer token, if set
    workers: int = field(default_factory=_default_workers)  # GRADBOOK_WORKERS: training processes
    executor: str = field(default="process", metadata={"choices": EXECUTORS})  # GRADBOOK_EXECUTOR
    max_body_bytes: int = 32 * 1024 * 1024   # GRADBOOK_MAX_BODY_BYTES: larger request bodies get 413
    host: str = "127.0.0.1"                  # GRADBOOK_HOST
    port: int = field(default=8000, metadata={"least": 0})  # GRADBOOK_PORT (0: any free port)
    events_poll_seconds: float = 0.1         # GRADBOOK_EVENTS_POLL_SECONDS: event stream's database poll
    recover_seconds: float = 1.0             # GRADBOOK_RECOVER_SECONDS: sweep for jobs whose process died
    cancel_wait_seconds: float = 1.5         # GRADBOOK_CANCEL_WAIT_SECONDS: cancel waits for the worker
    response_cache_bytes: int = 64 * 1024 * 1024  # GRADBOOK_RESPONSE_CACHE_BYTES: ready history answers
    cors_origins: str | None = None          # GRADBOOK_CORS_ORIGINS: comma-separated page origins that may
                                             # call the API from a browser (CORS, and writes); none: off

    def __post_init__(self):
        super().__post_init__()
        if self.api_token is not None and not self.api_token.strip():
            object.__setattr__(self, "api_token", None)  # an empty token means "no token"

    @property
    def trusted_origins(self) -> list[str]:
        """The origins of GRADBOOK_CORS_ORIGINS, as listed."""
        return [o.strip() for o in (self.cors_origins or "").split(",") if o.strip()]

    def with_(self, **changes) -> ServerSettings:
        return replace(self, **changes)
