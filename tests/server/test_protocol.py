"""Protocol messages: parsing, errors with codes, round trips, PCM helpers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from server import protocol as p


def test_start_defaults_and_round_trip() -> None:
    msg = p.parse_client_message('{"type":"start","sample_rate":44100}')
    assert isinstance(msg, p.StartMessage)
    assert msg.encoding == "pcm_s16le" and msg.scores_every_ms == 0 and msg.keywords is None
    again = p.parse_client_message(p.dump_message(msg))
    assert again == msg


@pytest.mark.parametrize(
    ("text", "code", "match"),
    [
        ("{not json", p.ErrorCode.BAD_JSON, "not valid JSON"),
        ("[1, 2]", p.ErrorCode.BAD_JSON, "JSON object"),
        ('{"type":"hello"}', p.ErrorCode.UNKNOWN_TYPE, "'hello'"),
        ('{"sample_rate":16000}', p.ErrorCode.UNKNOWN_TYPE, "None"),
        ('{"type":"start"}', p.ErrorCode.INVALID_MESSAGE, "sample_rate"),
        ('{"type":"start","sample_rate":4000}', p.ErrorCode.UNSUPPORTED_SAMPLE_RATE, "4000"),
        ('{"type":"start","sample_rate":96000}', p.ErrorCode.UNSUPPORTED_SAMPLE_RATE, "96000"),
        ('{"type":"start","sample_rate":"fast"}', p.ErrorCode.UNSUPPORTED_SAMPLE_RATE, "fast"),
        (
            '{"type":"start","sample_rate":16000,"encoding":"mp3"}',
            p.ErrorCode.UNSUPPORTED_ENCODING,
            "mp3",
        ),
        (
            '{"type":"start","sample_rate":16000,"thresholds":{"yes":NaN}}',
            p.ErrorCode.INVALID_MESSAGE,
            "thresholds",
        ),
        (
            '{"type":"start","sample_rate":16000,"thresholds":{"yes":1.5}}',
            p.ErrorCode.INVALID_MESSAGE,
            "thresholds",
        ),
        ('{"type":"start","sample_rate":16000,"rate":1}', p.ErrorCode.INVALID_MESSAGE, "rate"),
        ('{"type":"stop","now":true}', p.ErrorCode.INVALID_MESSAGE, "now"),
    ],
)
def test_bad_client_messages(text: str, code: p.ErrorCode, match: str) -> None:
    with pytest.raises(p.ProtocolError, match=match) as info:
        p.parse_client_message(text)
    assert info.value.code is code
    assert info.value.close_code in (p.CloseCode.INVALID_DATA, p.CloseCode.POLICY_VIOLATION)


def test_every_error_code_has_a_close_code() -> None:
    assert set(p.ERROR_CLOSE_CODES) == set(p.ErrorCode)
    assert {int(c) for c in p.CloseCode} >= {1001, 1007, 1008, 1009, 1011, 1013}


def test_server_messages_round_trip() -> None:
    messages = [
        p.ReadyMessage(
            session_id="s1",
            model="spiking-lmuformer",
            labels=["yes", "no"],
            sample_rate=16000,
            lookahead_frames=4,
            algorithmic_latency_ms=65.0,
        ),
        p.DetectionMessage(
            keyword="yes",
            score=0.9,
            audio_ms=1230.0,
            latency=p.Latency(algorithmic_ms=65, queue_ms=1, compute_ms=2, server_ms=3.5),
        ),
        p.ScoresMessage(audio_ms=100.0, top=[("yes", 0.5), ("no", 0.25)]),
        p.ErrorMessage(code=p.ErrorCode.SERVER_FULL, message="full"),
        p.EndMessage(audio_ms=10.0, frames=1, detections=0),
    ]
    for message in messages:
        text = p.dump_message(message)
        assert json.loads(text)["type"] == message.type
        assert p.parse_server_message(text) == message
    assert json.loads(p.dump_message(messages[2]))["top"] == [["yes", 0.5], ["no", 0.25]]
    assert json.loads(p.dump_message(messages[3]))["code"] == "server_full"


def test_pcm_round_trip_and_bad_audio() -> None:
    x = np.linspace(-1, 0.99, 101, dtype=np.float32)
    assert np.allclose(p.decode_pcm(p.encode_pcm(x, "pcm_s16le"), "pcm_s16le"), x, atol=1e-4)
    assert np.array_equal(p.decode_pcm(p.encode_pcm(x, "pcm_f32le"), "pcm_f32le"), x)
    with pytest.raises(p.ProtocolError, match="whole number") as info:
        p.decode_pcm(b"\x00\x01\x02", "pcm_s16le")
    assert info.value.close_code == p.CloseCode.INVALID_DATA
    bad = np.array([0.0, np.nan, np.inf], dtype="<f4").tobytes()
    with pytest.raises(p.ProtocolError, match="2 of 3") as info:
        p.decode_pcm(bad, "pcm_f32le")
    assert info.value.code is p.ErrorCode.BAD_AUDIO


def test_protocol_imports_nothing_heavy() -> None:
    code = (
        "import sys, server.protocol; "
        "heavy = [m for m in ('torch', 'fastapi', 'numpy', 'starlette') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
