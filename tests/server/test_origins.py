"""Origins (issue 18): browsers only from the server's own origin or ``allowed_origins``;
clients without ``Origin`` always; CORS headers only for allowed origins."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers
from starlette.websockets import WebSocketDisconnect

from server.origins import origin_allowed
from server.protocol import STREAM_PATH
from tests.server.conftest import stream_signal
from tests.streaming.tone_model import sequence

EVIL = "http://evil.example"


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "localhost:8000", [], True),  # the CLI, curl
        ("http://localhost:8000", "localhost:8000", [], True),  # the demo page
        ("http://LOCALHOST:8000/", "localhost:8000", [], True),
        ("https://kws.example", "kws.example:443", [], True),  # default ports
        ("http://kws.example:80", "kws.example", [], True),
        ("http://localhost:8001", "localhost:8000", [], False),  # another port: another site
        (EVIL, "localhost:8000", [], False),
        ("null", "localhost:8000", [], False),  # sandboxed iframes, file:// pages
        ("javascript:alert(1)", "localhost:8000", [], False),
        ("https://app.example", "localhost:8000", ["https://app.example"], True),
        (EVIL, "localhost:8000", ["https://app.example"], False),
        ("null", "localhost:8000", ["null"], True),
        (EVIL, "localhost:8000", ["*"], True),
    ],
)
def test_origin_allowed(origin: str | None, host: str, allowed: list, expected: bool) -> None:
    assert origin_allowed(origin, Headers({"host": host}), allowed) is expected


def test_behind_a_proxy_the_forwarded_host_is_the_own_origin() -> None:
    headers = Headers({"host": "127.0.0.1:8000", "x-forwarded-host": "kws.example"})
    assert origin_allowed("https://kws.example", headers, [])
    assert not origin_allowed(EVIL, headers, [])


def refused_websocket(client: TestClient, origin: str) -> int:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(STREAM_PATH, headers={"origin": origin}) as ws,
    ):
        ws.receive_text()
    return refused.value.code


def test_foreign_origins_are_refused_and_own_origin_streams(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(engine_processes=0)
    for origin in (EVIL, "null"):
        assert refused_websocket(client, origin) == 1008
        response = client.post(
            "/v1/classify",
            files=[("files", ("a.wav", b"x", "audio/wav"))],
            headers={"origin": origin},
        )
        assert response.status_code == 403 and "not allowed" in response.json()["detail"]
        assert "access-control-allow-origin" not in response.headers
        assert client.get("/v1/model", headers={"origin": origin}).status_code == 403
    # the demo page's own origin (TestClient's host is "testserver") and no Origin at all
    for headers in ({"origin": "http://testserver"}, {}):
        with client.websocket_connect(STREAM_PATH, headers=headers) as ws:
            _, messages = stream_signal(ws, sequence([("low", 0.3)], 1.5), 1600)
        assert messages[-1]["type"] == "end"
    assert client.get("/", headers={"origin": "http://testserver"}).status_code == 200
    assert client.get("/readyz").json()["sessions"] == 0
    assert 'lmukws_errors_total{code="forbidden_origin"} 6' in client.get("/metrics").text


def test_allowed_origins_widen_it_with_cors_headers(
    make_client: Callable[..., TestClient],
) -> None:
    app_origin = "https://app.example"
    client = make_client(engine_processes=0, allowed_origins=f"{app_origin}, http://b.example")
    with client.websocket_connect(STREAM_PATH, headers={"origin": app_origin}) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000})
        assert ws.receive_json()["type"] == "ready"
    response = client.get("/v1/model", headers={"origin": app_origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == app_origin
    assert "Origin" in response.headers.get_list("vary")
    preflight = client.options(
        "/v1/classify",
        headers={
            "origin": app_origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == app_origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type"
    # others are still refused, preflights included; no-Origin requests get no CORS headers
    assert refused_websocket(client, EVIL) == 1008
    evil = client.options(
        "/v1/classify", headers={"origin": EVIL, "access-control-request-method": "POST"}
    )
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    assert "access-control-allow-origin" not in client.get("/v1/model").headers
