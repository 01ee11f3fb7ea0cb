"""Where a job command's jobs are: ``Local`` (the database, --database-url) or ``Remote`` (a gradbook
server, --url, over its REST API). Both offer the same methods, so each command is written once:

    with open_backend(url, token, database_url, read_only=True) as backend:
        rows = backend.history(job_id, start=0, end=9, max_points=1000)

``Client`` is the small HTTP client ``Remote`` uses, on the standard library alone (urllib): errors
from the server come back as :class:`RemoteError` with the HTTP status and the server's message (field
errors joined as ``loc: msg``); a server that cannot be reached is a RemoteError with status 0.
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
from pathlib import Path

import typer

import service
from cli.options import UsageError, read_file
from cli.render import ProgressBar, err, summary
from cli.stopping import stop_at_step_boundary

DEFAULT_TIMEOUT = 30.0
STREAM_TIMEOUT = 60.0  # the server sends a keep-alive every 15 s on a quiet stream
RETRIES = 3            # for connection failures of requests that are safe to repeat


class RemoteError(UsageError):
    """The server's answer to a request it refused (``status``), or status 0: no answer at all."""

    def __init__(self, status: int, message: str):
        super().__init__(message if status == 0 else f"server answered {status}: {message}")
        self.status = status
        self.message = message


class NotDeleted(UsageError):
    """A job that was not deleted (unknown, or in a state that refuses it); the other jobs of the
    command still are."""


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

    def jobs(self, status: str | None = None, limit: int = 100, offset: int = 0,
             include_spec: bool = False) -> dict:
        params = {"status": status, "limit": limit, "offset": offset, "include_spec": include_spec or None}
        return self.request("GET", "/jobs", params=params, retries=RETRIES)

    def job(self, job_id: int) -> dict:
        return self.request("GET", f"/jobs/{job_id}", retries=RETRIES)

    def cancel(self, job_id: int) -> dict:
        return self.request("POST", f"/jobs/{job_id}/cancel", retries=RETRIES)  # cancelling twice is harmless

    def resume(self, job_id: int) -> dict:
        return self.request("POST", f"/jobs/{job_id}/resume")

    def delete(self, job_id: int) -> None:
        """DELETE /jobs/{id}: not repeated on a connection failure (a repeat would answer 404)."""
        self.request("DELETE", f"/jobs/{job_id}")

    def history(self, job_id: int, start=None, end=None, max_points: int = 1000) -> dict:
        return self.request("GET", f"/jobs/{job_id}/history",
                            params={"start": start, "end": end, "max_points": max_points}, retries=RETRIES)

    def gradients(self, job_id: int, param: str, start=None, end=None, max_points: int = 1000) -> dict:
        return self.request("GET", f"/jobs/{job_id}/gradients",
                            params={"param": param, "start": start, "end": end, "max_points": max_points},
                            retries=RETRIES)

    def graph(self, job_id: int, step: int) -> dict:
        return self.request("GET", f"/jobs/{job_id}/graph", params={"step": step, "format": "json"},
                            retries=RETRIES)

    def verify(self, job_id: int, step: int, eps: float) -> dict:
        """POST, but only reads: safe to repeat."""
        return self.request("POST", f"/jobs/{job_id}/steps/{step}/verify", params={"eps": eps},
                            retries=RETRIES)

    def optimizers(self) -> dict:
        return self.request("GET", "/optimizers", retries=RETRIES)

    def datasets(self, limit: int = 100, offset: int = 0) -> dict:
        return self.request("GET", "/datasets", params={"limit": limit, "offset": offset}, retries=RETRIES)

    def upload_dataset(self, name: str, content: bytes, targets: int = 1) -> dict:
        """POST /datasets: not repeated on a connection failure (it would store the file twice)."""
        return self.request("POST", "/datasets", params={"name": name, "targets": targets}, data=content,
                            headers={"Content-Type": "text/csv"})

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


# --- the backends --------------------------------------------------------------------------------------


def open_backend(url: str | None, token: str | None, database_url: str | None, *, read_only: bool):
    """``Remote`` when a server URL is given, else ``Local``; a reader never creates a database."""
    if url:
        return Remote(url, token)
    return Local(database_url, read_only=read_only)


