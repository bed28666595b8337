"""WS /v1/stream in process: detections, chunkings, reset, bad input, limits."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from server.protocol import STREAM_PATH, encode_pcm
from tests.server.conftest import detections, stream_signal
from tests.streaming.tone_model import sequence
from tests.tolerance import SCORE_TOLERANCE

EVENTS = [("low", 0.5), ("high", 2.0), ("_unknown_", 3.5), ("low", 5.0)]


def test_sequence_gives_detections_in_order_at_the_right_times(client: TestClient) -> None:
    x = sequence(EVENTS, 6.5)
    with client.websocket_connect(STREAM_PATH) as ws:
        ready, messages = stream_signal(ws, x, 1600)
    assert ready["labels"] == ["low", "high", "_unknown_", "_silence_"]
    assert ready["keywords"] == ["low", "high"] and ready["sample_rate"] == 16000
    assert ready["algorithmic_latency_ms"] == 25 + 10 * ready["lookahead_frames"]
    found = detections(messages)
    assert [k for k, _ in found] == ["low", "high", "low"]
    for (_, ms), onset in zip(found, (0.5, 2.0, 5.0), strict=True):
        assert onset * 1000 < ms < onset * 1000 + 600
    det = next(m for m in messages if m["type"] == "detection")
    latency = det["latency"]
    assert latency["algorithmic_ms"] == ready["algorithmic_latency_ms"]
    assert latency["server_ms"] >= latency["queue_ms"] >= 0 and latency["compute_ms"] > 0
    end = messages[-1]
    assert end == {"type": "end", "audio_ms": 6500.0, "frames": 648, "detections": 3}


def test_chunkings_of_10_37_and_1000_ms_give_the_same_detections(client: TestClient) -> None:
    x = sequence(EVENTS[:2], 3.0, seed=1)
    results = []
    for chunk in (160, 592, 16000):
        with client.websocket_connect(STREAM_PATH) as ws:
            _, messages = stream_signal(ws, x, chunk)
        results.append((detections(messages), messages[-1]))
    assert results[0][0] and results[0] == results[1] == results[2]


def test_float_input_resampled_and_scores(client: TestClient) -> None:
    x = sequence(EVENTS[:2], 3.0, rate=48000, seed=2)
    with client.websocket_connect(STREAM_PATH) as ws:
        ready, messages = stream_signal(
            ws, x, 4800, 48000, "pcm_f32le", {"scores_every_ms": 500, "keywords": ["high"]}
        )
    assert ready["sample_rate"] == 48000 and ready["keywords"] == ["high"]
    assert [k for k, _ in detections(messages)] == ["high"]
    scores = [m for m in messages if m["type"] == "scores"]
    assert [s["audio_ms"] for s in scores] == [515.0 + 500 * i for i in range(len(scores))]
    assert len(scores) == 5 and all(len(s["top"]) == 4 for s in scores)
    assert messages[-1]["audio_ms"] == 3000.0


def test_reset_equals_a_fresh_session(client: TestClient) -> None:
    a = sequence([("high", 0.4)], 1.0, seed=3)
    b = sequence(EVENTS[:2], 3.0, seed=4)
    with client.websocket_connect(STREAM_PATH) as ws:
        _, fresh = stream_signal(ws, b, 800, start={"scores_every_ms": 100})
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000, "scores_every_ms": 100})
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(encode_pcm(a, "pcm_s16le"))
        ws.send_json({"type": "reset"})
        for i in range(0, b.size, 800):
            ws.send_bytes(encode_pcm(b[i : i + 800], "pcm_s16le"))
        ws.send_json({"type": "stop"})
        messages = []
        while not messages or messages[-1]["type"] != "end":
            messages.append(ws.receive_json())

    def comparable(m: dict) -> dict:
        """A message without its wall-clock latency, scores within the suite's tolerance: the
        two sessions' audio reaches the engine in differently sized steps."""
        m = {k: v for k, v in m.items() if k != "latency"}
        if m["type"] == "detection":
            m["score"] = pytest.approx(m["score"], abs=SCORE_TOLERANCE + 1e-6)
        if m["type"] == "scores":  # sent rounded to 6 decimals
            m["top"] = pytest.approx(dict(m["top"]), abs=SCORE_TOLERANCE + 1e-6)
        return m

    # what the audio before the reset produced comes first, then a fresh session's messages
    again = messages[-len(fresh) :]
    assert [m["type"] for m in again] == [m["type"] for m in fresh]
    for m, f in zip(again, fresh, strict=True):
        m = {k: v for k, v in m.items() if k != "latency"}
        if m["type"] == "scores":
            m["top"] = dict(m["top"])
        assert m == comparable(f)


