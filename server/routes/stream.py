"""``WS /v1/stream``: the streaming protocol of ``server.protocol`` over one engine session.

Each connection has a receive loop (this task) that validates messages and pushes audio into
its session without waiting for the model, and a sender task that forwards the session's
events (detections, scores, end) as the engine's worker produces them. Every fatal error is an
``error`` message followed by the close code of its kind; the session is freed whatever
happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel

from server import protocol
from server.deps import ServiceDep
from server.protocol import CloseCode, ErrorCode, ProtocolError
from server.service import Service
from streaming.errors import EngineClosedError, EngineFullError, SessionClosedError
from streaming.events import Detection, End, Failure, Scores
from streaming.session import SessionHandle

log = logging.getLogger("lmukws.stream")
router = APIRouter(tags=["streaming"])

MAX_BACKLOG_S = 10.0  # queued audio per session before the server stops reading the socket


class StreamConnection:
    """One websocket and its session."""

    def __init__(self, websocket: WebSocket, service: Service) -> None:
        self.ws = websocket
        self.service = service
        self.settings = service.settings
        self.metrics = service.metrics
        self.session: SessionHandle | None = None
        self.encoding = "pcm_s16le"
        self.closed = False
        self.stopping = False
        self.going_away = False
        self._send_lock = asyncio.Lock()
        self._events = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    # -- sending ----------------------------------------------------------------------------

    async def send(self, message: BaseModel) -> bool:
        """Send one message; False if the connection is gone."""
        if self.closed:
            return False
        async with self._send_lock:
            try:
                await self.ws.send_text(protocol.dump_message(message))
                return True
            except Exception:  # client went away mid-send
                self.closed = True
                return False

    async def close(self, code: int) -> None:
        if self.closed:
            return
        self.closed = True
        async with self._send_lock:
            with contextlib.suppress(Exception):
                await self.ws.close(code)

    async def fail(self, code: ErrorCode, message: str) -> None:
        """Send an ``error`` and close with the code of its kind."""
        self.metrics.errors_total.inc(code=code.value)
        log.info("session %s: %s: %s", self.session.id if self.session else "-", code, message)
        await self.send(protocol.ErrorMessage(code=code, message=message))
        await self.close(protocol.ERROR_CLOSE_CODES[code])

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        service = self.service
        if service.shutting_down or not service.ready:
            await self.fail(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
            return
        if len(service.connections) >= self.settings.max_sessions:
            await self.fail(
                ErrorCode.SERVER_FULL,
                f"server full: {self.settings.max_sessions} sessions; try again later",
            )
            return
        service.connections.add(self)
        try:
            await self._receive_loop()
            if self._sender is not None and self.stopping and not self.closed:
                # wait for ``end`` (the drain bounds this with its own deadline)
                await asyncio.wait({self._sender}, timeout=self.settings.shutdown_deadline_s + 5)
        except Exception as error:  # a bug must not take the server down
            log.exception("session failed")
            await self.fail(ErrorCode.INTERNAL, f"internal error: {type(error).__name__}")
        finally:
            service.connections.discard(self)
            if self.session is not None:
                self.session.close()
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()
            if not self.closed:
                await self.close(CloseCode.NORMAL)

    async def go_away(self) -> None:
        """Server shutdown: flush what was received, send ``end``, close with 1001."""
        self.going_away = True
        if self.closed:
            return
        if self.session is None:
            await self.fail(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
            return
        if not self.stopping:
            self.stopping = True
            with contextlib.suppress(SessionClosedError):
                self.session.push_stop()
        if self._sender is not None:
            await asyncio.shield(self._sender)

    # -- receiving --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        idle = self.settings.idle_timeout_s
        limit = self.settings.max_message_bytes
        while not self.closed and not self.stopping:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=idle)
            except (asyncio.TimeoutError, TimeoutError):
                await self.fail(ErrorCode.IDLE_TIMEOUT, f"no message for {idle:g} s")
                return
            received_at = time.perf_counter()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                return
            text, data = message.get("text"), message.get("bytes")
            size = len(data) if data is not None else len((text or "").encode("utf-8"))
            if size > limit:
                await self.fail(
                    ErrorCode.MESSAGE_TOO_BIG, f"message of {size} bytes is over {limit} bytes"
                )
                return
            if self.stopping or self.closed:
                return
            try:
                if data is not None:
                    await self._on_audio(data, received_at)
                else:
                    await self._on_text(text or "", received_at)
            except ProtocolError as error:
                await self.fail(error.code, error.message)
                return

    async def _on_text(self, text: str, received_at: float) -> None:
        message = protocol.parse_client_message(text)
        if isinstance(message, protocol.StartMessage):
            await self._on_start(message)
            return
        if self.session is None:
            raise ProtocolError(
                ErrorCode.NOT_STARTED, f"{message.type!r} before 'start'; send 'start' first"
            )
        if isinstance(message, protocol.ResetMessage):
            self.session.push_reset()
        elif isinstance(message, protocol.StopMessage):
            self.stopping = True
            self.session.push_stop(received_at)

    async def _on_start(self, message: protocol.StartMessage) -> None:
        if self.session is not None:
            raise ProtocolError(ErrorCode.ALREADY_STARTED, "'start' was already received")
        every = message.scores_every_ms
        if "scores_every_ms" not in message.model_fields_set:
            every = self.settings.scores_every_ms
        engine = self.service.engine
        try:
            session = self.service.sessions.create_session(
                message.sample_rate,
                keywords=message.keywords,
                thresholds=message.thresholds,
                scores_every_ms=every,
                sensitivity=message.sensitivity,
                wake_word=message.wake_word,
                command_window_ms=message.command_window_ms,
            )
        except EngineFullError as error:
            raise ProtocolError(ErrorCode.SERVER_FULL, str(error)) from None
        except EngineClosedError as error:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, str(error)) from None
        except ValueError as error:
            raise ProtocolError(ErrorCode.UNKNOWN_KEYWORD, str(error)) from None
        self.session = session
        self.encoding = message.encoding
        ready = protocol.ready_message(engine.served, session, message.sample_rate)
        await self.send(ready)
        session.notify = self._notify
        self._sender = asyncio.ensure_future(self._send_loop())

    async def _on_audio(self, data: bytes, received_at: float) -> None:
        session = self.session
        if session is None:
            raise ProtocolError(
                ErrorCode.NOT_STARTED, "audio before 'start'; send 'start' with the format first"
            )
        samples = protocol.decode_pcm(data, self.encoding)
        self.metrics.audio_seconds_total.inc(samples.size / session.sample_rate)
        session.push(samples, received_at)
        backlog = MAX_BACKLOG_S * protocol.TARGET_SAMPLE_RATE
        while session.queued_samples > backlog and not self.closed:
            await asyncio.sleep(0.005)  # let the worker catch up (TCP pushes back on the client)

    # -- events -----------------------------------------------------------------------------

    def _notify(self) -> None:
        """Called from the engine's worker thread."""
        self._loop.call_soon_threadsafe(self._events.set)

    async def _send_loop(self) -> None:
        session = self.session
        assert session is not None
        engine = self.service.engine
        algorithmic = engine.algorithmic_latency_ms
        while not self.closed:
            await self._events.wait()
            self._events.clear()
            for event in session.poll():
                if isinstance(event, Detection):
                    message = protocol.detection_message(event, algorithmic, time.perf_counter())
                    if await self.send(message):
                        self.metrics.detections_total.inc(keyword=event.keyword)
                        self.metrics.detection_seconds.observe(message.latency.server_ms / 1e3)
                elif isinstance(event, Scores):
                    await self.send(protocol.ScoresMessage(audio_ms=event.audio_ms, top=event.top))
                elif isinstance(event, End):
                    await self.send(protocol.end_message(event))
                    await self.close(CloseCode.GOING_AWAY if self.going_away else CloseCode.NORMAL)
                    return
                elif isinstance(event, Failure):
                    await self.fail(ErrorCode.INTERNAL, event.message)
                    return


@router.websocket(protocol.STREAM_PATH)
async def stream(websocket: WebSocket, service: ServiceDep) -> None:
    """Stream audio, receive detections; see ``server.protocol`` for the messages."""
    await StreamConnection(websocket, service).run()