class Local:
    """The database on this machine. Opened on first use (and then its dead jobs marked interrupted);
    ``read_only``: a SQLite file that does not exist is a usage error, not a new empty database."""

    def __init__(self, database_url: str | None, *, read_only: bool):
        self.database_url = database_url
        self.read_only = read_only
        self._store = None

    def __enter__(self) -> Local:
        return self

    def __exit__(self, *exc) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def store(self):
        if self._store is None:
            try:
                self._store, recovered = service.open_store(self.database_url, create=not self.read_only)
            except service.NoDatabase as e:
                raise UsageError(f"no database at {e.path} ({e.url}); create one by training a job "
                                 "(`gradbook train --preset seed`) or with `gradbook db upgrade`") from None
            if recovered:
                ids = ", ".join(map(str, recovered))
                err.print(f"marked interrupted (their process is gone): jobs {ids}; "
                          "continue one with `gradbook resume JOB`")
        return self._store

    def _stored(self, job_id: int) -> dict:
        job = self.store.get_job(job_id)
        if job is None:
            raise UsageError(f"no job {job_id} in this database")
        return job

    # -- reading

    def jobs(self, status: str | None, limit: int, offset: int, include_spec: bool) -> list[dict]:
        rows = self.store.list_jobs(status=status, limit=limit, offset=offset, include_spec=include_spec)
        return [service.job_view(j) for j in rows]

    def job(self, job_id: int) -> dict:
        return service.job_view(self._stored(job_id))

    def history(self, job_id: int, start, end, max_points: int) -> list[dict]:
        self._stored(job_id)
        return self.store.history(job_id, start=start, end=end, max_points=max_points)

    def gradients(self, job_id: int, param: str, start, end, max_points: int) -> list[dict]:
        return self.store.gradients(job_id, param, start=start, end=end, max_points=max_points)

    def graph(self, job_id: int, step: int):
        return service.replay.job_graph(self.store, job_id, step)

    def verify(self, job_id: int, step: int, eps: float) -> dict:
        return service.replay.verify_step(self.store, job_id, step, eps=eps).to_dict()

    def optimizers(self) -> dict:
        return service.optimizer_catalog()  # the registry of this installation: no database needed

    def datasets(self, limit: int, offset: int) -> list[dict]:
        return self.store.list_datasets(limit=limit, offset=offset)

    def export(self, job_id: int, fmt: str, start, end) -> Iterator[bytes]:
        """The same bytes the server's export sends."""
        self._stored(job_id)
        rows = self.store.export_rows(job_id, start=start, end=end)
        if fmt == "csv":
            return service.encode.csv_chunks(self.store.export_columns(job_id), rows)
        return service.encode.ndjson_chunks(rows)

    # -- changing

    def cancel(self, job_id: int) -> dict:
        job = service.cancel_job(self.store, self._stored(job_id), reason="cancelled from the command line")
        return service.job_view(job)

    def delete(self, job_id: int) -> None:
        job = self.store.get_job(job_id)  # the store opened first: an unusable database fails the command
        if job is None:
            raise NotDeleted(f"no job {job_id} in this database")
        try:
            service.check_allowed("delete", job)
            self.store.delete_job(job_id)
        except service.StoreError as e:  # refused, or gone or started meanwhile
            raise NotDeleted(str(e)) from None

    def return_space(self) -> int | None:
        """Give the space deleted jobs freed back to the file system: the bytes returned, or None
        (and a note) when this database keeps it until `gradbook db vacuum`."""
        returned = self.store.reclaim_space()
        if returned is None:
            err.print("the space they took stays in the database until `gradbook db vacuum` (after "
                      "which deleting returns it)")
        return returned

    def upload_dataset(self, name: str, content: bytes, targets: int) -> dict:
        return service.upload_dataset(self.store, name, content, targets)

    def train(self, doc, source: str, quiet: bool) -> tuple[dict, str]:
        """Check and plan the spec (a bad one creates no job, nor a database), then run the job here."""
        try:
            # an uploaded dataset is read from the database, which is opened only then
            spec, plan = service.plan_spec(doc, resolve_dataset=lambda key: service.dataset_resolver(
                self.store)(key))
        except service.SpecError as e:
            lines = "".join(f"\n  {service.format_loc(x['loc'])}: {x['msg']}" if x["loc"]
                            else f"\n  {x['msg']}" for x in e.errors)
            raise UsageError(f"{source}: invalid job spec{lines}") from None
        job_id = self.store.create_job(spec["name"], spec, total_steps=plan.total_steps)
        return self._run(self._stored(job_id), resume=False, quiet=quiet)

    def resume(self, job_id: int, quiet: bool) -> tuple[dict, str]:
        job = self._stored(job_id)
        service.check_allowed("resume", job)
        return self._run(job, resume=True, quiet=quiet)

    def _run(self, job: dict, *, resume: bool, quiet: bool) -> tuple[dict, str]:
        """Train in this process with a progress bar; SIGINT or SIGTERM stops at a step boundary and
        exits 130 with the job interrupted (resumable)."""
        job_id = job["id"]
        started = time.monotonic()
        try:
            with stop_at_step_boundary() as should_stop, \
                    ProgressBar(f"job {job_id} {job['name']}", job["total_steps"], not quiet) as bar:
                if resume:
                    bar.restoring()

                def report(p) -> None:
                    if isinstance(p, service.Restoring):
                        bar.restoring(p.steps_done)
                    else:
                        bar.step(p.steps_done, p.loss)

                service.run_job(self.store, job_id, resume=resume, should_stop=should_stop, progress=report,
                                resolve_dataset=service.dataset_resolver(self.store))
        except KeyboardInterrupt:
            done = self._stored(job_id)["steps_done"]
            err.print(f"job {job_id} interrupted at step {done:,}; resume with gradbook resume {job_id}")
            raise typer.Exit(130) from None
        seconds = time.monotonic() - started
        job = self._stored(job_id)
        first = self.store.step(job_id, 0) if job["steps_done"] else None
        text = summary(job, seconds=seconds, first_loss=None if first is None else first["loss"])
        return service.job_view(job), text