BAD_INPUTS = [
    ("audio before start", [b"\x00\x00"], "not_started", 1008),
    ("reset before start", ['{"type":"reset"}'], "not_started", 1008),
    ("unknown type", ['{"type":"hello"}'], "unknown_type", 1008),
    ("broken json", ['{"type": "start", '], "bad_json", 1007),
    ("json not an object", ["[1,2,3]"], "bad_json", 1007),
    ("missing rate", ['{"type":"start"}'], "invalid_message", 1007),
    ("unsupported rate", ['{"type":"start","sample_rate":4000}'], "unsupported_sample_rate", 1008),
    ("too high rate", ['{"type":"start","sample_rate":96000}'], "unsupported_sample_rate", 1008),
    (
        "unsupported encoding",
        ['{"type":"start","sample_rate":16000,"encoding":"opus"}'],
        "unsupported_encoding",
        1008,
    ),
    (
        "unknown keyword",
        ['{"type":"start","sample_rate":16000,"keywords":["yes"]}'],
        "unknown_keyword",
        1008,
    ),
    (
        "NaN threshold",
        ['{"type":"start","sample_rate":16000,"thresholds":{"low":NaN}}'],
        "invalid_message",
        1007,
    ),
    ("second start", ["START", "START"], "already_started", 1008),
    ("odd byte count", ["START", b"\x00\x01\x02"], "bad_audio", 1007),
    (
        "odd f32 byte count",
        ['{"type":"start","sample_rate":16000,"encoding":"pcm_f32le"}', b"\x00" * 6],
        "bad_audio",
        1007,
    ),
    (
        "NaN samples",
        [
            '{"type":"start","sample_rate":16000,"encoding":"pcm_f32le"}',
            np.array([0.1, np.nan], "<f4").tobytes(),
        ],
        "bad_audio",
        1007,
    ),
    (
        "inf samples",
        [
            '{"type":"start","sample_rate":16000,"encoding":"pcm_f32le"}',
            np.array([np.inf] * 4, "<f4").tobytes(),
        ],
        "bad_audio",
        1007,
    ),
    ("binary too big", ["START", b"\x00" * 70_000], "message_too_big", 1009),
    ("text too big", [json.dumps({"type": "stop", "pad": "x" * 70_000})], "message_too_big", 1009),
]


def test_bad_input_table_never_hurts_another_session(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_sessions=3, max_message_bytes=65536)
    good = sequence(EVENTS[:2], 3.0, seed=5)
    with client.websocket_connect(STREAM_PATH) as reference:
        _, expected = stream_signal(reference, good, 1600)
    with client.websocket_connect(STREAM_PATH) as ws_good:
        ws_good.send_json({"type": "start", "sample_rate": 16000})
        assert ws_good.receive_json()["type"] == "ready"
        half = good.size // 2
        ws_good.send_bytes(encode_pcm(good[:half], "pcm_s16le"))
        for name, sends, code, close_code in BAD_INPUTS:
            with client.websocket_connect(STREAM_PATH) as ws:
                for item in sends:
                    if item == "START":
                        item = '{"type":"start","sample_rate":16000}'
                    if isinstance(item, bytes):
                        ws.send_bytes(item)
                    else:
                        ws.send_text(item)
                message = ws.receive_json()
                if message["type"] == "ready":
                    message = ws.receive_json()
                assert message["type"] == "error" and message["code"] == code, name
                assert message["message"], name
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_text()
                assert closed.value.code == close_code, name
        ws_good.send_bytes(encode_pcm(good[half:], "pcm_s16le"))
        ws_good.send_json({"type": "stop"})
        messages = []
        while not messages or messages[-1]["type"] != "end":
            messages.append(ws_good.receive_json())
    assert detections(messages) == detections(expected)
    assert messages[-1] == expected[-1]
    metrics = client.get("/metrics").text
    assert 'lmukws_errors_total{code="bad_audio"} 4' in metrics
    assert "lmukws_active_sessions 0" in metrics


def test_session_cap_closes_with_1013(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_sessions=2)
    with client.websocket_connect(STREAM_PATH) as a, client.websocket_connect(STREAM_PATH) as b:
        for ws in (a, b):
            ws.send_json({"type": "start", "sample_rate": 16000})
            assert ws.receive_json()["type"] == "ready"
        with client.websocket_connect(STREAM_PATH) as c:
            message = c.receive_json()
            assert message["type"] == "error" and message["code"] == "server_full"
            with pytest.raises(WebSocketDisconnect) as closed:
                c.receive_text()
            assert closed.value.code == 1013
    # slots are free again once the clients left
    with client.websocket_connect(STREAM_PATH) as ws:
        _, messages = stream_signal(ws, sequence([], 0.5), 1600)
    assert messages[-1]["type"] == "end"


def test_idle_timeout(make_client: Callable[..., TestClient]) -> None:
    client = make_client(idle_timeout_s=0.3)
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000})
        assert ws.receive_json()["type"] == "ready"
        message = ws.receive_json()
        assert message["code"] == "idle_timeout"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1008


