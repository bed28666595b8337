"""Hardening in process (issue 18): input hygiene, the handshake deadline, pending connections
outside the session cap, error details, the settings and flags of every new limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from server import protocol
from server.protocol import STREAM_PATH, ErrorCode, ProtocolError, encode_pcm
from server.settings import Settings
from tests.server.conftest import detections, stream_signal
from tests.streaming.tone_model import sequence

F32_START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_f32le"}


def expect_error(ws: object, code: str, close_code: int) -> dict:
    message = ws.receive_json()  # type: ignore[attr-defined]
    if message["type"] == "ready":
        message = ws.receive_json()  # type: ignore[attr-defined]
    assert message["type"] == "error" and message["code"] == code, message
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()  # type: ignore[attr-defined]
    assert closed.value.code == close_code
    return message


# -- input hygiene ----------------------------------------------------------------------------


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert protocol.json_depth('{"type":"start"}') == 1
    assert protocol.json_depth('{"a":{"b":[1,[2]]}}') == 4
    assert protocol.json_depth('{"a":"[[[[{{{{\\"[["}') == 1
    assert protocol.json_depth("[" * 100_000) == 100_000


NESTED_17 = '{"type":"start","k":' + "[" * 16 + "]" * 16 + "}"


@pytest.mark.parametrize("text", ["[" * 200_000, NESTED_17])
def test_deeply_nested_json_is_bad_json_before_parsing(text: str) -> None:
    with pytest.raises(ProtocolError, match="nested deeper than 16") as error:
        protocol.parse_client_message(text)
    assert error.value.code is ErrorCode.BAD_JSON and error.value.close_code == 1007


def test_huge_finite_float_samples_are_bad_audio() -> None:
    ok = np.array([0.5, -1.0, 999.0], "<f4").tobytes()
    assert protocol.decode_pcm(ok, "pcm_f32le").tolist() == [0.5, -1.0, 999.0]
    huge = np.array([0.1, 1e30, -2e3], "<f4").tobytes()
    with pytest.raises(ProtocolError, match=r"2 of 3 pcm_f32le samples are beyond ±1000") as e:
        protocol.decode_pcm(huge, "pcm_f32le")
    assert e.value.code is ErrorCode.BAD_AUDIO
    with pytest.raises(ProtocolError, match="beyond ±2"):
        protocol.decode_pcm(np.array([3.0], "<f4").tobytes(), "pcm_f32le", max_magnitude=2.0)


def test_poisoning_input_closes_only_its_own_session(
    make_client: Callable[..., TestClient],
) -> None:
    """1e30 floats get bad_audio (1007), nested JSON bad_json (1007); a session beside them
    streams on and the metrics count both, with no internal error."""
    client = make_client(max_sessions=3, engine_processes=0)
    good = sequence([("low", 0.5), ("high", 2.0)], 3.0, seed=5)
    with client.websocket_connect(STREAM_PATH) as reference:
        _, expected = stream_signal(reference, good, 1600)
    with client.websocket_connect(STREAM_PATH) as ws_good:
        ws_good.send_json({"type": "start", "sample_rate": 16000})
        assert ws_good.receive_json()["type"] == "ready"
        ws_good.send_bytes(encode_pcm(good[:24000], "pcm_s16le"))
        with client.websocket_connect(STREAM_PATH) as ws:
            ws.send_json(F32_START)
            ws.send_bytes(np.full(16000, 1e30, "<f4").tobytes())
            message = expect_error(ws, "bad_audio", 1007)
            assert "16000 of 16000" in message["message"]
        with client.websocket_connect(STREAM_PATH) as ws:
            ws.send_text("[" * 200_000)
            expect_error(ws, "bad_json", 1007)
        ws_good.send_bytes(encode_pcm(good[24000:], "pcm_s16le"))
        ws_good.send_json({"type": "stop"})
        messages = []
        while not messages or messages[-1]["type"] != "end":
            messages.append(ws_good.receive_json())
    assert detections(messages) == detections(expected)
    metrics = client.get("/metrics").text
    assert 'lmukws_errors_total{code="bad_audio"} 1' in metrics
    assert 'lmukws_errors_total{code="bad_json"} 1' in metrics
    assert "internal_error" not in metrics


# -- handshake deadline and pending connections ------------------------------------------------


def test_connections_without_start_time_out_and_do_not_fill_the_cap(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        max_sessions=1, max_pending_connections=3, handshake_timeout_s=0.5, engine_processes=0
    )
    with (
        client.websocket_connect(STREAM_PATH) as silent_a,
        client.websocket_connect(STREAM_PATH) as silent_b,
    ):
        # two connections wait for their start; the one session slot is still free
        ready = client.get("/readyz").json()
        assert ready == {
            "status": "ready",
            "sessions": 0,
            "pending": 2,
            "engines": 1,
            "engines_total": 1,
        }
        with client.websocket_connect(STREAM_PATH) as ws:
            _, messages = stream_signal(ws, sequence([("low", 0.3)], 1.5), 1600)
        assert [k for k, _ in detections(messages)] == ["low"]
        # pending connections have a cap of their own
        with client.websocket_connect(STREAM_PATH) as silent_c:
            with client.websocket_connect(STREAM_PATH) as fourth:
                message = expect_error(fourth, "server_full", 1013)
                assert "3 connections are waiting to start" in message["message"]
            for ws in (silent_a, silent_b, silent_c):
                message = expect_error(ws, "idle_timeout", 1008)
                assert "no 'start' within 0.5 s" in message["message"]
    assert client.get("/readyz").json()["pending"] == 0


# -- engines --------------------------------------------------------------------------------


def test_healthz_fails_when_no_engine_process_is_live(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(engine_processes=1)
    service = client.app.state.service  # type: ignore[attr-defined]
    ready = client.get("/readyz").json()
    assert ready["engines"] == 1 and ready["engines_total"] == 1
    assert client.get("/healthz").json() == {"status": "ok"}
    os.kill(service.sessions.pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while service.sessions.processes[0].alive:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "no engine running"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["engines"] == 0


# -- details that leaked ----------------------------------------------------------------------


def test_errors_and_model_info_leak_no_reprs_or_paths(
    client: TestClient, tone_checkpoint: Path
) -> None:
    files = [("files", ("notes.txt", b"hello, not audio", "audio/wav"))]
    response = client.post("/v1/classify", files=files)
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert "'notes.txt'" in detail and "Format not recognised" in detail
    assert " at 0x" not in detail and "BytesIO" not in detail
    info = client.get("/v1/model").json()
    assert info["checkpoint"] == tone_checkpoint.name
    assert str(tone_checkpoint.parent) not in client.get("/v1/model").text


# -- settings and flags -----------------------------------------------------------------------

NEW_LIMITS = (
    "max_message_bytes",
    "idle_timeout_s",
    "handshake_timeout_s",
    "http_header_timeout_s",
    "http_body_timeout_s",
    "max_pending_connections",
    "max_outbound_messages",
    "slow_consumer_timeout_s",
    "max_sample_magnitude",
    "max_json_depth",
    "max_upload_bytes",
    "max_request_audio_s",
    "classify_batch_s",
    "allowed_origins",
)


def test_every_limit_is_a_setting_with_a_serve_flag() -> None:
    from server.cli import SERVE_FLAGS

    for name in NEW_LIMITS:
        assert name in SERVE_FLAGS and Settings.model_fields[name].description, name
    out = subprocess.run(
        [sys.executable, "-m", "lmukws", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for name in NEW_LIMITS:
        assert f"--{name.replace('_', '-')}" in text and f"LMUKWS_{name.upper()}" in text, name


def test_allowed_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMUKWS_ALLOWED_ORIGINS", "https://a.example, http://b.example:8080/")
    assert Settings().allowed_origins == ["https://a.example", "http://b.example:8080"]
    assert Settings(allowed_origins="*").allowed_origins == ["*"]
