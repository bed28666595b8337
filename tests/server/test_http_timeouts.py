"""HTTP header and body read timeouts over a real ``lmukws serve`` on 127.0.0.1: half-sent
requests get 408 and are closed, slow but steady ones and websockets are left alone (issue 18)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from server.serve import http_protocol
from tests.server.test_hardening_live import metric
from tests.server.test_rest import wav
from tests.server.test_serve import LiveServer, running_server
from tests.streaming.tone_model import sequence

pytestmark = pytest.mark.slow

TIMEOUT = 0.5  # both deadlines of the server below
SLACK = 5.0  # the machine may be loaded: never a tight bound
TIMEOUTS = 'lmukws_errors_total{code="request_timeout"}'


@pytest.fixture(scope="module")
def live(tone_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("http-timeouts")
    env = {f"LMUKWS_HTTP_{kind}_TIMEOUT_S": str(TIMEOUT) for kind in ("HEADER", "BODY")}
    with running_server(tone_checkpoint, folder, LMUKWS_ENGINE_PROCESSES="0", **env) as server:
        yield server


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT + SLACK)


def read_until_closed(sock: socket.socket, since: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and the seconds from ``since``
    (``time.monotonic()`` before the deadline started) until then; a connection still open
    after the socket's timeout raises."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return data, time.monotonic() - since


def assert_408_and_closed(data: bytes, seconds: float) -> None:
    head = data.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 408 request timeout"), data
    assert b"connection: close" in head.split(b"\r\n")
    assert TIMEOUT - 0.05 < seconds < TIMEOUT + SLACK


def test_a_connection_that_sends_nothing_gets_408_and_is_closed(live: LiveServer) -> None:
    before = metric(live, TIMEOUTS)
    data, seconds = read_until_closed(connect(live), time.monotonic())
    assert_408_and_closed(data, seconds)
    assert b"content-length: 0" in data.lower()
    assert metric(live, TIMEOUTS) == before + 1


def test_half_sent_headers_get_408_and_are_closed(live: LiveServer) -> None:
    since = time.monotonic()
    sock = connect(live)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag")
    assert_408_and_closed(*read_until_closed(sock, since))


def test_a_kept_alive_connection_whose_next_request_stalls_is_closed(live: LiveServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=TIMEOUT + SLACK)
    for _ in range(2):  # kept alive between requests sent in time
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("connection") != "close"
        response.read()
    assert connection.sock is not None
    since = time.monotonic()
    connection.sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    assert_408_and_closed(*read_until_closed(connection.sock, since))


def classify_request(server: LiveServer) -> httpx.Request:
    files = [("files", ("one.wav", wav(sequence([("low", 0.3)], 1.0)), "audio/wav"))]
    request = httpx.Request("POST", f"{server.http}/v1/classify", files=files)
    request.read()
    return request


def test_a_body_that_stalls_gets_408_and_the_server_keeps_serving(live: LiveServer) -> None:
    request = classify_request(live)
    before = metric(live, TIMEOUTS)
    sock = connect(live)
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {request.headers['content-type']}\r\n"
        f"Content-Length: {len(request.content)}\r\n\r\n"
    )
    since = time.monotonic()
    sock.sendall(head.encode() + request.content[:1000])
    data, seconds = read_until_closed(sock, since)
    assert_408_and_closed(data, seconds)
    assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {"detail": "request body timed out"}
    assert metric(live, TIMEOUTS) == before + 1
    assert httpx.get(f"{live.http}/healthz").status_code == 200
    time.sleep(0.2)
    log = live.log.read_text(errors="replace")
    assert "no request body bytes for 0.5 s; 408 and closed" in log
    assert "Traceback" not in log


def test_a_slow_but_steady_body_is_not_cut(live: LiveServer) -> None:
    request = classify_request(live)
    pieces = 10
    size = -(-len(request.content) // pieces)

    def slowly() -> Iterator[bytes]:
        for i in range(pieces):  # 2 s in all, a piece every 0.2 s: never 0.5 s without bytes
            yield request.content[i * size : (i + 1) * size]
            time.sleep(0.2)

    started = time.monotonic()
    response = httpx.post(
        request.url,
        content=slowly(),
        headers={"content-type": request.headers["content-type"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["filename"] == "one.wav"
    assert time.monotonic() - started > 4 * TIMEOUT


def test_a_websocket_idle_past_the_header_timeout_stays_open(live: LiveServer) -> None:
    async def main() -> tuple[list[dict], int | None]:
        async with websockets.connect(live.ws) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await asyncio.sleep(4 * TIMEOUT)  # idle, well within idle_timeout_s
            await ws.send(json.dumps({"type": "stop"}))
            messages = []
            with contextlib.suppress(websockets.ConnectionClosed):
                async for text in ws:
                    messages.append(json.loads(text))
            return messages, ws.close_code

    messages, code = asyncio.run(main())
    assert code == 1000 and messages[-1]["type"] == "end"


class FakeTransport(asyncio.Transport):
    """Just enough of a transport for one protocol in process: keeps what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_the_body_clock_waits_while_reading_is_paused_for_the_app() -> None:
    """uvicorn pauses reading while the app lets the body pile up: the client cannot send, so
    its body deadline waits and starts again once reading resumes."""

    async def main() -> tuple[bool, bool, bytes]:
        done = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await done.wait()  # a slow app: does not read the body

        config = uvicorn.Config(app, lifespan="off")
        config.load()
        protocol = http_protocol(header_timeout_s=5.0, body_timeout_s=0.2)(
            config=config, server_state=ServerState(), app_state={}
        )
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc")
        protocol.flow.pause_reading()
        await asyncio.sleep(0.6)
        closed_while_paused = transport.closed
        protocol.flow.resume_reading()
        await asyncio.sleep(0.6)
        done.set()
        return closed_while_paused, transport.closed, transport.written

    closed_while_paused, closed, written = asyncio.run(main())
    assert not closed_while_paused
    assert closed and written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