def test_concurrent_sessions_are_independent(client: TestClient) -> None:
    signals = [sequence(EVENTS[:2], 3.0, seed=10), sequence([("low", 1.5)], 3.0, seed=11)]
    solo = []
    for x in signals:
        with client.websocket_connect(STREAM_PATH) as ws:
            solo.append(stream_signal(ws, x, 1600)[1])
    with client.websocket_connect(STREAM_PATH) as a, client.websocket_connect(STREAM_PATH) as b:
        pair = (a, b)
        for ws in pair:
            ws.send_json({"type": "start", "sample_rate": 16000})
            assert ws.receive_json()["type"] == "ready"
        for i in range(0, signals[0].size, 1600):  # interleaved chunks
            for ws, x in zip(pair, signals, strict=True):
                ws.send_bytes(encode_pcm(x[i : i + 1600], "pcm_s16le"))
        results = []
        for ws in pair:
            ws.send_json({"type": "stop"})
            messages = []
            while not messages or messages[-1]["type"] != "end":
                messages.append(ws.receive_json())
            results.append(messages)
    for got, want in zip(results, solo, strict=True):
        assert detections(got) == detections(want) and got[-1] == want[-1]


def test_wake_word_and_sensitivity_in_start(client: TestClient) -> None:
    """``wake_word`` lets "high" fire only within ``command_window_ms`` after "low" (the
    session's engine process applies it); ``sensitivity`` 0 keeps the tone model silent, and
    with a wake word ``command_sensitivity`` loosens the commands alone (refused without one);
    a wake word that is not a label is refused with ``unknown_keyword``."""
    x = sequence(EVENTS, 6.5)
    found = {}
    for window in (3000, 500):
        with client.websocket_connect(STREAM_PATH) as ws:
            ready, messages = stream_signal(
                ws, x, 1600, start={"wake_word": "low", "command_window_ms": window}
            )
        assert ready["wake_word"] == "low" and ready["command_window_ms"] == window
        found[window] = [k for k, _ in detections(messages)]
    assert found == {3000: ["low", "high", "low"], 500: ["low", "low"]}
    with client.websocket_connect(STREAM_PATH) as ws:
        ready, messages = stream_signal(ws, x, 1600, start={"sensitivity": 0.0})
    assert ready["wake_word"] is None and min(ready["thresholds"].values()) > 0.95
    strict_wake = {"sensitivity": 0.0, "wake_word": "low", "command_sensitivity": 1.0}
    with client.websocket_connect(STREAM_PATH) as ws:
        ready, messages = stream_signal(ws, x, 1600, start=strict_wake)
    assert ready["thresholds"]["low"] > 0.95 and ready["thresholds"]["high"] < 0.05
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000, "command_sensitivity": 1.0})
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "invalid_message"
        assert "command_sensitivity applies to the commands after a wake_word" in error["message"]
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000, "wake_word": "hey"})
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "unknown_keyword"
        assert "hey" in error["message"]
    info = client.get("/v1/model").json()
    assert info["calibrated"] is False and info["operating_points"] == []
    assert info["command_sensitivity"] is None  # commands take the session's sensitivity


def test_the_speech_gate_is_the_server_s_unless_a_session_sets_its_own(
    make_client: Callable[..., TestClient],
) -> None:
    """``ready.speech_gate_ms`` is the gate in force: off by default, the server's
    ``LMUKWS_SPEECH_GATE_MS`` otherwise, and a session's own ``speech_gate_ms`` wins (0: off);
    a negative one is refused with ``invalid_message``. Off or on, the tones are found (the
    tone model's ``_unknown_`` is no stretch of speech before them)."""
    x = sequence(EVENTS, 6.5)
    found = {}
    for settings, start, gate in (({}, {}, 0.0), ({"speech_gate_ms": 1500}, {}, 1500.0),
                                  ({"speech_gate_ms": 1500}, {"speech_gate_ms": 0}, 0.0),
                                  ({}, {"speech_gate_ms": 2000}, 2000.0)):  # fmt: skip
        client = make_client(**settings)
        with client.websocket_connect(STREAM_PATH) as ws:
            ready, messages = stream_signal(ws, x, 1600, start=start)
        assert ready["speech_gate_ms"] == gate, (settings, start)
        assert client.get("/v1/model").json()["speech_gate_ms"] == settings.get("speech_gate_ms", 0)
        found[gate] = [k for k, _ in detections(messages)]
    assert found[0.0] == found[1500.0] == found[2000.0] and found[0.0]
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000, "speech_gate_ms": -1})
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "invalid_message"


def test_the_server_s_command_sensitivity_is_every_wake_word_session_s_default(
    make_client: Callable[..., TestClient],
) -> None:
    """``LMUKWS_COMMAND_SENSITIVITY``: ``/v1/model`` says it, and a session with a wake word
    and no ``command_sensitivity`` of its own puts its commands there (looser than the wake
    word at ``sensitivity`` 0); a session's own value still wins."""
    client = make_client(command_sensitivity=1.0)
    assert client.get("/v1/model").json()["command_sensitivity"] == 1.0
    x = sequence(EVENTS, 6.5)
    strict = {"sensitivity": 0.0, "wake_word": "low"}
    with client.websocket_connect(STREAM_PATH) as ws:
        ready, _ = stream_signal(ws, x, 1600, start=strict)
    assert ready["thresholds"]["low"] > 0.95 and ready["thresholds"]["high"] < 0.05
    with client.websocket_connect(STREAM_PATH) as ws:
        ready, _ = stream_signal(ws, x, 1600, start={**strict, "command_sensitivity": 0.0})
    assert ready["thresholds"]["high"] > 0.95