class Remote:
    """A gradbook server, over its REST API."""

    def __init__(self, url: str, token: str | None):
        self.client = Client(url, token)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        pass

    # -- reading

    def jobs(self, status: str | None, limit: int, offset: int, include_spec: bool) -> list[dict]:
        return self.client.jobs(status=status, limit=limit, offset=offset, include_spec=include_spec)["jobs"]

    def job(self, job_id: int) -> dict:
        return self.client.job(job_id)

    def history(self, job_id: int, start, end, max_points: int) -> list[dict]:
        return self.client.history(job_id, start=start, end=end, max_points=max_points)["points"]

    def gradients(self, job_id: int, param: str, start, end, max_points: int) -> list[dict]:
        return self.client.gradients(job_id, param, start=start, end=end, max_points=max_points)["points"]

    def graph(self, job_id: int, step: int):
        return service.graph_from_dict(self.client.graph(job_id, step))

    def verify(self, job_id: int, step: int, eps: float) -> dict:
        return self.client.verify(job_id, step, eps)

    def export(self, job_id: int, fmt: str, start, end) -> Iterator[bytes]:
        return self.client.export(job_id, fmt=fmt, start=start, end=end)

    def optimizers(self) -> dict:
        return self.client.optimizers()

    def datasets(self, limit: int, offset: int) -> list[dict]:
        return self.client.datasets(limit=limit, offset=offset)["datasets"]

    # -- changing

    def cancel(self, job_id: int) -> dict:
        return self.client.cancel(job_id)

    def delete(self, job_id: int) -> None:
        try:
            self.client.delete(job_id)
        except RemoteError as e:
            if e.status in (404, 409):  # unknown, or refused in its state
                raise NotDeleted(str(e)) from None
            raise

    def return_space(self) -> int | None:
        return None  # the server's database: its space is the server's business

    def upload_dataset(self, name: str, content: bytes, targets: int) -> dict:
        return self.client.upload_dataset(name, content, targets)

    def submit(self, doc) -> dict:
        return self.client.submit(self._with_csv_uploaded(doc))

    def _with_csv_uploaded(self, doc):
        """A server cannot read a CSV path of this machine: a spec whose data is ``{"csv": PATH}``
        is sent with the file uploaded and its data ``{"dataset_id": ID}``."""
        data = doc.get("data") if isinstance(doc, dict) else None
        if not (isinstance(data, dict) and isinstance(data.get("csv"), str)):
            return doc  # anything else is the server's to check
        rest = {key: value for key, value in data.items() if key not in ("csv", "targets")}
        path = Path(data["csv"])
        dataset = self.upload_dataset(path.name, read_file(path, "data.csv"), data.get("targets", 1))
        err.print(f"uploaded {path} as dataset {dataset['id']}")
        return {**doc, "data": {"dataset_id": dataset["id"], **rest}}

    def train(self, doc, source: str, quiet: bool) -> tuple[dict, str]:
        """Submit the job and follow it to its end (the server checks the spec)."""
        job = self.submit(doc)
        err.print(f"job {job['id']} ({job['name']}) submitted to {self.client.base}")
        job = self._follow(job, quiet)
        return job, summary(job)

    def resume(self, job_id: int, quiet: bool) -> tuple[dict, str]:
        job = self._follow(self.client.resume(job_id), quiet)
        return job, summary(job)

    def _follow(self, job: dict, quiet: bool) -> dict:
        """Follow the job's events with a progress bar until it ends; the job as it ended."""
        final = job
        with ProgressBar(f"job {job['id']} {job['name']}", job.get("total_steps"), not quiet,
                         status=job["status"]) as bar:
            for event in self.client.events(job["id"]):
                data = event.data
                if event.event == "step":
                    bar.step(data["step"] + 1, data.get("loss"))
                elif event.event in ("status", "end"):
                    bar.state(data.get("status") or data.get("to_status"), data.get("total_steps"),
                              data.get("steps_done"))
                if event.event == "end":
                    final = data
        if final.get("status") == "deleted":
            raise UsageError(f"job {job['id']} was deleted while it was watched")
        return self.client.job(job["id"])
