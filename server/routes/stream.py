"""``WS /v1/stream``: the streaming protocol of ``server.protocol`` over one engine session.

Each connection has a receive loop (this task) that validates messages and pushes audio into
its session without waiting for the model, and a sender task that forwards the session's
events (detections, scores, end) as the engine's worker produces them. Every fatal error is an
``error`` message followed by the close code of its kind; the session is freed whatever
happens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

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
SLOW_CONSUMER_GRACE_S = 1.0  # to send slow_consumer and the close before dropping the TCP link


ABORT_EXTENSION = "lmukws.abort"  # ASGI scope extension: drop the TCP connection at once
_CLOSE = object()  # the outbox's last entry: send the close frame


class StreamConnection:
    """One websocket and its session.

    Everything sent goes through a bounded outbox drained by one writer task, so a client
    that stops reading never blocks the receive loop or the engine: ``scores`` are dropped
    (and counted) while ``max_outbound_messages`` wait and the writer is stuck in a send (the
    transport's buffers are full: the client lags), detections, errors and ``end`` never;
    a message unsent ``slow_consumer_timeout_s`` after it was queued closes the connection
    (``error`` slow_consumer, 1008; the TCP connection is dropped when even that cannot be
    sent) and frees the session at once.
    """

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
        self._events = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._outbox: collections.deque[tuple[Any, float]] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # the writer waits inside a send: a send to a writable transport completes without
        # yielding, so the pump sees this only while the client lags
        self._in_send = False
        self._finished = asyncio.Event()  # the transport is closed or gone
        extensions = websocket.scope.get("extensions") or {}
        self._abort: Callable[[], None] | None = extensions.get(ABORT_EXTENSION)
        self._close_code: int = CloseCode.NORMAL

    @property
    def started(self) -> bool:
        """A session is open (the connection counts against ``max_sessions``)."""
        return self.session is not None

    # -- sending ----------------------------------------------------------------------------

    async def send(self, message: BaseModel, *, droppable: bool = False) -> bool:
        """Queue one message for the client; False if the connection is closing, or if
        ``droppable`` and the outbox is full (the message is dropped and counted)."""
        if self.closed:
            return False
        if droppable and self._in_send and len(self._outbox) >= self.settings.max_outbound_messages:
            self.metrics.scores_dropped_total.inc()
            return False
        self._queue(protocol.dump_message(message))
        return True

    def _queue(self, item: Any) -> None:
        self._outbox.append((item, self._loop.time()))
        self._outbox_ready.set()
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_loop())

    async def _write_loop(self) -> None:
        """Send the outbox in order; each message must leave within the slow-consumer
        deadline counted from when it was queued."""
        deadline = self.settings.slow_consumer_timeout_s
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            item, queued_at = self._outbox[0]
            timeout = max(queued_at + deadline - self._loop.time(), 0.0)
            self._in_send = True
            try:  # in this task (no wait_for task): a writable transport never suspends it
                async with asyncio.timeout(timeout):
                    if item is _CLOSE:
                        await self.ws.close(self._close_code)
                    else:
                        await self.ws.send_text(item)
            except (asyncio.TimeoutError, TimeoutError):
                await self._slow_consumer(deadline)
                return
            except Exception:  # the client went away mid-send
                self._transport_gone()
                return
            finally:
                self._in_send = False
            self._outbox.popleft()
            if item is _CLOSE:
                self._finished.set()
                return

    async def _slow_consumer(self, deadline: float) -> None:
        """The client took nothing for ``deadline`` seconds: free the session now, try to say
        why (briefly), then drop the connection."""
        self.metrics.errors_total.inc(code=ErrorCode.SLOW_CONSUMER.value)
        log.info(
            "session %s: slow consumer: %d messages unsent for %g s; closing",
            self.session.id if self.session else "-",
            len(self._outbox),
            deadline,
        )
        self.closed = True
        self._outbox.clear()
        self.release()
        message = protocol.ErrorMessage(
            code=ErrorCode.SLOW_CONSUMER,
            message=f"the client read nothing for {deadline:g} s; closing",
        )
        said = False
        try:
            async with asyncio.timeout(SLOW_CONSUMER_GRACE_S):
                await self.ws.send_text(protocol.dump_message(message))
                await self.ws.close(CloseCode.POLICY_VIOLATION)
            said = True
        except Exception:  # buffers still full, or gone
            pass
        finally:  # also when the route is cancelled meanwhile (the client went on sending)
            if not said and self._abort is not None:
                self._abort()  # drop the TCP connection
            self._finished.set()

    def _transport_gone(self) -> None:
        self.closed = True
        self._outbox.clear()
        self.release()
        self._finished.set()

    def release(self) -> None:
        """Free the session and its slot at once (idempotent); the transport may linger."""
        self.service.connections.discard(self)
        if self.session is not None:
            self.session.close()

    async def close(self, code: int) -> None:
        """Send what is queued, then the close frame with ``code``; the session is freed at
        once, and this returns when the close is sent or the slow-consumer deadline passed."""
        if self.closed:
            return
        self.closed = True
        self.release()
        self._close_code = code
        self._queue(_CLOSE)
        await self._finished.wait()

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
        if service.session_count >= self.settings.max_sessions:
            await self.fail(
                ErrorCode.SERVER_FULL,
                f"server full: {self.settings.max_sessions} sessions; try again later",
            )
            return
        if service.pending_count >= self.settings.max_pending_connections:
            await self.fail(
                ErrorCode.SERVER_FULL,
                f"server full: {self.settings.max_pending_connections} connections are "
                "waiting to start; try again later",
            )
            return
        service.connections.add(self)
        receiver = asyncio.ensure_future(self._receive_loop())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({receiver, finished}, return_when=asyncio.FIRST_COMPLETED)
            if not receiver.done():  # the transport went away while the receiver waited
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver
            else:
                receiver.result()
            if self._sender is not None and self.stopping and not self.closed:
                # wait for ``end`` (the drain bounds this with its own deadline)
                await asyncio.wait({self._sender}, timeout=self.settings.shutdown_deadline_s + 5)
        except Exception as error:  # a bug must not take the server down
            log.exception("session failed")
            await self.fail(ErrorCode.INTERNAL, f"internal error: {type(error).__name__}")
        finally:
            finished.cancel()
            self.release()
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()
            if not self.closed:
                await self.close(CloseCode.NORMAL)
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()

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
        handshake = self.settings.handshake_timeout_s
        limit = self.settings.max_message_bytes
        while not self.closed and not self.stopping:
            timeout = idle if self.session is not None else handshake
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=timeout)
            except (asyncio.TimeoutError, TimeoutError):
                if self.session is None:
                    text = f"no 'start' within {handshake:g} s of connecting"
                else:
                    text = f"no message for {idle:g} s"
                await self.fail(ErrorCode.IDLE_TIMEOUT, text)
                return
            received_at = time.perf_counter()
            if message["type"] == "websocket.disconnect":
                self._transport_gone()
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
        message = protocol.parse_client_message(text, self.settings.max_json_depth)
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
        if self.service.session_count >= self.settings.max_sessions:
            raise ProtocolError(
                ErrorCode.SERVER_FULL,
                f"server full: {self.settings.max_sessions} sessions; try again later",
            )
        try:
            session = self.service.sessions.create_session(
                message.sample_rate,
                keywords=message.keywords,
                thresholds=message.thresholds,
                scores_every_ms=every,
                sensitivity=message.sensitivity,
                wake_word=message.wake_word,
                command_window_ms=message.command_window_ms,
                command_sensitivity=message.command_sensitivity,
                speech_gate_ms=message.speech_gate_ms,
            )
        except EngineFullError as error:
            raise ProtocolError(ErrorCode.SERVER_FULL, str(error)) from None
        except EngineClosedError as error:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, str(error)) from None
        except ValueError as error:
            raise ProtocolError(ErrorCode.UNKNOWN_KEYWORD, str(error)) from None
        self.session = session
        self.encoding = message.encoding
        ready = protocol.ready_message(
            engine.served, session, message.sample_rate, self.settings.replica
        )
        await self.send(ready)
        session.notify = self._notify
        self._sender = asyncio.ensure_future(self._send_loop())

    async def _on_audio(self, data: bytes, received_at: float) -> None:
        session = self.session
        if session is None:
            raise ProtocolError(
                ErrorCode.NOT_STARTED, "audio before 'start'; send 'start' with the format first"
            )
        samples = protocol.decode_pcm(data, self.encoding, self.settings.max_sample_magnitude)
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
                    scores = protocol.ScoresMessage(audio_ms=event.audio_ms, top=event.top)
                    await self.send(scores, droppable=True)
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
