"""The CLI commands without a model: parsing, output, exit codes, the mic's failure messages,
the live view's state and summary, the healthcheck. Fast; the protocol test server stands in."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from client import cli
from client.commands import exit_code, run_classify, run_stream
from client.errors import ConnectError, ServerClosedError, SessionRefusedError
from client.healthcheck import check, local_url
from client.live import LiveState, _open_session, run_mic
from client.operating_point import operating_point_line
from server.protocol import DetectionMessage, EndMessage, Latency, ReadyMessage, ScoresMessage
from tests.client.conftest import calibrated_copy
from tests.client.protocol_server import ProtocolServer, burst_clip


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def server() -> Iterator[ProtocolServer]:
    server = ProtocolServer()
    yield server
    server.close()


@pytest.fixture
def burst_wav(tmp_path: Path) -> Path:
    path = tmp_path / "burst.wav"
    sf.write(path, burst_clip(rate=32000), 32000)
    return path


def test_importing_the_cli_is_light() -> None:
    code = (
        "import sys, client.cli; "
        "heavy = [m for m in ('torch', 'numpy', 'websockets', 'httpx', 'pydantic', 'rich') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parsing() -> None:
    args = parse("stream", "a.wav", "b.wav", "--keywords", "yes, no", "--threshold", "yes=0.7")
    assert args.files == ["a.wav", "b.wav"] and args.keywords == ["yes", "no"]
    assert args.threshold == [("yes", 0.7)] and not args.realtime and args.url is None
    args = parse("mic", "--local", "--device", "2", "--keywords", "up")
    assert args.local and args.device == "2" and args.keywords == ["up"]
    with pytest.raises(SystemExit):
        parse("mic", "--local", "--url", "ws://x")
    with pytest.raises(SystemExit):
        parse("stream", "a.wav", "--threshold", "yes=2")
    args = parse(
        "mic", "--sensitivity", "0.8", "--wake-word", "marvin", "--command-window-ms", "3000"
    )
    assert (args.sensitivity, args.wake_word, args.command_window_ms) == (0.8, "marvin", 3000)
    with pytest.raises(SystemExit):
        parse("stream", "a.wav", "--sensitivity", "1.5")


def test_stream_sends_sensitivity_and_wake_word_in_start(
    server: ProtocolServer, burst_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour = "normal"
    flags = ("--sensitivity", "0.25", "--wake-word", "yes", "--command-window-ms", "2500",
             "--command-sensitivity", "0.75")  # fmt: skip
    out = io.StringIO()
    gate = ("--speech-gate-ms", "0")
    assert run_stream(parse("stream", str(burst_wav), "--url", server.url, *flags, *gate), out) == 0
    # the wake word's detection is marked as such in the text output
    assert any(
        " yes " in line and "wake word  latency" in line for line in out.getvalue().splitlines()
    )
    start = server.sessions[-1].start
    assert (start.sensitivity, start.wake_word, start.command_window_ms) == (0.25, "yes", 2500)
    assert start.command_sensitivity == 0.75 and start.speech_gate_ms == 0
    sessions = len(server.sessions)
    for without_wake_word in (flags[4:6], flags[6:]):
        args = parse("stream", str(burst_wav), "--url", server.url, *without_wake_word)
        assert run_stream(args, io.StringIO()) == 2
        assert f"{without_wake_word[0]} needs --wake-word" in capsys.readouterr().err
    assert len(server.sessions) == sessions  # refused before connecting


def test_exit_codes() -> None:
    assert exit_code(SessionRefusedError("full")) == cli.EXIT_TEMPFAIL == 75
    assert exit_code(ConnectError("down")) == cli.EXIT_UNAVAILABLE == 69
    assert exit_code(ServerClosedError("closed", 1011)) == cli.EXIT_FAILED == 1
    assert exit_code(FileNotFoundError("x.wav")) == cli.EXIT_USAGE == 2


def test_stream_text_and_json(server: ProtocolServer, burst_wav: Path) -> None:
    server.behaviour = "normal"
    out = io.StringIO()
    args = parse("stream", str(burst_wav), "--url", server.url, "--scores-every-ms", "500")
    assert run_stream(args, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == str(burst_wav)
    assert "model protocol-test" in lines[1] and "32000 Hz" in lines[1]
    assert any("yes" in line and "65 ms algorithmic + 3.5 ms server" in line for line in lines)
    assert not any("wake word" in line for line in lines)
    assert not any("calibrated point" in line for line in lines)  # no GET /v1/model here
    assert lines[-1] == "  end: 1.00 s of audio, 100 frames, 1 detection"

    out = io.StringIO()
    assert run_stream(parse("stream", str(burst_wav), "--url", server.url, "--json"), out) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in records] == ["ready", "detection", "end"]
    assert all(r["file"] == str(burst_wav) for r in records)


def test_stream_failures(
    server: ProtocolServer, burst_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour = "full"
    assert run_stream(parse("stream", str(burst_wav), "--url", server.url), io.StringIO()) == 75
    assert "server is full" in capsys.readouterr().err
    server.behaviour = "normal"
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    out = io.StringIO()
    assert run_stream(parse("stream", str(bad), str(burst_wav), "--url", server.url), out) == 2
    assert "cannot read audio file" in capsys.readouterr().err
    assert "1 detection" in out.getvalue()  # the good file was still streamed
    assert run_stream(parse("stream", str(burst_wav), "--url", "ws://127.0.0.1:9"), out) == 69


def test_classify_rejects_missing_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_classify(parse("classify", "/nonexistent.wav", "--url", "http://x")) == 2
    assert "no such file: /nonexistent.wav" in capsys.readouterr().err


# -- mic failures --------------------------------------------------------------------------------


def fake_sounddevice(devices: list[dict]) -> types.ModuleType:
    module = types.ModuleType("sounddevice")
    module.query_devices = lambda: devices  # type: ignore[attr-defined]
    module.default = types.SimpleNamespace(device=[-1, -1])  # type: ignore[attr-defined]

    def check_input_settings(**kwargs: object) -> None:
        if kwargs["samplerate"] != 44100:
            raise ValueError("Invalid sample rate")

    module.check_input_settings = check_input_settings  # type: ignore[attr-defined]
    return module


def test_mic_without_input_devices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output_only = {"name": "speakers", "max_input_channels": 0, "default_samplerate": 48000.0}
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([output_only]))
    assert run_mic(parse("mic", "--url", "ws://127.0.0.1:9")) == 69
    assert "no audio input device found" in capsys.readouterr().err
    assert run_mic(parse("mic", "--list-devices")) == 69


def test_mic_without_portaudio(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    real_import = builtins.__import__

    def broken(name: str, *args: object, **kwargs: object) -> object:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    assert run_mic(parse("mic", "--local")) == 69
    err = capsys.readouterr().err
    assert "PortAudio is missing" in err and "libportaudio2" in err


def test_mic_without_sounddevice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    assert run_mic(parse("mic", "--list-devices")) == 69
    assert "lmukws[mic]" in capsys.readouterr().err


def test_mic_device_and_rate_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from client.mic import MicrophoneError, choose_rate, resolve_device

    devices = [
        {"name": "hdmi", "max_input_channels": 0, "default_samplerate": 48000.0},
        {"name": "USB Mic", "max_input_channels": 1, "default_samplerate": 96000.0},
    ]
    sd = fake_sounddevice(devices)
    device = resolve_device("usb", sd)
    assert device["index"] == 1 and resolve_device(None, sd)["index"] == 1
    assert choose_rate(device, None, sd) == 44100  # 96 kHz is outside 8-48 kHz
    with pytest.raises(MicrophoneError, match="no input device with index 0"):
        resolve_device("0", sd)
    with pytest.raises(MicrophoneError, match="no input device named like 'webcam'"):
        resolve_device("webcam", sd)
    with pytest.raises(MicrophoneError, match="outside"):
        choose_rate(device, 96000, sd)


# -- live view -----------------------------------------------------------------------------------


def make_state() -> LiveState:
    ready = ReadyMessage(
        session_id="s",
        model="spiking-lmuformer",
        labels=["yes", "no"],
        sample_rate=48000,
        lookahead_frames=4,
        algorithmic_latency_ms=65.0,
        keywords=["yes", "no"],
        thresholds={"yes": 0.5, "no": 0.5},
    )
    return LiveState("ws://h/v1/stream", "default", 48000, ready, started=100.0)


def detection(keyword: str, audio_ms: float) -> DetectionMessage:
    latency = Latency(algorithmic_ms=65.0, queue_ms=1.0, compute_ms=2.0, server_ms=4.0)
    return DetectionMessage(keyword=keyword, score=0.9, audio_ms=audio_ms, latency=latency)


def test_live_state_latency_and_summary() -> None:
    state = make_state()
    for i in range(1, 11):  # ten 100 ms blocks captured at t = 100.1, 100.2, ...
        state.on_block(np.full(4800, 0.1, np.float32))
        state.on_sent(4800 * i, 100.0 + 0.1 * i)
    assert state.level_db == pytest.approx(-20.0, abs=0.01)
    # the sample at 550 ms was captured 50 ms before its block ended at 100.6
    assert state.captured_time(550.0) == pytest.approx(100.55)
    state.on_event(detection("yes", 550.0), now=100.7)
    state.on_event(ScoresMessage(audio_ms=600.0, top=[("yes", 0.8), ("no", 0.1)]))
    state.on_event(detection("yes", 900.0), now=101.0)
    state.on_event(detection("no", 5000.0), now=101.0)  # not sent yet: unknown
    assert [round(d.e2e_ms or -1) for d in state.detections] == [150, 100, -1]
    state.end = EndMessage(audio_ms=1000.0, frames=100, detections=3)
    text = state.summary()
    assert "1.0 s of audio" in text and "48000 Hz" in text
    assert "detections: 3 (yes ×2, no ×1)" in text
    assert "server 4.0/4.0" in text and "end-to-end 125/150" in text
    assert state.summary_dict()["detections"] == {"yes": 2, "no": 1}
    assert "end-to-end 150" in state.detection_line(state.detections[0])
    assert "wake word" not in state.detection_line(state.detections[0])
    # with a wake-word grammar in force, its detections are marked as the wake word's
    state.ready = state.ready.model_copy(update={"wake_word": "yes"})
    assert "yes        0.90  wake word  latency" in state.detection_line(state.detections[0])
    assert "wake word" not in state.detection_line(state.detections[2])


def test_live_view_renders() -> None:
    from rich.console import Console

    state = make_state()
    state.on_block(np.full(480, 0.5, np.float32))
    state.on_sent(480, 1.0)
    state.on_event(ScoresMessage(audio_ms=10.0, top=[("yes", 0.75), ("no", 0.1)]))
    state.on_event(detection("yes", 5.0), now=1.1)
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(state.render())
    text = console.export_text()
    assert "input" in text and "dBFS" in text
    assert "yes" in text and "0.75" in text
    assert "algorithmic" in text and "end-to-end ms" in text and "detections (1)" in text


# -- healthcheck -----------------------------------------------------------------------------------


def test_healthcheck_url_from_environment() -> None:
    assert local_url({}) == "http://127.0.0.1:8000"
    assert local_url({"LMUKWS_HOST": "0.0.0.0", "LMUKWS_PORT": "9000"}) == "http://127.0.0.1:9000"
    assert local_url({"LMUKWS_HOST": "::1"}) == "http://[::1]:8000"
    healthy, detail = check("http://127.0.0.1:9", timeout=1.0)
    assert not healthy and "127.0.0.1:9/healthz" in detail


# -- the operating point --------------------------------------------------------------------------

POINTS = [  # GET /v1/model's operating_points, strict to loose
    {"sensitivity": 0.0, "fa_per_hour": 1.5, "recall": 0.2, "fa_per_hour_by_set": {}},
    {"sensitivity": 0.5, "fa_per_hour": 19.0, "recall": 0.5, "heldout_fa_per_hour": 21.4,
     "heldout_recall": 0.42, "fa_per_hour_by_set": {"negatives/recorded": 9.7}},
    {"sensitivity": 1.0, "fa_per_hour": 88.0, "recall": 0.61},
]  # fmt: skip


def test_the_operating_point_line_is_the_nearest_calibrated_points() -> None:
    """Held-out figures where the calibration has them, the recorded speech apart; nothing
    for an uncalibrated model."""
    assert operating_point_line(POINTS, None) == (
        "sensitivity 0.50: nearest calibrated point (0.50), on the validation streams: "
        "21 false alarms/h (9.7/h on recorded speech), 42 % of keywords found"
    )
    assert operating_point_line(POINTS, 0.9) == (
        "sensitivity 0.90: nearest calibrated point (1.00), on the validation streams: "
        "88 false alarms/h, 61 % of keywords found"
    )
    assert "(0.00)" in operating_point_line(POINTS, 0.2) and "1.5 false alarms/h" in (
        operating_point_line(POINTS, 0.2) or ""
    )
    assert operating_point_line([], 0.5) is None
    state = make_state()
    assert "\n" not in state.header()
    state.operating_point = operating_point_line(POINTS, None)
    first, second = state.header().split("\n")
    assert "algorithmic latency" in first and second.startswith("sensitivity 0.50")


def test_mic_sessions_know_their_operating_point(
    tone_checkpoint: Path, tmp_path: Path, server: ProtocolServer
) -> None:
    """A local engine's calibrated curve gives the line; own thresholds do not (the curve
    does not describe them); a server without GET /v1/model opens the session all the same."""
    calibrated = str(calibrated_copy(tone_checkpoint, tmp_path / "calibrated.safetensors"))

    async def opened(*argv: str) -> str | None:
        session, _, line = await _open_session(parse("mic", *argv), 16000)
        await session.close()
        return line

    line = asyncio.run(opened("--local", "--checkpoint", calibrated, "--sensitivity", "0.9"))
    assert line is not None and line.startswith("sensitivity 0.90: nearest calibrated point (1.00)")
    assert "88 false alarms/h" in line
    own = asyncio.run(opened("--local", "--checkpoint", calibrated, "--threshold", "low=0.7"))
    assert own is None
    assert asyncio.run(opened("--local", "--checkpoint", str(tone_checkpoint))) is None
    assert asyncio.run(opened("--url", server.url)) is None  # the test server has no REST
