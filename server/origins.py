"""Which browser pages may use the service: the server's own origin, ``allowed_origins``, and
clients that send no ``Origin`` header (the CLI, curl, other servers).

Browsers send ``Origin`` on websocket upgrades and on cross-origin (and non-GET same-origin)
requests; a page on another site could otherwise stream through a user's local server or post
files to it. ``OriginMiddleware`` refuses a foreign origin before the route runs: a websocket
upgrade with HTTP 403 (the ASGI close before accept), a request with 403 ``{"detail": ...}``.
An allowed cross-origin request gets CORS headers (``Access-Control-Allow-Origin`` with its
origin, never ``*``), preflights included; nothing else gets them.

"Own origin" is the origin whose host (and port) is the request's ``Host``, or
``X-Forwarded-Host`` when a reverse proxy sets it, so the browser demo served at ``/`` keeps
working behind a proxy. A page cannot forge either header: browsers set ``Host`` themselves and
a custom header on a cross-origin request needs a preflight, which a foreign origin fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OriginMiddleware", "origin_allowed"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
PREFLIGHT_MAX_AGE_S = 600


def _own_hosts(headers: Headers) -> set[str]:
    hosts = set()
    for name in ("host", "x-forwarded-host"):
        value = headers.get(name)
        if value:
            hosts.add(value.split(",")[0].strip().lower())
    return hosts


def _origin_host(origin: str) -> str | None:
    """``http://Example.com:80`` -> ``example.com``; None when it is not a URL origin."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return host


def _strip_default_port(host: str) -> str:
    for port in ("80", "443"):
        if host.endswith(f":{port}"):
            return host[: -len(port) - 1]
    return host


def origin_allowed(origin: str | None, headers: Headers, allowed: Sequence[str]) -> bool:
    """Whether a request with this ``Origin`` (None: no header) may use the service."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    host = _origin_host(origin)  # "null" (sandboxed pages, files) and junk: None
    if host is None:
        return False
    own = {_strip_default_port(h) for h in _own_hosts(headers)}
    return _strip_default_port(host) in own


class OriginMiddleware:
    """Refuse foreign origins (websocket: 403 before the upgrade; HTTP: 403 JSON) and add CORS
    headers for allowed cross-origin requests; ``on_refused`` counts refusals."""

    def __init__(
        self,
        app: ASGIApp,
        allowed: Sequence[str] = (),
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.allowed = tuple(a.rstrip("/") for a in allowed)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin_allowed(origin, headers, self.allowed):
            if origin is None or scope["type"] == "websocket":
                await self.app(scope, receive, send)
            else:
                await self._cors(scope, receive, send, origin, headers)
            return
        if self.on_refused is not None:
            self.on_refused()
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
            return
        response = JSONResponse(
            {"detail": f"origin {origin!r} is not allowed; see the allowed_origins setting"},
            status_code=403,
        )
        await response(scope, receive, send)

    async def _cors(
        self, scope: Scope, receive: Receive, send: Send, origin: str, headers: Headers
    ) -> None:
        cors = {"access-control-allow-origin": origin, "vary": "Origin"}
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            requested = headers.get("access-control-request-headers")
            preflight = {
                **cors,
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-max-age": str(PREFLIGHT_MAX_AGE_S),
            }
            if requested:
                preflight["access-control-allow-headers"] = requested
            await Response(status_code=204, headers=preflight)(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"access-control-allow-origin"
                ]
                response_headers += [(k.encode(), v.encode()) for k, v in cors.items()]
                message = {**message, "headers": response_headers}
            await send(message)

        await self.app(scope, receive, with_cors)
