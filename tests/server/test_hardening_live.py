"""Hardening over a real ``lmukws serve`` on 127.0.0.1: a client that stops reading, text that
is not UTF-8, chunked uploads over the limit, foreign origins (issue 18)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from server.protocol import encode_pcm
from tests.server.test_serve import LiveServer, running_server
from tests.streaming.tone_model import sequence

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tone_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(
        tone_checkpoint,
        tmp_path_factory.mktemp("hardening"),
        LMUKWS_MAX_SESSIONS="4",
        LMUKWS_ENGINE_PROCESSES="1",
        LMUKWS_MAX_OUTBOUND_MESSAGES="8",
        LMUKWS_SLOW_CONSUMER_TIMEOUT_S="1.5",
        LMUKWS_HANDSHAKE_TIMEOUT_S="2",
        LMUKWS_MAX_UPLOAD_BYTES="200000",
    ) as server:
        yield server


def metric(server: LiveServer, name: str) -> float:
    text = httpx.get(f"{server.http}/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def readyz(server: LiveServer) -> dict:
    return httpx.get(f"{server.http}/readyz").json()


class RawClient:
    """A websocket client on a plain socket that reads only when told to (websockets' sans-I/O
    protocol), with a small receive buffer: a client that stops reading."""

    def __init__(self, server: LiveServer, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.settimeout(10)
        self.protocol = ClientProtocol(parse_uri(server.ws))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self.protocol.events_received():
            self.protocol.receive_data(self.sock.recv(65536))
            if self.protocol.state is not State.CONNECTING:
                break

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def send_json(self, message: dict) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self._flush()

    def send_bytes(self, data: bytes) -> None:
        self.protocol.send_binary(data)
        self._flush()

    def read_all(self, timeout: float = 5.0) -> tuple[list[dict], int | None]:
        """Every message until the server closes or drops the connection: (messages, close
        code or None when the TCP connection was dropped without a close frame)."""
        self.sock.settimeout(timeout)
        messages = []
        with contextlib.suppress(OSError):
            while data := self.sock.recv(1 << 16):
                self.protocol.receive_data(data)
                for frame in self.protocol.events_received():
                    if getattr(frame, "opcode", None) is Opcode.TEXT:
                        messages.append(json.loads(frame.data))
        self.sock.close()
        close = self.protocol.close_rcvd
        return messages, close.code if close is not None else None


def test_a_client_that_stops_reading_is_closed_and_its_session_freed(live: LiveServer) -> None:
    """``scores`` every 10 ms to a client that never reads: once the socket buffers are full
    the outbox drops scores, the slow-consumer deadline frees the session at once and drops
    the connection; the server's memory stays put."""
    x = sequence([], 400.0, seed=3)  # ~8 MB of scores: more than the socket buffers hold
    rss_before = live.rss_kib()
    client = RawClient(live)
    client.send_json({"type": "start", "sample_rate": 16000, "scores_every_ms": 10})
    started = time.monotonic()
    for i in range(0, x.size, 16000):
        client.send_bytes(encode_pcm(x[i : i + 16000], "pcm_s16le"))
    freed_after = None
    while time.monotonic() - started < 60:
        if readyz(live)["sessions"] == 0:
            freed_after = time.monotonic() - started
            break
        time.sleep(0.1)
    rss_growth = live.rss_kib() - rss_before
    assert freed_after is not None
    assert metric(live, 'lmukws_errors_total{code="slow_consumer"}') == 1
    assert metric(live, "lmukws_scores_dropped_total") > 0
    assert metric(live, "lmukws_active_sessions") == 0
    assert rss_growth < 50_000  # KiB
    messages, code = client.read_all()
    assert messages[0]["type"] == "ready"
    assert {m["type"] for m in messages[1:]} <= {"scores", "error"}
    # the close frame rarely gets through full buffers: 1008 after the error, or a dropped link
    assert code in (1008, None), code
    if code == 1008:
        assert messages[-1]["code"] == "slow_consumer"
    assert readyz(live)["status"] == "ready"


def test_a_slow_reader_that_goes_on_sending_is_dropped(live: LiveServer) -> None:
    """The receive loop ends on the next audio once the session is freed: the connection must
    still be dropped (it used to stay open, unread, for as long as the client sent)."""
    x = sequence([], 400.0, seed=4)
    burst = 300 * 16000  # enough scores to fill the socket buffers at once
    client = RawClient(live)
    client.send_json({"type": "start", "sample_rate": 16000, "scores_every_ms": 10})
    client.sock.settimeout(30)
    for i in range(0, burst, 16000):
        client.send_bytes(encode_pcm(x[i : i + 16000], "pcm_s16le"))
    started = time.monotonic()
    dropped = None
    for i in range(burst, x.size, 1600):
        try:
            client.send_bytes(encode_pcm(x[i : i + 1600], "pcm_s16le"))
        except (ConnectionResetError, BrokenPipeError):
            dropped = time.monotonic() - started
            break
        time.sleep(0.02)  # 100 ms of audio every 20 ms: the client never stops sending
        if time.monotonic() - started > 60:
            break
    client.sock.close()
    assert dropped is not None, "the connection was never dropped"
    assert readyz(live)["sessions"] == 0


def test_a_text_message_that_is_not_utf8_closes_1007_without_a_traceback(
    live: LiveServer,
) -> None:
    client = RawClient(live)
    client.protocol.send_text(b'{"type":"start","sample_rate":\xff\xfe}')
    client.sock.sendall(b"".join(client.protocol.data_to_send()))
    messages, code = client.read_all()
    assert code == 1007 and [m["type"] for m in messages] == []
    time.sleep(0.2)
    log = live.log.read_text(errors="replace")
    assert "not UTF-8" in log and "Traceback" not in log
    assert readyz(live)["sessions"] == 0


def test_a_foreign_origin_is_refused_over_the_wire(live: LiveServer) -> None:
    import asyncio

    import websockets

    async def connect(origin: str | None) -> int | None:
        try:
            async with websockets.connect(live.ws, origin=origin) as ws:  # type: ignore[arg-type]
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
                assert json.loads(await ws.recv())["type"] == "ready"
                return None
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    own = f"http://127.0.0.1:{live.port}"
    results = [asyncio.run(connect(o)) for o in ("http://evil.example", "null", own, None)]
    assert results == [403, 403, None, None]
    response = httpx.post(
        f"{live.http}/v1/classify",
        files=[("files", ("a.wav", b"x", "audio/wav"))],
        headers={"origin": "http://evil.example"},
    )
    assert response.status_code == 403


def test_a_chunked_upload_over_the_limit_gets_413_over_the_wire(live: LiveServer) -> None:
    boundary = "lmukws-boundary"

    def chunked() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode()
        for _ in range(40):  # 320 kB, over the 200 kB limit
            yield b"\x00" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    before = metric(live, 'lmukws_errors_total{code="upload_too_large"}')
    response = httpx.post(
        f"{live.http}/v1/classify",
        content=chunked(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is over the upload limit of 200000 bytes"}
    assert metric(live, 'lmukws_errors_total{code="upload_too_large"}') == before + 1
