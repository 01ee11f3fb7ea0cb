"""The history store: jobs, their per-step book, snapshots, checkpoints and uploaded datasets, in
one SQL database behind one ``Store`` interface. The schema changes only through the Alembic
migrations in ``migrations/``."""

from service.store.errors import IdempotencyConflict, JobNotFound, JobStateError, StoreError, UnknownParam
from service.store.facade import Store
from service.store.read import check_range

__all__ = [
    "IdempotencyConflict", "JobNotFound", "JobStateError", "Store", "StoreError", "UnknownParam",
    "check_range",
]
