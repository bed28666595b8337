"""Run the app under uvicorn with a graceful SIGTERM: drain sessions, then exit.

On the first SIGTERM or SIGINT the service stops accepting sessions (``/readyz`` turns 503, new
websockets get ``error`` shutting_down + 1001), flushes every open session, sends ``end`` and
closes it with 1001, then uvicorn stops within ``shutdown_deadline_s`` (plus a second for the
remaining HTTP connections). A second SIGINT exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

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
    )
    server = GracefulServer(config, settings.shutdown_deadline_s)
    server.run()
    return 0 if server.started else 1
