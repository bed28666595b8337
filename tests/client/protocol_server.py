"""A small websocket server that speaks ``WS /v1/stream`` from ``server.protocol``, for testing
the client's conformance without the model (the real server is tested in test_e2e_*.py).

It parses every client message with the protocol's own parser and decodes audio with
``decode_pcm``, so a client that breaks the protocol fails here as it would on the real server.
Its "model" fires ``yes`` at the end of every 100 ms chunk of 16 kHz audio (counted from start or
reset) whose RMS is above 0.3, and reports scores as asked. ``behaviour`` selects misbehaviours:

normal, full (error + close 1013), http503, garbage_ready, garbage_event, drop, shutdown
(end + close 1001), shutdown_no_end (close 1001), no_end (ignores stop).
"""

from __future__ import annotations

import asyncio
import http
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from server import protocol as p

LABELS = ["yes", "no", "up", "down", "_unknown_", "_silence_"]
LOUD_RMS = 0.3
BLOCK_MS = 100


@dataclass
class Received:
    """What the server saw from one connection."""

    start: p.StartMessage | None = None
    samples: list[np.ndarray] = field(default_factory=list)
    resets: int = 0
    stops: int = 0
    close_code: int | None = None

    def closed_with(self, timeout: float = 5.0) -> int | None:
        """The close code, once the server side of the connection has closed."""
        deadline = time.monotonic() + timeout
        while self.close_code is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.close_code

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(0, np.float32)


class ProtocolServer:
    """Runs in a background thread; ``url`` is ``ws://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.behaviour = "normal"
        self.sessions: list[Received] = []
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result()
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    async def _serve(self) -> Server:
        return await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=p.MAX_MESSAGE_BYTES,
        )

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.behaviour == "http503":
            return Response(
                503, "Service Unavailable", Headers({"Retry-After": "2"}), b"server full\n"
            )
        if request.path != p.STREAM_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        return None

    async def _fatal(self, ws: ServerConnection, code: p.ErrorCode, message: str) -> None:
        await ws.send(p.dump_message(p.error_message(code, message)))
        await ws.close(p.ERROR_CLOSE_CODES[code], message[:100])

    async def _handle(self, ws: ServerConnection) -> None:
        got = Received()
        self.sessions.append(got)
        try:
            await self._conversation(ws, got)
        finally:
            got.close_code = ws.close_code

    async def _conversation(self, ws: ServerConnection, got: Received) -> None:
        behaviour = self.behaviour
        first = await ws.recv()
        if isinstance(first, bytes):
            await self._fatal(ws, p.ErrorCode.NOT_STARTED, "audio before start")
            return
        try:
            start = p.parse_client_message(first)
        except p.ProtocolError as error:
            await self._fatal(ws, error.code, error.message)
            return
        if not isinstance(start, p.StartMessage):
            await self._fatal(ws, p.ErrorCode.NOT_STARTED, f"{start.type} before start")
            return
        got.start = start
        if behaviour == "full":
            await self._fatal(ws, p.ErrorCode.SERVER_FULL, "64 sessions open")
            return
        unknown = [k for k in (start.keywords or []) if k not in LABELS]
        if unknown:
            await self._fatal(ws, p.ErrorCode.UNKNOWN_KEYWORD, f"unknown keywords {unknown}")
            return
        if behaviour == "garbage_ready":
            await ws.send("hello")
            await ws.wait_closed()
            return
        await ws.send(
            p.dump_message(
                p.ReadyMessage(
                    session_id="s1",
                    model="protocol-test",
                    labels=LABELS,
                    sample_rate=start.sample_rate,
                    lookahead_frames=4,
                    algorithmic_latency_ms=65.0,
                    keywords=start.keywords or LABELS[:4],
                    wake_word=start.wake_word,
                )
            )
        )
        seen16 = 0.0  # 16 kHz samples since start or reset
        block: list[np.ndarray] = []
        next_scores = float(start.scores_every_ms)
        detections = 0
        async for raw in ws:
            if isinstance(raw, bytes):
                try:
                    samples = p.decode_pcm(raw, start.encoding)
                except p.ProtocolError as error:
                    await self._fatal(ws, error.code, error.message)
                    return
                got.samples.append(samples)
                if behaviour == "garbage_event":
                    await ws.send('{"type":"detection","keyword":"yes"}')
                    continue
                if behaviour == "drop":
                    ws.transport.abort()
                    return
                if behaviour == "shutdown_no_end":
                    await ws.close(p.CloseCode.GOING_AWAY, "shutting down")
                    return
                block_len = start.sample_rate * BLOCK_MS // 1000
                pending = np.concatenate([*block, samples])
                while len(pending) >= block_len:
                    piece, pending = pending[:block_len], pending[block_len:]
                    seen16 += block_len * p.TARGET_SAMPLE_RATE / start.sample_rate
                    audio_ms = 1000.0 * seen16 / p.TARGET_SAMPLE_RATE
                    if float(np.sqrt(np.mean(piece**2))) > LOUD_RMS:
                        detections += 1
                        await ws.send(
                            p.dump_message(
                                p.DetectionMessage(
                                    keyword="yes",
                                    score=0.9,
                                    audio_ms=audio_ms,
                                    latency=p.Latency(
                                        algorithmic_ms=65.0,
                                        queue_ms=1.0,
                                        compute_ms=2.0,
                                        server_ms=3.5,
                                    ),
                                )
                            )
                        )
                    while start.scores_every_ms and audio_ms >= next_scores:
                        await ws.send(
                            p.dump_message(
                                p.ScoresMessage(
                                    audio_ms=next_scores, top=[("yes", 0.7), ("no", 0.2)]
                                )
                            )
                        )
                        next_scores += start.scores_every_ms
                block = [pending]
                if behaviour == "shutdown" and seen16 >= 8000:
                    await self._end(ws, seen16, detections)
                    await ws.close(p.CloseCode.GOING_AWAY, "shutting down")
                    return
                continue
            try:
                message = p.parse_client_message(raw)
            except p.ProtocolError as error:
                await self._fatal(ws, error.code, error.message)
                return
            if isinstance(message, p.StartMessage):
                await self._fatal(ws, p.ErrorCode.ALREADY_STARTED, "second start")
                return
            if isinstance(message, p.ResetMessage):
                got.resets += 1
                seen16, block, detections = 0.0, [], 0
                next_scores = float(start.scores_every_ms)
                continue
            got.stops += 1
            if behaviour in ("no_end", "garbage_event"):
                continue
            seen16 += sum(len(b) for b in block) * p.TARGET_SAMPLE_RATE / start.sample_rate
            await self._end(ws, seen16, detections)
            await ws.close(p.CloseCode.NORMAL)
            return

    async def _end(self, ws: ServerConnection, seen16: float, detections: int) -> None:
        audio_ms = 1000.0 * seen16 / p.TARGET_SAMPLE_RATE
        await ws.send(
            p.dump_message(
                p.EndMessage(audio_ms=audio_ms, frames=int(audio_ms // 10), detections=detections)
            )
        )

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def burst_clip(
    rate: int = 16000, seconds: float = 1.0, burst_at: tuple[float, float] = (0.5, 0.6)
) -> np.ndarray:
    """Quiet noise with one loud 1 kHz burst over ``burst_at`` seconds: float32 [S]."""
    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    x = (rng.standard_normal(n) * 0.01).astype(np.float32)
    a, b = (int(rate * t) for t in burst_at)
    t = np.arange(b - a) / rate
    x[a:b] = 0.8 * np.sin(2 * np.pi * 1000.0 * t)
    return x
