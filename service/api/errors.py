"""JSON errors everywhere, and JSON that never carries NaN.

Every error body is ``{"detail": ...}`` as FastAPI writes it: a message string, or for bad fields a
list of ``{"loc": [...], "msg": ..., "type": ...}`` whose ``loc`` names the field (``["body",
"model", "layers", 0, "units"]``, ``["query", "start"]``). Store errors map to statuses here, so the
routes only raise; anything unexpected is a logged 500 with a plain message, never a traceback.

JSON has no NaN or Infinity: responses write non-finite floats as null (a diverged loss, a
gradient entry that overflowed); the history keeps them, and CSV export spells them out.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from service.api.encode import dumps
from service.jobs.spec import SpecError
from service.store.errors import IdempotencyConflict, JobNotFound, JobStateError, StoreError, UnknownParam

log = logging.getLogger("gradbook.api")


class ApiError(Exception):
    """An error response: ``status`` and a message or a list of field errors."""

    def __init__(self, status: int, detail, headers: dict | None = None):
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail))
        self.status = status
        self.detail = detail
        self.headers = headers


def field_error(status: int, loc: list, msg: str, kind: str = "value_error") -> ApiError:
    return ApiError(status, [{"loc": list(loc), "msg": msg, "type": kind}])


def not_found(what: str) -> ApiError:
    return ApiError(404, what)


async def send_error(send: Send, status: int, detail) -> None:
    """Answer with an error straight from ASGI middleware, before the app reads the request; the
    connection is closed, since the unread body may still be on it."""
    body = dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --- the response class -------------------------------------------------------------------------------


class SafeJSONResponse(JSONResponse):
    """The app's response class: JSON without NaN (written as null)."""

    def render(self, content) -> bytes:
        return dumps(content)


# --- handlers -----------------------------------------------------------------------------------------


def _clean_validation_errors(errors) -> list[dict]:
    out = []
    for e in errors:
        msg = e.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append({"loc": list(e.get("loc", ())), "msg": msg, "type": e.get("type", "value_error")})
    return out


def _json(status: int, detail, headers=None) -> SafeJSONResponse:
    return SafeJSONResponse({"detail": detail}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _json(exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        # The submitted values are left out: they may be huge, binary or the very NaN refused.
        return _json(422, _clean_validation_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _json(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(SpecError)
    async def _spec(request: Request, exc: SpecError):
        return _json(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": "invalid_spec"}
                           for e in exc.errors])

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError):
        if isinstance(exc, JobNotFound):
            return _json(404, str(exc))
        if isinstance(exc, UnknownParam):
            return _json(422, [{"loc": ["query", "param"], "msg": str(exc), "type": "unknown_param"}])
        if isinstance(exc, IdempotencyConflict | JobStateError):
            return _json(409, str(exc))
        return _json(400, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _json(500, "internal server error; the server log has the details")
