"""Async websocket client of ``WS /v1/stream``: one ``StreamSession`` per ``start``.

Open a session, send audio while events arrive, stop and read the end::

    async with connect("ws://127.0.0.1:8000", sample_rate=16000) as session:
        print(session.ready.labels)
        await session.send_audio(samples)           # float32 [S] in [-1, 1], or PCM bytes
        await session.stop()
        async for event in session:                 # DetectionMessage | ScoresMessage
            print(event)
        print(session.end)                          # EndMessage

or let ``stream_audio`` pace the audio and yield every server message in order (``ready``,
detections and scores, ``end``). Failures raise the exceptions of ``client.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from client.audio import chunks, fit_rate, read_audio, to_mono_float32
from client.errors import (
    BadServerReplyError,
    ClientError,
    ConnectError,
    ServerClosedError,
    SessionRefusedError,
    close_error,
)
from server.protocol import (
    BYTES_PER_SAMPLE,
    MAX_MESSAGE_BYTES,
    STREAM_PATH,
    TARGET_SAMPLE_RATE,
    CloseCode,
    DetectionMessage,
    EndMessage,
    ErrorMessage,
    ReadyMessage,
    ResetMessage,
    ScoresMessage,
    StartMessage,
    StopMessage,
    dump_message,
    encode_pcm,
    parse_server_message,
)

log = logging.getLogger(__name__)

Event = DetectionMessage | ScoresMessage
ServerEvent = ReadyMessage | DetectionMessage | ScoresMessage | EndMessage

DEFAULT_CHUNK_MS = 100.0
DEFAULT_TIMEOUT_S = 10.0


def stream_url(url: str) -> str:
    """Websocket URL of the stream endpoint from ``ws://host:port``, ``http://…`` or a full URL."""
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a websocket or http URL: {url!r}; expected e.g. ws://host:8000")
    path = parts.path if parts.path not in ("", "/") else STREAM_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


@dataclass
class _Terminal:
    """End of the event stream: ``error`` is None when the session ended normally."""

    error: ClientError | None


