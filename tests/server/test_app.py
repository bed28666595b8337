"""Settings, checkpoint defaults, the serve command's errors and engine failures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from models.config import DEFAULT_MODEL
from server.app import create_app
from server.loading import engine_config
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
    assert config.command_sensitivity is None  # commands take the session's sensitivity
    with_commands = {**meta, "detector": {**meta["detector"], "command_sensitivity": 0.9}}
    assert engine_config(Settings(), with_commands).command_sensitivity == 0.9
    looser = engine_config(Settings(command_sensitivity=1.0), with_commands)
    assert looser.command_sensitivity == 1.0


def test_the_speech_gate_comes_from_the_checkpoint_unless_set_explicitly() -> None:
    meta = {**META, "detector": {"speech_gate_frames": 150}}
    config = engine_config(Settings(), meta)
    assert (config.speech_gate_frames, config.speech_gate_recent_frames) == (150, 100)
    assert engine_config(Settings(), META).speech_gate_frames == 0  # off unless calibrated on
    off = engine_config(Settings(speech_gate_ms=0, speech_gate_recent_ms=500), meta)
    assert (off.speech_gate_frames, off.speech_gate_recent_frames) == (0, 50)


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


def test_serve_spiking_lmu_from_a_checkpoint(
    random_spiking_lmu_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lmukws serve --model spiking-lmu --checkpoint X`` loads the checkpoint and streams
    through it (no trained spiking-lmu is shipped yet: a random one stands in)."""
    import server.serve
    from lmukws.cli import main
    from models import load_checkpoint

    served: list[Settings] = []
    monkeypatch.setattr(server.serve, "serve", lambda settings: served.append(settings) or 0)
    args = ["serve", "--model", "spiking-lmu", "--checkpoint", str(random_spiking_lmu_checkpoint)]
    args += ["--engine-processes", "0", "--runtime", "torch", "--torch-threads", "1"]
    assert main([*args, "--classify-process", "false"]) == 0
    (settings,) = served
    model, _ = load_checkpoint(random_spiking_lmu_checkpoint)
    with TestClient(create_app(settings)) as client:
        info = client.get("/v1/model").json()
        assert info["name"] == "spiking-lmu"
        assert info["lookahead_frames"] == model.lookahead_frames
        assert info["parameters"] == sum(p.numel() for p in model.parameters())
        with client.websocket_connect(STREAM_PATH) as ws:
            ready, messages = stream_signal(ws, sequence([("low", 0.3)], 1.0), 1600)
    assert ready["model"] == "spiking-lmu" and ready["labels"] == info["labels"]
    assert messages[-1]["type"] == "end" and messages[-1]["frames"] == 98


def test_serve_names_a_model_without_a_shipped_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--model spiking-lmu`` with no checkpoint named and none shipped (none is, until one
    is trained; an empty checkpoint folder keeps this true): a one-line error, status 2."""
    import models.checkpoint
    from lmukws.cli import main

    monkeypatch.setattr(models.checkpoint, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.delenv("LMUKWS_CHECKPOINT", raising=False)
    assert main(["serve", "--model", "spiking-lmu"]) == 2
    err = capsys.readouterr().err
    assert "no shipped checkpoint for spiking-lmu" in err and "--checkpoint" in err
    assert "Traceback" not in err


def test_serve_spiking_attention_from_a_checkpoint_by_window_recompute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window model serves by recomputing its window every hop (streaming.window): a random
    tiny spiking-attention checkpoint streams through ``lmukws serve --window-hop-ms 50``, and
    ``/v1/model`` says it is not streaming, with its window, hop and algorithmic latency."""
    import server.serve
    from lmukws.cli import main
    from models import build_model, save_checkpoint

    served: list[Settings] = []
    monkeypatch.setattr(server.serve, "serve", lambda settings: served.append(settings) or 0)
    model = build_model("spiking-attention", dim=16, num_classes=4, num_heads=4, window=32)
    path = save_checkpoint(tmp_path / "attention.safetensors", model, {"labels": META["labels"]})
    args = ["serve", "--checkpoint", str(path), "--window-hop-ms", "50"]
    args += ["--engine-processes", "0", "--torch-threads", "1", "--classify-process", "false"]
    assert main(args) == 0
    (settings,) = served
    with TestClient(create_app(settings)) as client:
        info = client.get("/v1/model").json()
        with client.websocket_connect(STREAM_PATH) as ws:
            ready, messages = stream_signal(ws, sequence([("low", 0.3)], 1.0), 1600)
    assert info["name"] == "spiking-attention" and info["streaming"] is False
    assert info["model_window_ms"] == 320.0 and info["hop_ms"] == 50.0
    assert info["lookahead_frames"] == 0
    # a keyword ending just after a hop waits 4 frames for the next: 25 + 4 x 10 ms
    assert info["algorithmic_latency_ms"] == 65.0 == ready["algorithmic_latency_ms"]
    assert messages[-1]["type"] == "end" and messages[-1]["frames"] == 98


