"""Only the server's own pages (and origins the operator trusts) may change anything through a browser.

A web page can make the user's browser send a POST or DELETE to any address, a server on 127.0.0.1
included, and CORS only hides the answer: the job is submitted or cancelled all the same. Browsers
mark such requests with an ``Origin`` header and, lately, ``Sec-Fetch-Site``; this middleware refuses
a state-changing request whose marks say it came from another site. Clients that are not browsers
(curl, the CLI) send neither header and pass; the bearer token, when set, is still checked after this.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import send_error

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def normalize_origin(origin: str) -> str:
    """``HTTP://Example.com:3000/`` -> ``http://example.com:3000``: origins compare case-insensitively."""
    return origin.strip().rstrip("/").lower()


def is_own_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` (as the browser sent it) names the host and port this request was sent to.
    The scheme is not compared: behind a TLS proxy the page is https while the server sees http."""
    return bool(host) and urlsplit(normalize_origin(origin)).netloc == host.strip().lower()


class SameOriginWrites:
    """ASGI middleware: a POST, PUT, PATCH or DELETE that a browser marks as cross-site (its
    ``Origin`` is not this server's, or ``Sec-Fetch-Site: cross-site``) gets 403 before the app sees
    it. ``trusted_origins`` are let through as if they were the server's own."""

    def __init__(self, app: ASGIApp, trusted_origins: Iterable[str] = ()):
        self.app = app
        self.trusted = frozenset(normalize_origin(o) for o in trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await send_error(send, 403, refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> str | None:
        """Why a state-changing request with these headers is refused, or None to let it through."""
        origin = headers.get("origin")
        if origin is not None and normalize_origin(origin) in self.trusted:
            return None
        if headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
            return ("refused: the browser marks this request as sent by another site (Sec-Fetch-Site: "
                    "cross-site); only the server's own pages may change anything")
        if origin is not None and not is_own_origin(origin, headers.get("host")):
            return (f"refused: a request from the page origin {origin[:200]!r} may not change anything on "
                    "this server; only its own pages may")
        return None
