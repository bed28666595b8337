"""Run the app under uvicorn with a graceful SIGTERM: drain sessions, then exit.

On the first SIGTERM or SIGINT the service stops accepting sessions (``/readyz`` turns 503, new
websockets get ``error`` shutting_down + 1001), flushes every open session, sends ``end`` and
closes it with 1001, then uvicorn stops within ``shutdown_deadline_s`` (plus a second for the
remaining HTTP connections). A second SIGINT exits at once. uvicorn runs this module's
protocols: HTTP/1.1 with read deadlines for half-sent requests, and websockets that can be
aborted and close non-UTF-8 text with 1007.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from server import protocol
from server.app import create_app
from server.routes.stream import ABORT_EXTENSION
from server.settings import Settings

log = logging.getLogger("lmukws.server")


class GracefulServer(uvicorn.Server):
    """uvicorn.Server whose exit signals drain the streaming sessions first."""

    def __init__(self, config: uvicorn.Config, drain_deadline_s: float) -> None:
        super().__init__(config)
        self.drain_deadline_s = drain_deadline_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain_task: asyncio.Future[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None:
            if sig == signal.SIGINT and self._draining:
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        app = self.config.loaded_app
        service = getattr(getattr(app, "state", None), "service", None)
        if service is None:  # loaded_app may be wrapped by middleware; find our app
            service = _find_service(app)
        try:
            if service is not None:
                await asyncio.wait_for(service.drain(), self.drain_deadline_s + 1.0)
        except Exception:
            log.exception("drain failed")
        finally:
            self.should_exit = True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol with two changes: the scope carries an ASGI extension
    ``lmukws.abort`` (drop the TCP connection at once, for a client that stopped reading: no
    close frame gets through its full buffers), and a text frame that is not UTF-8 closes with
    1007 and one log line, not an ERROR traceback."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = self.transport.abort

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("%s: text message is not UTF-8; closing with 1007", self.client)
                self.conn.send_close(1007, "text message is not UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()


#: ``lmukws_errors_total`` code of a request whose headers or body stopped arriving in time
REQUEST_TIMEOUT = "request_timeout"


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with read deadlines for half-sent requests;
    uvicorn itself only times out a kept-alive connection between requests.

    - Headers: a connection must deliver its first request's complete headers within
      ``header_timeout_s`` of opening, and a kept-alive connection each next request's within
      ``header_timeout_s`` of its first byte (until then uvicorn's keep-alive timeout applies).
      Else: a raw 408 with ``connection: close`` and the connection is closed (a response to
      the previous request still being sent finishes first, then the connection closes).
    - Body: a request body that receives no bytes for ``body_timeout_s`` (inactivity, not a
      total) is abandoned: a raw 408 unless the app has started its response, the app's
      ``receive()`` returns ``http.disconnect``, the connection is closed. While the client
      may not send (uvicorn's flow control paused reading because the app is slow to take the
      body, or the client waits for ``100 Continue``) the clock waits.

    A websocket upgrade cancels both (the websocket's own deadlines apply from there). Each
    timeout is one INFO line and counts in ``lmukws_errors_total{code="request_timeout"}``.
    ``http_protocol`` makes the subclass with the settings' deadlines.
    """

    header_timeout_s: float = protocol.HTTP_HEADER_TIMEOUT_S
    body_timeout_s: float = protocol.HTTP_BODY_TIMEOUT_S

    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _body_pending = False  # headers are complete, the body is not
    _body_seen = 0.0  # loop time of the body's last bytes (or of its headers)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._body_pending and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timeout)

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a first request's clock runs from connection_made
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_timers()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._body_pending = True  # until on_message_complete, in this same feed if bodiless
            self._body_seen = self.loop.time()

    def on_body(self, body: bytes) -> None:
        self._body_seen = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_timers()
        super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        self._body_pending = False

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # the previous response finishes, then we close
            outcome = "closing after the response in progress"
        else:
            self._send_408(b"")
            self.transport.close()
            outcome = "408 and closed"
        self._timed_out(f"no complete request headers within {self.header_timeout_s:g} s", outcome)

    def _body_timeout(self) -> None:
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        cycle = self.cycle
        now = self.loop.time()
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._body_seen = now  # the client may not send: its clock waits
        idle = now - self._body_seen
        if idle < self.body_timeout_s:
            self._body_timer = self.loop.call_later(self.body_timeout_s - idle, self._body_timeout)
            return
        self._body_pending = False
        outcome = "closed"
        if not cycle.response_started:
            self._send_408(b'{"detail":"request body timed out"}')
            outcome = "408 and closed"
        cycle.disconnected = True
        cycle.message_event.set()  # the app's receive() returns http.disconnect
        self.transport.close()
        self._timed_out(f"no request body bytes for {self.body_timeout_s:g} s", outcome)

    def _send_408(self, body: bytes) -> None:
        content = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        if body:
            content.append(b"content-type: application/json\r\n")
        content += [b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]
        self.transport.write(b"".join(content))

    def _timed_out(self, reason: str, outcome: str) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "client"
        log.info("%s: %s; %s", client, reason, outcome)
        metrics = getattr(_find_service(self.app), "metrics", None)
        if metrics is not None:
            metrics.errors_total.inc(code=REQUEST_TIMEOUT)


def http_protocol(header_timeout_s: float, body_timeout_s: float) -> type[HttpProtocol]:
    """``HttpProtocol`` with these deadlines: uvicorn builds one protocol per connection from
    the class it is given (``uvicorn.Config(http=...)``) and its own ``Config``, so the
    settings travel as class attributes of a subclass."""
    attributes = {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s}
    return type("HttpProtocol", (HttpProtocol,), attributes)


def _find_service(app: object) -> object | None:
    for _ in range(10):
        state = getattr(app, "state", None)
        if state is not None and hasattr(state, "service"):
            return state.service
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=2 * settings.max_message_bytes + 4096,
        timeout_graceful_shutdown=1,
        lifespan="on",
        # PCM audio barely compresses; inflating every chunk costs the event loop and the
        # clients CPU for nothing (profile: benchmarks/README.md)
        ws_per_message_deflate=settings.ws_compression,
        ws=WebSocketProtocol,
        http=http_protocol(settings.http_header_timeout_s, settings.http_body_timeout_s),
    )
    server = GracefulServer(config, settings.shutdown_deadline_s)
    server.run()
    return 0 if server.started else 1
