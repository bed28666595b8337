"""REST endpoints in process: classify, model, health, metrics, OpenAPI."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from server.protocol import STREAM_PATH, ClassifyResponse, ModelInfo
from tests.server.conftest import stream_signal
from tests.streaming.tone_model import LABELS, sequence


def wav(x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_classify_many_files_any_rate_and_channels(client: TestClient) -> None:
    stereo = np.stack([sequence([("high", 0.3)], 1.0, 44100)] * 2, axis=1)
    files = [
        ("files", ("low.wav", wav(sequence([("low", 0.3)], 1.0)), "audio/wav")),
        ("files", ("high-stereo.wav", wav(stereo, 44100), "audio/wav")),
        ("files", ("silence.wav", wav(sequence([], 1.0), 16000, "FLOAT"), "audio/wav")),
        (
            "files",
            ("long-low.wav", wav(sequence([("low", 2.5)], 4.0, 22050), 22050), "audio/x-wav"),
        ),
    ]
    response = client.post("/v1/classify", files=files)
    assert response.status_code == 200, response.text
    body = ClassifyResponse.model_validate(response.json())
    assert body.model == "lmuformer"
    assert [r.label for r in body.results] == ["low", "high", "_silence_", "low"]
    first = body.results[0]
    assert first.filename == "low.wav" and first.duration_s == 1.0 and first.channels == 1
    assert len(first.top) == len(LABELS) and first.top[0] == (first.label, first.score)
    assert body.results[1].channels == 2 and body.results[1].sample_rate == 44100
    assert body.results[3].duration_s == 4.0


@pytest.mark.parametrize(
    ("name", "data", "status", "match"),
    [
        ("notes.txt", b"hello, this is not audio", 415, "not a readable audio file"),
        ("empty.wav", wav(np.zeros(0, np.float32)), 422, "has no samples"),
        ("nan.wav", wav(np.array([0.0, np.nan] * 100, np.float32), subtype="FLOAT"), 422, "NaN"),
        ("slow.wav", wav(np.zeros(100, np.float32), 2000), 422, "sample rate 2000"),
    ],
    ids=["not-audio", "empty", "nan", "bad-rate"],
)
def test_classify_bad_files_name_the_file(
    client: TestClient, name: str, data: bytes, status: int, match: str
) -> None:
    good = ("files", ("good.wav", wav(sequence([], 1.0)), "audio/wav"))
    response = client.post("/v1/classify", files=[good, ("files", (name, data, "audio/wav"))])
    assert response.status_code == status
    detail = response.json()["detail"]
    assert name in detail and match in detail


def test_classify_limits(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_upload_bytes=100_000, max_upload_seconds=2.0, max_upload_files=2)
    big = ("files", ("big.wav", wav(np.zeros(80_000, np.float32)), "audio/wav"))
    response = client.post("/v1/classify", files=[big])
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]
    long = ("files", ("long.wav", wav(np.zeros(48_000, np.float32)), "audio/wav"))
    response = client.post("/v1/classify", files=[long])
    assert response.status_code == 422 and "long.wav" in response.json()["detail"]
    one = ("files", ("a.wav", wav(np.zeros(1600, np.float32)), "audio/wav"))
    response = client.post("/v1/classify", files=[one, one, one])
    assert response.status_code == 413 and "3 files" in response.json()["detail"]
    assert client.post("/v1/classify").status_code == 422  # no files at all


def test_model_endpoint(client: TestClient) -> None:
    info = ModelInfo.model_validate(client.get("/v1/model").json())
    assert info.name == "lmuformer" and info.labels == LABELS
    assert info.keywords == ["low", "high"] and info.thresholds == {"low": 0.5, "high": 0.5}
    assert info.parameters > 1000 and info.lookahead_frames >= 1
    assert info.algorithmic_latency_ms == 25 + 10 * info.lookahead_frames
    # the default runtime "auto" on the CPU, in each engine process (torch until a cold cache's
    # background export is in: the children then say so)
    deadline = time.monotonic() + 300
    while info.runtime != "onnx" and time.monotonic() < deadline:
        time.sleep(0.2)
        info = ModelInfo.model_validate(client.get("/v1/model").json())
    assert info.runtime == "onnx"
    # the server's own engine, in front of the engine processes, never steps: no ONNX export
    service = client.app.state.service  # type: ignore[attr-defined]
    assert service.settings.engine_processes > 0 and service.engine.runtime == "torch"
    assert info.checkpoint and info.checkpoint.endswith(".safetensors")
    assert info.metadata["training"]["data"].startswith("synthetic tone")


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


def test_metrics_exposition(client: TestClient) -> None:
    with client.websocket_connect(STREAM_PATH) as ws:
        _, messages = stream_signal(ws, sequence([("low", 0.3)], 1.5), 1600)
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in text.text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    assert values["lmukws_frames_total"] == messages[-1]["frames"] == 148
    assert values['lmukws_detections_total{keyword="low"}'] == 1
    assert values["lmukws_detection_server_latency_seconds_count"] == 1
    assert values["lmukws_active_sessions"] == 0 and values["lmukws_sessions_total"] == 1
    assert values['lmukws_batch_size_bucket{le="+Inf"}'] == values["lmukws_batch_size_count"]
    assert values["lmukws_queue_wait_seconds_count"] > 0
    assert values["lmukws_step_compute_seconds_sum"] > 0
    assert values["lmukws_audio_seconds_total"] == pytest.approx(1.5)
    for name in ("lmukws_frame_compute_seconds", "lmukws_errors_total"):
        assert f"# TYPE {name}" in text.text


def test_browser_demo_is_served_when_present(client: TestClient) -> None:
    from server.app import STATIC_DIR

    if not (STATIC_DIR / "index.html").is_file():
        pytest.skip("no browser demo in server/static")
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/static/index.html").status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_model_endpoint_names_the_torch_runtime(make_client) -> None:
    client = make_client(runtime="torch", engine_processes=0)
    assert ModelInfo.model_validate(client.get("/v1/model").json()).runtime == "torch"
