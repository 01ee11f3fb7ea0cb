"""Strict request bodies: the declared media type, JSON without NaN/Infinity, and a size limit enforced
before parsing."""

from __future__ import annotations

import json

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.encode import loads
from service.api.errors import field_error, send_error

JSON_TYPE = "application/json"


def require_media_type(request: Request, accepted: tuple[str, ...]) -> None:
    """A 415 unless the body is declared as one of ``accepted``. For JSON routes this also refuses
    the bodies any web page may send to any server without a CORS preflight (forms, text/plain, no
    type at all), one of the ways another site could reach a server on the user's machine."""
    declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if declared not in accepted:
        raise field_error(415, ["header", "content-type"],
                          f"expected Content-Type: {' or '.join(accepted)}, got {declared or 'none'}",
                          "unsupported_media_type")


async def read_json(request: Request):
    """The request's body as strict JSON, declared as application/json (else 415)."""
    require_media_type(request, (JSON_TYPE,))
    return parse_json(await request.body())


def parse_json(raw: bytes):
    """The JSON document in ``raw``; a 422 naming the body (and where in it) when it is not JSON,
    or uses NaN/Infinity, which Python's parser would otherwise accept."""
    if not raw.strip():
        raise field_error(422, ["body"], "a JSON body is required", "missing")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise field_error(422, ["body"], f"not UTF-8 text (byte {e.start})", "json_invalid") from None
    try:
        return loads(text)
    except json.JSONDecodeError as e:
        raise field_error(422, ["body"], f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                          "json_invalid") from None
    except ValueError as e:  # NaN/Infinity, or an integer too long for Python's parser
        raise field_error(422, ["body"], str(e), "json_invalid") from None
    except RecursionError:
        raise field_error(422, ["body"], "JSON nested too deeply", "json_invalid") from None


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app reads it.

    A declared Content-Length is checked up front; a chunked body is read up to the limit and
    handed on, so the app never holds more than ``max_bytes`` of one request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await self._reply(send, 400, "Content-Length: not an integer")
                    return
        if length is not None and length > self.max_bytes:
            await self._reply(send, 413, self._message(length))
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read the body here, up to the limit, then replay it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reply(send, 413, self._message(None))
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, receive), send)

    def _message(self, length) -> str:
        got = f" ({length:,} bytes)" if length is not None else ""
        return (f"request body too large{got}: the limit is {self.max_bytes:,} bytes "
                "(GRADBOOK_MAX_BODY_BYTES)")

    @staticmethod
    async def _reply(send: Send, status: int, message: str) -> None:
        kind = "too_large" if status == 413 else "value_error"
        await send_error(send, status, [{"loc": ["body"], "msg": message, "type": kind}])

def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
