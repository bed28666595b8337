"""POST /v1/classify under its limits (issue 18): a chunked body over the size limit gets the
documented 413 and is counted; the audio budget per request; decoding in bounded batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from server.routes import classify
from server.routes.classify import batches
from tests.server.test_rest import wav
from tests.streaming.tone_model import sequence


def metric(client: TestClient, line: str) -> float:
    for row in client.get("/metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def test_a_chunked_upload_over_the_limit_gets_413_and_is_counted(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_upload_bytes=100_000, engine_processes=0)
    boundary = "lmukws-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    payload = wav(np.zeros(80_000, np.float32))

    def chunked() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        yield head
        for i in range(0, len(payload), 8192):
            yield payload[i : i + 8192]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/classify",
        content=chunked(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is over the upload limit of 100000 bytes"}
    assert metric(client, 'lmukws_errors_total{code="upload_too_large"}') == 1
    # by Content-Length too, counted the same way
    files = [("files", ("big.wav", payload, "audio/wav"))]
    assert client.post("/v1/classify", files=files).status_code == 413
    assert metric(client, 'lmukws_errors_total{code="upload_too_large"}') == 2


def test_the_audio_budget_per_request_names_the_limit(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_request_audio_s=5.0, engine_processes=0)
    two = ("files", ("two.wav", wav(sequence([], 2.0)), "audio/wav"))
    response = client.post("/v1/classify", files=[two, two, two])
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "6.0 s of audio" in detail and "5 s (max_request_audio_s)" in detail
    assert metric(client, 'lmukws_errors_total{code="upload_too_large"}') == 1
    assert metric(client, "lmukws_classify_files_total") == 0  # refused before decoding
    assert client.post("/v1/classify", files=[two, two]).status_code == 200


def test_files_are_decoded_and_classified_in_bounded_batches(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert batches([1.0, 1.0, 1.0, 5.0, 0.5], 2.5) == [[0, 1], [2], [3], [4]]
    client = make_client(classify_batch_s=2.5, engine_processes=0)
    assert client.app.state.service.classifier is None  # type: ignore[attr-defined]
    engine = client.app.state.service.engine  # type: ignore[attr-defined]
    seen: list[float] = []
    original = engine.classify

    def spy(clips: list, rates: list) -> list:
        seen.append(sum(c.size / r for c, r in zip(clips, rates, strict=True)))
        return original(clips, rates)

    monkeypatch.setattr(engine, "classify", spy)
    files = [
        ("files", (f"{i}.wav", wav(sequence([("low", 0.3)], 1.0, seed=i)), "audio/wav"))
        for i in range(5)
    ]
    response = client.post("/v1/classify", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == [f"{i}.wav" for i in range(5)]
    assert all(r["label"] == "low" for r in results)
    assert seen == [2.0, 2.0, 1.0]
    assert metric(client, "lmukws_classify_files_total") == 5
    assert classify.MIN_RATE <= 16000 <= classify.MAX_RATE
