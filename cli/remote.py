"""A small HTTP client for a gradbook server, on the standard library alone (urllib).

    client = Client("http://127.0.0.1:8000", token=None)
    job = client.submit(spec)                      # safe to retry: it sends an Idempotency-Key
    for event in client.events(job["id"]):         # Server-Sent Events, reconnecting with Last-Event-ID
        ...

Errors from the server come back as :class:`RemoteError` with the HTTP status and the server's
message (field errors joined as ``loc: msg``); a server that cannot be reached is a RemoteError with
status 0.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_TIMEOUT = 30.0
STREAM_TIMEOUT = 60.0  # the server sends a keep-alive every 15 s on a quiet stream
RETRIES = 3            # for connection failures of requests that are safe to repeat


class RemoteError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Event:
    """One Server-Sent Event: its type (status, step, end), JSON data and id (the step)."""

    event: str
    data: dict
    id: str | None = None


def _message(detail) -> str:
    if isinstance(detail, list):
        parts = []
        for e in detail:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return "; ".join(parts)
    return str(detail)


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(0, f"--url: expected http(s)://host:port, got {url!r}")
        self.base = url.rstrip("/")
        self.token = token or None
        self.timeout = timeout

    # --- plumbing ---------------------------------------------------------------------------------

    def _url(self, path: str, params: dict | None = None) -> str:
        query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in (params or {}).items()
                 if v is not None}
        return self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def open(self, method: str, path: str, *, params=None, body: bytes | None = None,
             headers: dict | None = None, timeout: float | None = None, retries: int = 0):
        """The raw response (a file-like object), or RemoteError. ``retries`` repeats the request on
        connection failures only (never on an HTTP answer)."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        url = self._url(path, params)
        request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        for attempt in range(retries + 1):
            try:
                return urllib.request.urlopen(request, timeout=timeout or self.timeout)
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    detail = json.loads(raw).get("detail", raw.decode(errors="replace"))
                except (ValueError, AttributeError):
                    detail = raw.decode(errors="replace") or e.reason
                raise RemoteError(e.code, _message(detail)) from None
            except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
                if attempt == retries:
                    reason = getattr(e, "reason", e)
                    raise RemoteError(0, f"cannot reach the gradbook server at {self.base}: {reason}") \
                        from None
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, *, params=None, json_body=None, data: bytes | None = None,
                headers: dict | None = None, retries: int = 0):
        """JSON in, JSON out (None for an empty answer)."""
        headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        with self.open(method, path, params=params, body=data, headers=headers, retries=retries) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    # --- the API ----------------------------------------------------------------------------------

    def health(self) -> dict:
        return self.request("GET", "/health", retries=RETRIES)

    def submit(self, spec: dict, idempotency_key: str | None = None) -> dict:
        """POST /jobs; retried on connection failures with one Idempotency-Key, so never twice."""
        key = idempotency_key or uuid.uuid4().hex
        return self.request("POST", "/jobs", json_body=spec, headers={"Idempotency-Key": key},
                            retries=RETRIES)

    def jobs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> dict:
        return self.request("GET", "/jobs", params={"status": status, "limit": limit, "offset": offset},
                            retries=RETRIES)

    def job(self, job_id: int) -> dict:
        return self.request("GET", f"/jobs/{job_id}", retries=RETRIES)

    def cancel(self, job_id: int) -> dict:
        return self.request("POST", f"/jobs/{job_id}/cancel", retries=RETRIES)  # cancelling twice is harmless

    def resume(self, job_id: int) -> dict:
        return self.request("POST", f"/jobs/{job_id}/resume")

    def history(self, job_id: int, start=None, end=None, max_points: int = 1000) -> dict:
        return self.request("GET", f"/jobs/{job_id}/history",
                            params={"start": start, "end": end, "max_points": max_points}, retries=RETRIES)

    def gradients(self, job_id: int, param: str, start=None, end=None, max_points: int = 1000) -> dict:
        return self.request("GET", f"/jobs/{job_id}/gradients",
                            params={"param": param, "start": start, "end": end, "max_points": max_points},
                            retries=RETRIES)

    def export(self, job_id: int, fmt: str = "csv", start=None, end=None) -> Iterator[bytes]:
        """The export's bytes as they arrive."""
        params = {"format": fmt, "start": start, "end": end}
        response = self.open("GET", f"/jobs/{job_id}/export", params=params, headers={"Accept": "*/*"},
                             retries=RETRIES, timeout=STREAM_TIMEOUT)
        with response:
            while chunk := response.read(64 * 1024):
                yield chunk

    def events(self, job_id: int, last_event_id: str | None = None, reconnects: int = 5) -> Iterator[Event]:
        """The job's events until its ``end`` event, reconnecting (with Last-Event-ID, so no step is
        lost or repeated) when the connection drops."""
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                response = self.open("GET", f"/jobs/{job_id}/events", headers=headers, timeout=STREAM_TIMEOUT)
                with response:
                    for event in parse_sse(response):
                        failures = 0
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if event.event == "end":
                            return
            except RemoteError as e:
                if e.status != 0:
                    raise
                failures += 1
            except (OSError, http.client.HTTPException):  # dropped mid-stream
                failures += 1
            if failures > reconnects:
                raise RemoteError(0, f"lost the event stream of job {job_id} at {self.base}")
            time.sleep(min(0.2 * 2**failures, 5.0))


def parse_sse(lines) -> Iterator[Event]:
    """Events from an iterable of byte lines (a response), per the SSE format: fields until a blank
    line; ``data`` lines joined; comments (``:``) skipped."""
    event, data, event_id = "message", [], None
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield Event(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
