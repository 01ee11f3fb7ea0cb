"""Settings of the REST service (the training limits live in service.settings).

Each has a ``GRADBOOK_*`` environment variable; ``gradbook serve`` options override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

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