def test_serve_names_a_window_model_without_a_shipped_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import models.checkpoint
    from lmukws.cli import main

    monkeypatch.setattr(models.checkpoint, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.delenv("LMUKWS_CHECKPOINT", raising=False)
    assert main(["serve", "--model", "spiking-attention"]) == 2
    err = capsys.readouterr().err
    assert "no shipped checkpoint for spiking-attention" in err and "Traceback" not in err


def test_engine_failure_closes_1011_and_the_server_survives(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(engine_processes=0)  # the model to break lives in this process
    runtime = client.app.state.service.engine.step.runtime  # type: ignore[attr-defined]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated kernel failure")

    runtime.stream_leaves = broken
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
        del runtime.stream_leaves
    with client.websocket_connect(STREAM_PATH) as ws:
        _, messages = stream_signal(ws, sequence([("low", 0.3)], 1.5), 1600)
    assert [m["keyword"] for m in messages if m["type"] == "detection"] == ["low"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_a_dead_engine_process_fails_its_sessions_1011_and_is_replaced(
    make_client: Callable[..., TestClient],
) -> None:
    """kill -9: its session closes 1011, /readyz says "engine restarting" until a new process
    serves; with no process able to start, /healthz fails (Docker's HEALTHCHECK restarts)."""
    client = make_client(engine_processes=2)
    service = client.app.state.service  # type: ignore[attr-defined]
    pool = service.sessions
    assert client.get("/readyz").json()["engines"] == 2
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000})
        assert ws.receive_json()["type"] == "ready"  # the first session goes to process 0
        dead = pool.pids[0]
        os.kill(dead, signal.SIGKILL)
        message = ws.receive_json()
        assert message["code"] == "internal_error" and "engine process" in message["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1011
    wait_for(lambda: client.get("/readyz").status_code == 200, 60, "replaced")
    ready = client.get("/readyz").json()
    assert ready["engines"] == ready["engines_total"] == 2 and dead not in pool.pids
    assert not Path(f"/proc/{dead}").exists()  # reaped, no zombie
    with client.websocket_connect(STREAM_PATH) as ws:
        _, messages = stream_signal(ws, sequence([("low", 0.3)], 1.5), 1600)
    assert [m["keyword"] for m in messages if m["type"] == "detection"] == ["low"]
    pool.checkpoint = Path("/nonexistent/model.safetensors")  # replacements cannot start
    for pid in pool.pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: client.get("/readyz").json()["status"] == "engine restarting", 30, "retry")
    assert client.get("/healthz").status_code == 503
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000})
        refused = ws.receive_json()
        assert refused["code"] == "server_full" and "no engine process" in refused["message"]
    # the supervisor counts each death on its next tick (every 0.5 s), which may come after
    # /healthz already sees both children gone
    counted = 'lmukws_engine_restarts_total{reason="exited"} 3'
    wait_for(lambda: counted in client.get("/metrics").text, 10, "both deaths counted")
    assert "lmukws_engines_live 0" in client.get("/metrics").text


def test_a_hung_engine_process_is_replaced_and_its_sessions_closed_1011(
    make_client: Callable[..., TestClient],
) -> None:
    """SIGSTOP: after ``engine_heartbeat_timeout_s`` the process is killed and replaced; its
    session gets internal_error "stopped responding" and 1011; new sessions go elsewhere."""
    client = make_client(engine_processes=2, engine_heartbeat_timeout_s=2.0)
    pool = client.app.state.service.sessions  # type: ignore[attr-defined]
    with client.websocket_connect(STREAM_PATH) as ws:
        ws.send_json({"type": "start", "sample_rate": 16000})
        assert ws.receive_json()["type"] == "ready"
        hung = pool.pids[0]
        os.kill(hung, signal.SIGSTOP)
        try:
            message = ws.receive_json()
            assert message["code"] == "internal_error"
            assert "stopped responding" in message["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1011
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung, signal.SIGCONT)
    wait_for(lambda: client.get("/readyz").status_code == 200, 60, "replaced")
    assert hung not in pool.pids
    assert 'lmukws_engine_restarts_total{reason="hung"} 1' in client.get("/metrics").text


def test_serving_freezes_the_startup_heap_and_gives_it_back(tone_checkpoint: Path) -> None:
    """After startup a full collection no longer walks the startup heap (torch, the model, the
    web stack); shutdown unfreezes it, so an embedding process keeps its ordinary collector."""
    import gc

    from server.app import create_app

    gc.unfreeze()  # whatever an earlier test left
    assert gc.get_freeze_count() == 0
    settings = Settings(checkpoint=tone_checkpoint, torch_threads=1, engine_processes=0)
    with TestClient(create_app(settings)) as client:
        assert gc.get_freeze_count() > 10_000
        assert client.get("/readyz").status_code == 200
    assert gc.get_freeze_count() == 0


def test_freeze_startup_heap_moves_live_objects_to_the_permanent_generation() -> None:
    import gc

    from streaming.process import freeze_startup_heap

    kept = [object() for _ in range(1000)]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
