"""Settings, checkpoint defaults, the serve command's errors and engine failures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from models.config import DEFAULT_MODEL
from server.app import engine_config
from server.protocol import STREAM_PATH, encode_pcm
from server.settings import Settings
from tests.server.conftest import stream_signal
from tests.streaming.tone_model import sequence

META = {"labels": ["yes", "no", "_unknown_", "_silence_"], "features": {"frame_shift_ms": 10.0}}


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMUKWS_PORT", "9123")
    monkeypatch.setenv("LMUKWS_MAX_SESSIONS", "7")
    settings = Settings()
    assert settings.port == 9123 and settings.max_sessions == 7
    assert settings.model == DEFAULT_MODEL and settings.checkpoint is None
    assert settings.host == "127.0.0.1"


def test_checkpoint_detector_defaults_unless_set_explicitly() -> None:
    meta = {
        **META,
        "detector": {"thresholds": {"yes": 0.7}, "no": 0.6, "refractory_ms": 500, "threshold": 0.4},
    }
    config = engine_config(Settings(), meta)
    assert dict(config.thresholds) == {"yes": 0.7, "no": 0.6}
    assert config.refractory_frames == 50 and config.threshold == 0.4
    assert config.pooling_frames == 100 and config.warmup_frames == 30
    explicit = engine_config(Settings(refractory_ms=2000, threshold=0.55), meta)
    assert explicit.refractory_frames == 200 and explicit.threshold == 0.55


@pytest.mark.slow
def test_serve_reports_a_missing_checkpoint_cleanly(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    out = subprocess.run(
        [sys.executable, "-m", "lmukws", "serve", "--checkpoint", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert f"checkpoint not found: {missing}" in out.stderr and "Traceback" not in out.stderr


def test_engine_failure_closes_1011_and_the_server_survives(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    model = client.app.state.service.engine.model  # type: ignore[attr-defined]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated kernel failure")

    model.stream_frames = broken
    try:
        with client.websocket_connect(STREAM_PATH) as ws:
            ws.send_json({"type": "start", "sample_rate": 16000})
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(encode_pcm(sequence([], 0.5), "pcm_s16le"))
            message = ws.receive_json()
            assert message["code"] == "internal_error" and "simulated" in message["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1011
    finally:
        del model.stream_frames
    with client.websocket_connect(STREAM_PATH) as ws:
        _, messages = stream_signal(ws, sequence([("low", 0.3)], 1.5), 1600)
    assert [m["keyword"] for m in messages if m["type"] == "detection"] == ["low"]