@dataclass
class StreamSession:
    """One open session: send audio, reset, stop; iterate events; read ``ready`` and ``end``.

    Created by ``connect``. ``async for event in session`` yields detections and scores until
    ``end`` (then stops) and raises a ``ClientError`` if the session failed; ``poll()`` takes the
    events received so far without waiting.
    """

    ws: ClientConnection
    start: StartMessage
    ready: ReadyMessage
    end: EndMessage | None = None
    close_code: int | None = None
    samples_sent: int = 0
    _queue: asyncio.Queue[Event | _Terminal] = field(default_factory=asyncio.Queue)
    _terminal: _Terminal | None = None
    _receiver: asyncio.Task[None] | None = None
    _stop_sent: bool = False
    _last_error: ErrorMessage | None = None
    _abort_error: ClientError | None = None
    _closing_locally: bool = False
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def _start_receiver(self) -> None:
        self._receiver = asyncio.create_task(self._receive(), name="lmukws-client-receiver")

    async def _receive(self) -> None:
        outcome: ClientError | None = None
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    raise BadServerReplyError(f"server sent a binary message of {len(raw)} bytes")
                message = _parse(raw)
                if isinstance(message, DetectionMessage | ScoresMessage):
                    self._queue.put_nowait(message)
                elif isinstance(message, EndMessage):
                    self.end = message
                elif isinstance(message, ErrorMessage):
                    log.warning("server error %s: %s", message.code.value, message.message)
                    self._last_error = message
                else:
                    raise BadServerReplyError(f"unexpected {message.type!r} message after ready")
        except ConnectionClosed:
            pass  # reported below from the close frame
        except BadServerReplyError as error:
            outcome = error
            await self.ws.close(code=1002, reason="protocol error")
        except asyncio.CancelledError:
            outcome = ServerClosedError("session closed by the client")
            raise
        finally:
            rcvd = self.ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else None
            if outcome is None and self._abort_error is not None and self.end is None:
                outcome = self._abort_error
            if outcome is None and self.end is None and not self._closing_locally:
                outcome = close_error(
                    self.close_code, rcvd.reason if rcvd is not None else "", self._last_error
                )
            self._terminal = _Terminal(outcome)
            self._queue.put_nowait(self._terminal)

    @property
    def open(self) -> bool:
        """True until the server ended or closed the session."""
        return self._terminal is None

    def abort(self, error: ClientError) -> None:
        """Close the connection now; iteration then raises ``error`` (unless it already ended)."""
        if self._terminal is None and self._abort_error is None:
            self._abort_error = error
            task = asyncio.ensure_future(self.ws.close(code=CloseCode.NORMAL, reason="abort"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _raise_closed(self) -> None:
        """Called when a send failed: wait for the receiver and raise why the session ended."""
        if self._receiver is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._receiver), 2.0)
        if self._terminal is not None and self._terminal.error is not None:
            raise self._terminal.error
        raise ServerClosedError("the session is closed", self.close_code, self._last_error)

    async def _send(self, data: str | bytes) -> None:
        if self._terminal is not None and self._terminal.error is not None:
            raise self._terminal.error
        try:
            await self.ws.send(data)
        except ConnectionClosed:
            await self._raise_closed()

    async def send_audio(self, audio: np.ndarray | bytes | bytearray | memoryview) -> None:
        """Send audio: float samples [S] in [-1, 1] (or int16 [S]) or raw PCM bytes.

        Arrays are encoded in the session's encoding; bytes must already be in it. Large arrays
        are split so that no message exceeds the protocol's size limit.
        """
        if self._stop_sent:
            raise ClientError("cannot send audio after stop")
        width = BYTES_PER_SAMPLE[self.start.encoding]
        if isinstance(audio, bytes | bytearray | memoryview):
            data = bytes(audio)
            if len(data) % width:
                raise ValueError(
                    f"{len(data)} bytes is not a whole number of {self.start.encoding} samples"
                )
        else:
            data = encode_pcm(to_mono_float32(np.asarray(audio)), self.start.encoding)
        step = (MAX_MESSAGE_BYTES // width) * width
        for begin in range(0, len(data), step):
            await self._send(data[begin : begin + step])
        self.samples_sent += len(data) // width

    async def reset(self) -> None:
        """Total reset: detections and audio time start again from zero."""
        await self._send(dump_message(ResetMessage()))

    async def stop(self) -> None:
        """End of audio; the server flushes, sends ``end`` and closes. Idempotent."""
        if not self._stop_sent:
            self._stop_sent = True
            await self._send(dump_message(StopMessage()))

    async def finish(self, timeout: float = DEFAULT_TIMEOUT_S) -> EndMessage:
        """Stop and wait for ``end``; the events that came meanwhile stay for ``poll()``."""
        await self.stop()
        if self._receiver is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._receiver), timeout)
            except asyncio.TimeoutError:
                raise ServerClosedError(f"no 'end' from the server within {timeout:g} s") from None
        if self._terminal is not None and self._terminal.error is not None:
            raise self._terminal.error
        if self.end is None:
            raise BadServerReplyError("the server closed the session without an 'end' message")
        return self.end

    def poll(self) -> list[Event]:
        """Events received so far, without waiting (raises if the session failed)."""
        out: list[Event] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Terminal):
                self._queue.put_nowait(item)  # stays last, for the next reader
                if item.error is not None and not out:
                    raise item.error
                break
            out.append(item)
        return out

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Terminal):
                self._queue.put_nowait(item)
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def close(self) -> None:
        """Close the connection (normal close if the session is still open)."""
        self._closing_locally = self._terminal is None
        await self.ws.close(code=CloseCode.NORMAL)
        if self._receiver is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._receiver, 2.0)

    async def __aenter__(self) -> StreamSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _parse(raw: str) -> ReadyMessage | DetectionMessage | ScoresMessage | ErrorMessage | EndMessage:
    try:
        return parse_server_message(raw)
    except (ValueError, ValidationError) as error:
        raise BadServerReplyError(f"unreadable server message {raw[:200]!r}: {error}") from None


