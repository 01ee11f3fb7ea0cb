"""Answers that cannot change until the job writes again, kept ready to send.

A job's recorded book changes only when its row changes (every flush moves ``steps_done`` and
``updated_at``; truncation on resume and state changes move ``updated_at``), so an encoded answer
keyed by that version is exact for as long as the key matches. Dashboards that poll the same
series get it for the cost of one primary-key read; the ETag lets them skip the body as well.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from fastapi import Request, Response


def job_version(job: dict) -> tuple:
    return job["status"], job["steps_done"], job["updated_at"]


class ResponseCache:
    """LRU of encoded bodies, bounded by their total size."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return body

    def put(self, key: tuple, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:  # one huge answer must not flush everything else
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._size -= len(old) if old is not None else 0
            self._items[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


def cached_json(request: Request, key: tuple, compute) -> Response:
    """The JSON answer for ``key`` (which must include the job's version), computed by
    ``compute() -> bytes`` on a miss; 304 when the client already has it (If-None-Match)."""
    cache: ResponseCache = request.app.state.response_cache
    etag = '"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}  # may be kept, but must be revalidated
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = cache.get(key)
    if body is None:
        body = compute()
        cache.put(key, body)
    return Response(body, media_type="application/json", headers=headers)
