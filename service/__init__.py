"""The service as the command line uses it: one import, and nothing heavy until it is used.

    from service import open_store, run_job, cancel_job, presets, replay, encode, domain

- ``open_store``: the database opened (and migrated) with the jobs whose process died marked
  interrupted; ``create=False`` for readers, which must not leave an empty database behind.
- ``run_job`` (``resume=True`` continues from the last checkpoint, reporting ``Restoring`` first),
  ``cancel_job``, and ``check_allowed``: what ``domain`` allows done to a job, or its refusal.
- ``presets``, ``replay`` (graph and numerical check of a step), ``encode`` (strict JSON in, JSON /
  CSV / NDJSON out), ``domain`` (statuses and lifecycle rules): the modules themselves.
- ``optimizer_catalog`` (what GET /optimizers answers), ``upload_dataset`` (as POST /datasets).
- ``plan_spec``, ``job_view``, ``check_range``, ``graph_from_dict``, ``ServerSettings`` and the
  errors a front end turns into messages.

Modules and names are loaded on first access (a module ``__getattr__``), so `gradbook --help` loads
neither NumPy nor SQLAlchemy nor the trainer. This module imports no other part of ``service`` at
import time, so the packages below it can be imported without it importing them back.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

# name -> "module" (the module itself) or "module:attribute"
_LAZY = {
    "domain": "service.domain",
    "encode": "service.api.encode",
    "presets": "service.jobs.presets",
    "replay": "service.jobs.replay",
    "run_job": "service.runtime.runner:run_job",
    "dataset_resolver": "service.runtime.datasets:dataset_resolver",
    "Restoring": "service.runtime.runner:Restoring",
    "job_view": "service.domain:job_view",
    "format_loc": "service.jobs.errors:format_loc",
    "check_range": "service.store.read:check_range",
    "ServerSettings": "service.config:ServerSettings",
    "SpecError": "service.jobs.errors:SpecError",
    "DataError": "service.jobs.errors:DataError",
    "GraphError": "service.jobs.replay:GraphError",
    "VerifyError": "service.jobs.replay:VerifyError",
    "StoreError": "service.store.errors:StoreError",
    "JobStateError": "service.store.errors:JobStateError",
}

if TYPE_CHECKING:  # what the lazy names are, for readers and type checkers
    from service import domain  # noqa: F401
    from service.api import encode  # noqa: F401
    from service.config import ServerSettings  # noqa: F401
    from service.domain import job_view  # noqa: F401
    from service.jobs import presets, replay  # noqa: F401
    from service.jobs.errors import (  # noqa: F401
        DataError,  # noqa: F401
        SpecError,
        format_loc,
    )
    from service.jobs.plan import Plan  # noqa: F401
    from service.jobs.replay import GraphError, VerifyError  # noqa: F401
    from service.runtime.datasets import dataset_resolver  # noqa: F401
    from service.runtime.runner import Restoring, run_job  # noqa: F401
    from service.store import Store
    from service.store.errors import JobStateError, StoreError  # noqa: F401
    from service.store.read import check_range  # noqa: F401


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = importlib.import_module(module)
    if attribute:
        value = getattr(value, attribute)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


# --- the database ---------------------------------------------------------------------------------------


class DatabaseError(Exception):
    """The database cannot be used: a malformed URL, a missing driver, a file that cannot be opened."""


class NoDatabase(DatabaseError):
    """A reader was pointed at a SQLite file that does not exist (and did not create it)."""

    def __init__(self, url: str, path: Path):
        super().__init__(f"no database at {path}")
        self.url = url
        self.path = path


def resolve_database_url(database_url: str | None = None) -> str:
    """``database_url``, else $GRADBOOK_DATABASE_URL, else ./gradbook.db; DatabaseError if malformed."""
    from service.store.engine import database_url as resolve

    try:
        return resolve(database_url)
    except ValueError as e:
        raise DatabaseError(str(e)) from None


@contextlib.contextmanager
def _opening(url: str):
    """A database that cannot be reached (no driver, unknown dialect, bad path) as a DatabaseError."""
    from sqlalchemy.exc import NoSuchModuleError, OperationalError

    try:
        yield
    except (NoSuchModuleError, ImportError, OperationalError) as e:
        reason = str(e).splitlines()[0]
        raise DatabaseError(f"cannot open the database {url!r}: {reason}") from None


def open_store(database_url: str | None = None, *, create: bool = True) -> tuple[Store, list[int]]:
    """The store, migrated, and the ids of the jobs just marked interrupted because their owner
    process is gone. ``create=False`` raises NoDatabase for a SQLite file that does not exist."""
    from sqlalchemy.engine import make_url

    from service.store import Store
    from service.store.engine import is_file_sqlite

    url = resolve_database_url(database_url)
    if not create and is_file_sqlite(url):
        path = Path(make_url(url).database)
        if not path.exists():
            raise NoDatabase(url, path.absolute())
    with _opening(url):
        store = Store(url=url)
    return store, store.recover_orphans()


def upgrade_database(database_url: str | None = None) -> str:
    """Apply the migrations (creating the database if needed); the URL it used."""
    from service.store.engine import upgrade

    url = resolve_database_url(database_url)
    with _opening(url):
        upgrade(url)
    return url


# --- jobs -----------------------------------------------------------------------------------------------


def plan_spec(doc, base: Path | None = None, resolve_dataset=None) -> tuple[dict, Plan]:
    """A job spec document checked and planned (its data loaded: a bad file fails here, not in the
    job): the spec to store and its plan. A CSV path is made absolute against ``base`` (default: the
    working directory), so the job finds its file from any directory; ``resolve_dataset(id) -> (x,
    y)`` serves ``{"dataset_id": ID}`` (see ``dataset_resolver``). SpecError or DataError."""
    from service.jobs.plan import make_plan
    from service.jobs.spec import CsvData, parse_spec

    spec = parse_spec(doc)
    if isinstance(spec.data, CsvData):
        spec.data.csv = str(((base or Path.cwd()) / spec.data.csv).resolve())
    return spec.model_dump(mode="json"), make_plan(spec, resolve_dataset)


def check_allowed(action: str, job: dict) -> None:
    """Raise JobStateError with ``domain``'s refusal unless it allows ``action`` ("cancel", "resume"
    or "delete") on ``job`` (a store job dict) in its status."""
    from service import domain
    from service.store.errors import JobStateError

    allowed = {"cancel": domain.can_cancel, "resume": domain.can_resume, "delete": domain.can_delete}
    if not allowed[action](job["status"]):
        raise JobStateError(domain.refusal(action, job["id"], job["status"]))


def cancel_job(store: Store, job: dict, reason: str) -> dict:
    """Cancel ``job`` if ``domain`` allows it (else JobStateError); the job afterwards. A trainer
    running it, here or in a server's worker, sees the state at its next flush and stops."""
    check_allowed("cancel", job)
    store.transition(job["id"], "cancelled", reason=reason)
    return store.get_job(job["id"])


def graph_from_dict(doc: dict):
    """An ``autodiff.Graph`` back from its ``to_dict()`` form (as the REST API sends it), so a graph
    read from a server prints exactly as one computed here."""
    from autodiff import Graph

    return Graph.from_dict(doc)


# --- what a spec can name ------------------------------------------------------------------------------


def optimizer_catalog() -> dict:
    """The optimizers (built-ins and plug-ins: hyperparameters with types, defaults and ranges) and
    the learning-rate schedules, as the REST API's GET /optimizers answers them."""
    import optim
    from service.api.encode import finite

    return finite({"optimizers": optim.available(), "schedules": optim.available_schedules()})


def upload_dataset(store: Store, name: str, content: bytes, targets: int = 1) -> dict:
    """Store a CSV of training data after the checks the server's POST /datasets makes (finite
    numbers, the size limit); the dataset without its content. DataError, located at ``name``."""
    from service.jobs.data import check_upload

    meta = check_upload(content, targets, (name,))
    row = store.get_dataset(store.create_dataset(name, content, meta))
    return {key: value for key, value in row.items() if key != "content"}