async def _open(
    url: str,
    start: StartMessage,
    *,
    open_timeout: float,
    ready_timeout: float,
    headers: dict[str, str] | None,
) -> StreamSession:
    target = stream_url(url)
    try:
        ws = await ws_connect(
            target,
            open_timeout=open_timeout,
            max_size=MAX_MESSAGE_BYTES,
            additional_headers=headers,
            compression=None,
        )
    except InvalidStatus as error:
        status = error.response.status_code
        if status == 503:
            retry = error.response.headers.get("Retry-After")
            raise SessionRefusedError(
                f"server at {target} is full and refused the session (HTTP 503)",
                float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
            ) from None
        raise ConnectError(f"{target} refused the websocket handshake: HTTP {status}") from None
    except InvalidURI as error:
        raise ValueError(f"bad websocket URL {target!r}: {error}") from None
    except (OSError, asyncio.TimeoutError, InvalidHandshake) as error:
        raise ConnectError(f"cannot connect to {target}: {error or type(error).__name__}") from None

    try:
        await ws.send(dump_message(start))
        raw = await asyncio.wait_for(ws.recv(), ready_timeout)
    except asyncio.TimeoutError:
        await ws.close(code=CloseCode.NORMAL)
        raise BadServerReplyError(f"no 'ready' from {target} within {ready_timeout:g} s") from None
    except ConnectionClosed:
        rcvd = ws.protocol.close_rcvd
        raise close_error(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
    if isinstance(raw, bytes):
        await ws.close(code=1002)
        raise BadServerReplyError(f"server answered 'start' with {len(raw)} bytes of binary data")
    try:
        message = _parse(raw)
    except BadServerReplyError:
        await ws.close(code=1002)
        raise
    if isinstance(message, ErrorMessage):
        # a fatal error: the close follows; report it with its close code
        with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2.0)
        await ws.close()
        rcvd = ws.protocol.close_rcvd
        raise close_error(rcvd.code if rcvd else None, "", message)
    if not isinstance(message, ReadyMessage):
        await ws.close(code=1002)
        raise BadServerReplyError(
            f"server answered 'start' with {message.type!r}, expected 'ready'"
        )
    session = StreamSession(ws=ws, start=start, ready=message)
    session._start_receiver()
    return session


