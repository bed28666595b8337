"""POST /v1/classify in its own low-priority worker process beside the engine processes (issue
18): the same posteriors as in process, a niced child that is not the server, a dead worker
answered with 503 and replaced, the worker stopped with the server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from server.app import create_app
from server.protocol import ClassifyResult
from server.routes.classify import decode_audio
from server.settings import Settings
from streaming.classify_process import ClassifyWorker
from tests.server.test_rest import wav
from tests.server.test_rest_budget import metric
from tests.streaming.tone_model import sequence

SIGNALS = [
    ("low.wav", sequence([("low", 0.3)], 1.0), 16000),
    ("high-44k.wav", sequence([("high", 0.3)], 1.0, 44100), 44100),
    ("long.wav", sequence([("low", 2.5)], 4.0, 22050), 22050),
    ("silence.wav", sequence([], 0.5), 16000),
]


def upload() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, wav(x, rate), "audio/wav")) for name, x, rate in SIGNALS]


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_classification_runs_in_a_niced_worker_with_the_in_process_posteriors(
    tone_checkpoint: Path,
) -> None:
    settings = Settings(checkpoint=tone_checkpoint, torch_threads=1, engine_processes=1)
    with TestClient(create_app(settings)) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        worker = service.classifier
        assert isinstance(worker, ClassifyWorker)
        response = client.post("/v1/classify", files=upload())
        assert response.status_code == 200, response.text
        pid = worker.pid
        assert pid is not None and pid != os.getpid() and pid not in service.sessions.pids
        assert Path(f"/proc/{pid}").exists()
        server_nice = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) >= server_nice + 10
        # the same posteriors as the server's own engine gives in process, on the same samples
        decoded = [decode_audio(name, data, 60.0) for _, (name, data, _) in upload()]
        clips = [samples for samples, _, _ in decoded]
        rates = [rate for _, rate, _ in decoded]
        remote = client.portal.call(worker.classify, clips, rates)  # type: ignore[union-attr]
        local = service.engine.classify(clips, rates)
        for r, loc in zip(remote, local, strict=True):
            np.testing.assert_allclose(r, loc, rtol=0, atol=1e-5)
        labels = service.engine.labels
        for result, p, (name, x, rate) in zip(
            response.json()["results"], local, SIGNALS, strict=True
        ):
            expected = ClassifyResult.from_posteriors(
                name, p, labels, duration_s=x.size / rate, sample_rate=rate, channels=1
            )
            assert result["label"] == expected.label and result["filename"] == name
            assert abs(result["score"] - expected.score) <= 1e-5
        assert metric(client, "lmukws_classify_files_total") == len(SIGNALS)
    assert gone(pid), "the worker outlived the server's shutdown"


def test_a_dead_worker_gives_503_and_the_next_request_a_new_one(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(engine_processes=1)
    worker = client.app.state.service.classifier  # type: ignore[attr-defined]
    first = client.portal.call(worker.ready)  # type: ignore[union-attr]
    os.kill(first, signal.SIGKILL)
    response = client.post("/v1/classify", files=upload()[:1])
    assert response.status_code == 503
    assert response.json() == {"detail": "the classification worker exited; retry"}
    assert metric(client, 'lmukws_errors_total{code="classify_worker_exited"}') == 1
    response = client.post("/v1/classify", files=upload())
    assert response.status_code == 200, response.text
    assert [r["label"] for r in response.json()["results"]][:2] == ["low", "high"]
    assert worker.pid is not None and worker.pid != first
    assert client.get("/readyz").status_code == 200  # the engines never noticed


def test_the_worker_settings_are_serve_flags() -> None:
    import argparse

    from server.cli import SERVE_FLAGS, add_settings_arguments

    names = ("classify_process", "classify_nice", "classify_threads")
    for name in names:
        assert name in SERVE_FLAGS and Settings.model_fields[name].description, name
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, names)
    args = parser.parse_args(["--classify-process", "false", "--classify-nice", "0"])
    settings = Settings(classify_process=args.classify_process, classify_nice=args.classify_nice)
    assert settings.classify_process is False and settings.classify_nice == 0
    assert Settings().classify_threads == 1
