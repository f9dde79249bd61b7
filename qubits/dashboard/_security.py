"""Who may talk to the dashboard: a host check, a token off loopback, and actions that a foreign page
cannot forge.

- Bound to 127.0.0.1, ::1 or localhost (the default), only this machine can connect; the Host header
  must then name a loopback address, so a foreign web page cannot reach the dashboard through DNS
  rebinding.
- Bound to anything else (0.0.0.0, a LAN address, even 127.0.0.2), every request, the event stream
  included, needs the token: ``Authorization: Bearer TOKEN``, or the cookie set by a first visit to
  ``/?token=TOKEN`` (HttpOnly, SameSite=Strict; the visit is redirected to drop the token from the URL).
- Actions (POST) need the header ``X-Qubits-Action``, which a cross-site form cannot send and a
  cross-site script cannot send without a CORS preflight that the dashboard never grants, and an
  ``Origin`` (when the browser sends one) equal to the page's own.
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_BINDS = frozenset({"127.0.0.1", "::1", "localhost"})
"""Binds that need no token: only this machine reaches them."""
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
COOKIE = "qubits_dashboard"
ACTION_HEADER = "x-qubits-action"
CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
"""The page loads only its own script and style; the timeline (an iframe of its own HTML) needs inline style."""


def needs_token(bind: str) -> bool:
    """Whether a dashboard bound to ``bind`` must check a token on every request."""
    return bind not in LOOPBACK_BINDS


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """ASGI middleware applying the rules above to every HTTP request."""

    def __init__(self, app: ASGIApp, *, bind: str, token: str | None) -> None:
        self.app = app
        self.token = token
        self.loopback_only = bind in LOOPBACK_BINDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.loopback_only and _hostname(host) not in _LOOPBACK_HOSTS:
            await _refuse(send, 403, "this dashboard answers only on its loopback address")
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self.token is not None:
            given = _bearer(headers.get("authorization", "")) or _cookie(headers.get("cookie", ""))
            from_query = (query.get("token") or [""])[0]
            if from_query and scope["method"] == "GET" and _same(from_query, self.token):
                await _set_cookie_and_redirect(send, scope, self.token)
                return
            if not given or not _same(given, self.token):
                await _refuse(send, 401, "a token is needed: open the URL `qubits dashboard` printed (…/?token=…)")
                return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if ACTION_HEADER not in headers or (origin is not None and urllib.parse.urlsplit(origin).netloc != host):
                await _refuse(send, 403, "actions come from the dashboard's own page only")
                return
        await self.app(scope, receive, _with_headers(send))


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _cookie(value: str) -> str:
    for part in value.split(";"):
        name, _, token = part.strip().partition("=")
        if name == COOKIE:
            return token
    return ""


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP.encode()),
                                  (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        await send(message)

    return wrapped


async def _refuse(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _set_cookie_and_redirect(send: Send, scope: Scope, token: str) -> None:
    rest = [(k, v) for k, v in urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
    target = urllib.parse.quote(scope.get("path", "/")) + (("?" + urllib.parse.urlencode(rest)) if rest else "")
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", target.encode()), (b"set-cookie", cookie.encode()), (b"content-length", b"0"),
                            (b"referrer-policy", b"no-referrer")]})
    await send({"type": "http.response.body", "body": b""})