class connect:  # noqa: N801 - used like a function, as websockets' connect
    """Open a session: ``session = await connect(...)`` or ``async with connect(...) as s``.

    ``url``: ``ws://host:port`` (the stream path is added) or a full ``ws://…/v1/stream``.
    ``sample_rate``: 8000–48000 Hz; ``encoding``: ``pcm_s16le`` or ``pcm_f32le``; ``keywords``,
    ``thresholds``, ``sensitivity``, ``wake_word``, ``command_window_ms``,
    ``command_sensitivity``, ``speech_gate_ms`` and ``scores_every_ms`` as in the protocol's
    ``start``.
    """

    def __init__(
        self,
        url: str,
        *,
        sample_rate: int = TARGET_SAMPLE_RATE,
        encoding: str = "pcm_s16le",
        keywords: list[str] | None = None,
        thresholds: dict[str, float] | None = None,
        sensitivity: float | None = None,
        wake_word: str | None = None,
        command_window_ms: int | None = None,
        command_sensitivity: float | None = None,
        speech_gate_ms: int | None = None,
        scores_every_ms: int = 0,
        open_timeout: float = DEFAULT_TIMEOUT_S,
        ready_timeout: float = DEFAULT_TIMEOUT_S,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._start = StartMessage(
            sample_rate=sample_rate,
            encoding=encoding,  # type: ignore[arg-type]
            keywords=keywords,
            thresholds=thresholds,
            sensitivity=sensitivity,
            wake_word=wake_word,
            command_window_ms=command_window_ms,
            command_sensitivity=command_sensitivity,
            speech_gate_ms=speech_gate_ms,
            scores_every_ms=scores_every_ms,
        )
        self._url = url
        self._options: dict[str, Any] = {
            "open_timeout": open_timeout,
            "ready_timeout": ready_timeout,
            "headers": headers,
        }
        self._session: StreamSession | None = None

    def __await__(self) -> Generator[Any, None, StreamSession]:
        return _open(self._url, self._start, **self._options).__await__()

    async def __aenter__(self) -> StreamSession:
        self._session = await self
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()


async def stream_audio(
    url: str,
    samples: np.ndarray,
    sample_rate: int,
    *,
    realtime: bool = False,
    chunk_ms: float = DEFAULT_CHUNK_MS,
    encoding: str = "pcm_s16le",
    keywords: list[str] | None = None,
    thresholds: dict[str, float] | None = None,
    sensitivity: float | None = None,
    wake_word: str | None = None,
    command_window_ms: int | None = None,
    command_sensitivity: float | None = None,
    speech_gate_ms: int | None = None,
    scores_every_ms: int = 0,
    open_timeout: float = DEFAULT_TIMEOUT_S,
    end_timeout: float = 60.0,
    on_chunk: Callable[[int, float], Awaitable[None] | None] | None = None,
) -> AsyncIterator[ServerEvent]:
    """Stream [S] samples and yield every server message: ``ready``, events, then ``end``.

    Audio goes in ``chunk_ms`` pieces, as fast as the server takes them or, with ``realtime``,
    paced at the audio's own speed. ``samples`` may be float in [-1, 1] or int16, [S] or [S, C];
    rates outside 8–48 kHz are resampled to 16 kHz here. ``on_chunk(samples_sent, monotonic_time)``
    is called after each chunk is sent (for latency bookkeeping).
    """
    audio, rate = fit_rate(to_mono_float32(np.asarray(samples)), int(sample_rate))
    async with connect(
        url,
        sample_rate=rate,
        encoding=encoding,
        keywords=keywords,
        thresholds=thresholds,
        sensitivity=sensitivity,
        wake_word=wake_word,
        command_window_ms=command_window_ms,
        command_sensitivity=command_sensitivity,
        speech_gate_ms=speech_gate_ms,
        scores_every_ms=scores_every_ms,
        open_timeout=open_timeout,
    ) as session:
        yield session.ready

        async def send_all() -> None:
            t0 = time.monotonic()
            try:
                for piece in chunks(audio, rate, chunk_ms):
                    if realtime:
                        delay = t0 + session.samples_sent / rate - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await session.send_audio(piece)
                    if on_chunk is not None:
                        result = on_chunk(session.samples_sent, time.monotonic())
                        if result is not None:
                            await result
                await session.stop()
            except ClientError:
                return  # the session ended; iterating it raises why
            except BaseException as error:
                session.abort(ClientError(f"sending audio failed: {error!r}"))
                raise
            timeout = ServerClosedError(f"no 'end' from the server within {end_timeout:g} s")
            asyncio.get_running_loop().call_later(end_timeout, session.abort, timeout)

        sender = asyncio.create_task(send_all(), name="lmukws-client-sender")
        try:
            async for event in session:
                yield event
            await sender  # re-raises a local failure of the sender
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        if session.end is None:
            raise BadServerReplyError("the server closed the session without an 'end' message")
        yield session.end


async def stream_file(url: str, path: str | Path, **options: Any) -> AsyncIterator[ServerEvent]:
    """``stream_audio`` of an audio file (any rate, any channel count)."""
    samples, rate = read_audio(path)
    async for message in stream_audio(url, samples, rate, **options):
        yield message


@dataclass
class StreamResult:
    """Everything one streamed clip produced."""

    ready: ReadyMessage
    detections: list[DetectionMessage]
    scores: list[ScoresMessage]
    end: EndMessage


async def detect(url: str, samples: np.ndarray, sample_rate: int, **options: Any) -> StreamResult:
    """Stream a whole clip and collect its detections, scores and ``end``."""
    ready: ReadyMessage | None = None
    detections: list[DetectionMessage] = []
    scores: list[ScoresMessage] = []
    async for message in stream_audio(url, samples, sample_rate, **options):
        if isinstance(message, ReadyMessage):
            ready = message
        elif isinstance(message, DetectionMessage):
            detections.append(message)
        elif isinstance(message, ScoresMessage):
            scores.append(message)
        else:
            assert ready is not None
            return StreamResult(ready, detections, scores, message)
    raise BadServerReplyError("stream ended without an 'end' message")  # pragma: no cover


__all__ = [
    "DEFAULT_CHUNK_MS",
    "Event",
    "ServerEvent",
    "StreamResult",
    "StreamSession",
    "connect",
    "detect",
    "stream_audio",
    "stream_file",
    "stream_url",
]
