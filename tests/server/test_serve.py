"""A real ``lmukws serve`` on 127.0.0.1 driven by the ``websockets`` client: transport,
concurrency, bad input, connection churn and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from server.protocol import encode_pcm
from tests.server.conftest import detections
from tests.streaming.tone_model import sequence

pytestmark = pytest.mark.slow

EVENTS = [("low", 0.5), ("high", 2.0), ("_unknown_", 3.5), ("low", 5.0)]


class LiveServer:
    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/v1/stream"

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def start_server(checkpoint: Path, folder: Path, **env: str) -> LiveServer:
    log = folder / "serve.log"
    environ = {**os.environ, "LMUKWS_TORCH_THREADS": "1", **env}
    command = [sys.executable, "-m", "lmukws", "serve", "--checkpoint", str(checkpoint)]
    command += ["--port", "0"]  # uvicorn logs the port it bound at level info
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", text)
        if found:
            return LiveServer(process, int(found.group(1)), log)
        if process.poll() is not None:
            raise RuntimeError(f"lmukws serve exited with {process.returncode}:\n{text}")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"lmukws serve did not start:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def running_server(checkpoint: Path, folder: Path, **env: str) -> Iterator[LiveServer]:
    """``start_server`` for a ``with`` block, stopped (SIGTERM) when it ends."""
    server = start_server(checkpoint, folder, **env)
    try:
        yield server
    finally:
        stop_server(server)


def wait_until_no_sessions(server: LiveServer, timeout: float = 10.0) -> int:
    """Sessions the server still holds once every client left (it frees them just after)."""
    deadline = time.monotonic() + timeout
    while True:
        sessions = httpx.get(f"{server.http}/readyz").json()["sessions"]
        if sessions == 0 or time.monotonic() > deadline:
            return sessions
        time.sleep(0.02)


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="module")
def live(tone_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("serve")
    env = {"LMUKWS_MAX_SESSIONS": "4", "LMUKWS_MAX_MESSAGE_BYTES": "65536"}
    with running_server(tone_checkpoint, folder, **env) as server:
        yield server


async def session(
    url: str,
    x: np.ndarray,
    chunk: int,
    rate: int = 16000,
    encoding: str = "pcm_s16le",
    start: dict[str, Any] | None = None,
    realtime: float = 0.0,
) -> tuple[dict, list[dict], int | None]:
    """One whole session: (ready, messages after it, close code)."""
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "encoding": encoding,
                                  **(start or {})}))  # fmt: skip
        ready = json.loads(await ws.recv())
        for i in range(0, x.size, chunk):
            await ws.send(encode_pcm(x[i : i + chunk], encoding))
            if realtime:
                await asyncio.sleep(chunk / rate / realtime)
        await ws.send(json.dumps({"type": "stop"}))
        messages = []
        try:
            async for text in ws:
                messages.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        return ready, messages, ws.close_code


async def expect_error(url: str, sends: list[str | bytes]) -> tuple[dict, int | None]:
    async with websockets.connect(url) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):  # the server may refuse first
            for item in sends:
                await ws.send(item)
        messages = []
        try:
            async for text in ws:
                messages.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        return messages[-1], ws.close_code


def test_detections_and_chunkings_over_the_wire(live: LiveServer) -> None:
    x = sequence(EVENTS, 6.5)

    async def main() -> list:
        return [await session(live.ws, x, chunk) for chunk in (160, 592, 16000)]

    results = asyncio.run(main())
    for ready, messages, code in results:
        assert ready["type"] == "ready" and code == 1000
        assert messages[-1] == {"type": "end", "audio_ms": 6500.0, "frames": 648, "detections": 3}
    found = [detections(messages) for _, messages, _ in results]
    assert [k for k, _ in found[0]] == ["low", "high", "low"]
    assert found[0] == found[1] == found[2]
    for (_, ms), onset in zip(found[0], (0.5, 2.0, 5.0), strict=True):
        assert onset * 1000 < ms < onset * 1000 + 600


def test_concurrent_sessions_do_not_affect_each_other(live: LiveServer) -> None:
    signals = [sequence(EVENTS[:2], 3.0, seed=s) for s in range(3)]
    signals.append(sequence([("high", 0.8)], 3.0, seed=7, rate=44100))
    rates = [16000, 16000, 16000, 44100]
    chunks = [160, 1600, 777, 4410]

    async def main() -> tuple[list, list]:
        solo = [
            await session(live.ws, x, c, r) for x, c, r in zip(signals, chunks, rates, strict=True)
        ]
        together = await asyncio.gather(
            *(session(live.ws, x, c, r, realtime=20.0)
              for x, c, r in zip(signals, chunks, rates, strict=True))
        )  # fmt: skip
        return solo, list(together)

    solo, together = asyncio.run(main())
    for (_, want, _), (_, got, code) in zip(solo, together, strict=True):
        assert code == 1000
        assert detections(got) == detections(want) and got[-1] == want[-1]
    assert [k for k, _ in detections(together[3][1])] == ["high"]


def test_bad_input_and_limits_over_the_wire(live: LiveServer) -> None:
    start = json.dumps({"type": "start", "sample_rate": 16000})

    async def main() -> list:
        results = [
            await expect_error(live.ws, [b"\x00\x00"]),
            await expect_error(live.ws, ["{oops"]),
            await expect_error(live.ws, [start, b"\x01\x02\x03"]),
            await expect_error(live.ws, [start, b"\x00" * 70_000]),
            await expect_error(live.ws, [json.dumps({"type": "start", "sample_rate": 3})]),
        ]
        assert await asyncio.to_thread(wait_until_no_sessions, live) == 0
        # session cap: 4 open sessions, the fifth is refused with 1013
        async with (
            websockets.connect(live.ws) as a,
            websockets.connect(live.ws) as b,
            websockets.connect(live.ws) as c,
            websockets.connect(live.ws) as d,
        ):
            for ws in (a, b, c, d):
                await ws.send(start)
                assert json.loads(await ws.recv())["type"] == "ready"
            results.append(await expect_error(live.ws, [start]))
        return results

    assert wait_until_no_sessions(live) == 0
    results = asyncio.run(main())
    expected = [
        ("not_started", 1008),
        ("bad_json", 1007),
        ("bad_audio", 1007),
        ("message_too_big", 1009),
        ("unsupported_sample_rate", 1008),
        ("server_full", 1013),
    ]
    assert [(m["code"], code) for m, code in results] == expected
    assert wait_until_no_sessions(live) == 0


def test_1000_connect_disconnect_cycles_free_every_session(live: LiveServer) -> None:
    start = json.dumps({"type": "start", "sample_rate": 16000})
    audio = encode_pcm(sequence([], 0.05), "pcm_s16le")

    async def cycle(i: int) -> None:
        ws = await websockets.connect(live.ws)
        if i % 4 == 0:  # drop the TCP connection without a close handshake
            await ws.send(start)
            await ws.recv()
            await ws.send(audio)
            ws.transport.abort()
            return
        if i % 4 >= 1:
            await ws.send(start)
            await ws.recv()
        if i % 4 == 2:
            await ws.send(audio)
        await ws.close()

    async def main(n: int, offset: int) -> None:
        for i in range(n):
            await cycle(i + offset)

    asyncio.run(main(100, 0))
    rss_before = live.rss_kib()
    asyncio.run(main(900, 100))
    assert wait_until_no_sessions(live) == 0
    metrics = httpx.get(f"{live.http}/metrics").text
    assert "\nlmukws_active_sessions 0\n" in metrics
    assert live.rss_kib() - rss_before < 20_000  # KiB
    # and the server still works
    _, messages, code = asyncio.run(session(live.ws, sequence(EVENTS[:1], 1.5), 1600))
    assert code == 1000 and detections(messages)[0][0] == "low"


def test_sigterm_flushes_sends_end_and_closes_1001(tone_checkpoint: Path, tmp_path: Path) -> None:
    server = start_server(tone_checkpoint, tmp_path, LMUKWS_SHUTDOWN_DEADLINE_S="3")
    x = sequence(EVENTS[:2], 3.0)
    try:

        async def main() -> tuple[list, int | None, dict, int | None, float]:
            async with websockets.connect(server.ws) as ws, websockets.connect(server.ws) as idle:
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
                await ws.recv()
                for i in range(0, x.size, 1600):
                    await ws.send(encode_pcm(x[i : i + 1600], "pcm_s16le"))
                await asyncio.sleep(0.2)
                sent_at = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                messages = []
                try:
                    async for text in ws:
                        messages.append(json.loads(text))
                except websockets.ConnectionClosed:
                    pass
                idle_message = json.loads(await idle.recv())
                with contextlib.suppress(websockets.ConnectionClosed):
                    await idle.recv()
                return messages, ws.close_code, idle_message, idle.close_code, sent_at

        messages, code, idle_message, idle_code, sent_at = asyncio.run(main())
        server.process.wait(10)
        exited_after = time.monotonic() - sent_at
    finally:
        stop_server(server)
    assert code == 1001
    assert [k for k, _ in detections(messages)] == ["low", "high"]
    assert messages[-1] == {"type": "end", "audio_ms": 3000.0, "frames": 298, "detections": 2}
    assert idle_message["code"] == "shutting_down" and idle_code == 1001
    assert server.process.returncode == 0
    assert exited_after < 3 + 5


def test_websocket_compression_is_off_by_default(live: LiveServer) -> None:
    """A client offering permessage-deflate gets plain frames (PCM barely compresses)."""

    async def main() -> str | None:
        async with websockets.connect(live.ws, compression="deflate") as ws:
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(main()) is None
