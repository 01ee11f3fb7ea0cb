"""Errors raised by the store; each message names the job, field or state involved."""


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class JobNotFound(StoreError, LookupError):
    def __init__(self, job_id):
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class UnknownParam(StoreError, LookupError):
    def __init__(self, job_id, param, known):
        super().__init__(f"param: job {job_id} has no parameter {param!r}; expected one of {list(known)}")
        self.param = param


class JobStateError(StoreError):
    """A status change or operation that the job's current state does not allow."""


class IdempotencyConflict(StoreError):
    def __init__(self, key, job_id):
        super().__init__(f"idempotency key {key!r} was already used for job {job_id} with a different spec")
        self.key = key
        self.job_id = job_id
