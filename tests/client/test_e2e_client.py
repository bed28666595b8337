"""The client, the CLI and the microphone demo against a real ``lmukws serve`` (tone model).

The tone model (tests/streaming/tone_model.py) fires ``low`` on a 440 Hz burst and ``high`` on
a 2 kHz burst, so every test knows which detections must come and roughly when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from client import errors
from client.stream import connect, detect
from client.sync import Client
from tests.client.conftest import MAX_SESSIONS, write_tones
from tests.client.live_server import LiveServer
from tests.client.virtual_mic import VirtualMic, keywords_of, run_mic
from tests.streaming.tone_model import sequence

pytestmark = pytest.mark.slow

LMUKWS = [sys.executable, "-m", "lmukws"]


def test_stream_cli_json(live_server: LiveServer, tones_wav: Path) -> None:
    result = subprocess.run(
        [*LMUKWS, "stream", str(tones_wav), "--url", live_server.ws, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["type"] == "ready" and records[0]["sample_rate"] == 44100
    assert keywords_of(records) == ["low", "high"]
    times = [r["audio_ms"] for r in records if r["type"] == "detection"]
    assert 500 < times[0] < 1000 and 2000 < times[1] < 2500
    for r in records:
        if r["type"] == "detection":
            latency = r["latency"]
            assert latency["algorithmic_ms"] == records[0]["algorithmic_latency_ms"]
            assert 0 <= latency["compute_ms"] <= latency["server_ms"]
    assert records[-1]["type"] == "end" and records[-1]["detections"] == 2
    assert records[-1]["audio_ms"] == pytest.approx(3000.0, abs=1.0)


def test_stream_cli_text_realtime(live_server: LiveServer, tmp_path: Path) -> None:
    short = write_tones(tmp_path / "tones.wav", 16000, 1, total_s=2.6)
    t0 = time.monotonic()
    result = subprocess.run(
        [*LMUKWS, "stream", str(short), "--url", live_server.http, "--realtime"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - t0 >= 2.6
    lines = result.stdout.splitlines()
    assert lines[0] == str(short) and "algorithmic latency" in lines[1]
    assert [line.split()[2] for line in lines if " low " in line or " high " in line] == [
        "low",
        "high",
    ]
    assert "2 detections" in lines[-1]


def test_classify_remote_equals_in_process(
    live_server: LiveServer, tones_wav: Path, tone_checkpoint: Path, tmp_path: Path
) -> None:
    low = tmp_path / "low.wav"
    sf.write(low, sequence([("low", 0.3)], 1.0, rate=22050), 22050)
    files = [str(tones_wav), str(low)]
    remote = subprocess.run(
        [*LMUKWS, "classify", *files, "--url", live_server.http, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    local = subprocess.run(
        [*LMUKWS, "classify", *files, "--checkpoint", str(tone_checkpoint), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    a = [json.loads(line) for line in remote.stdout.splitlines()]
    b = [json.loads(line) for line in local.stdout.splitlines()]
    assert [r["filename"] for r in a] == ["tones-44k-stereo.wav", "low.wav"]
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert a[1]["label"] == "low"
    for x, y in zip(a, b, strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=1e-4)
        assert (x["duration_s"], x["sample_rate"], x["channels"]) == (
            y["duration_s"],
            y["sample_rate"],
            y["channels"],
        )


def test_sync_client(live_server: LiveServer, tones_wav: Path) -> None:
    with Client(live_server.http) as client:
        assert client.ready()
        info = client.model()
        assert info.labels == ["low", "high", "_unknown_", "_silence_"]
        result = client.detect_file(tones_wav, scores_every_ms=250, keywords=["high"])
        assert [d.keyword for d in result.detections] == ["high"]
        assert result.ready.keywords == ["high"]
        gaps = np.diff([s.audio_ms for s in result.scores])
        assert len(result.scores) >= 10 and np.allclose(gaps, 250.0, atol=10.0)
        (one,) = client.classify([tones_wav])
        assert one.label in info.labels


def test_session_reset_and_unknown_keyword(live_server: LiveServer) -> None:
    x = sequence([("low", 0.5)], 1.5)

    async def main() -> tuple[list[str], float]:
        async with connect(live_server.ws, sample_rate=16000) as session:
            await session.send_audio(x)
            await session.reset()
            await session.send_audio(x)
            end = await session.finish()
            return [e.keyword for e in session.poll() if e.type == "detection"], end.audio_ms

    keywords, audio_ms = asyncio.run(main())
    assert keywords == ["low", "low"] and audio_ms == pytest.approx(1500.0)
    with pytest.raises(errors.ServerClosedError, match="unknown_keyword") as caught:
        asyncio.run(detect(live_server.ws, x, 16000, keywords=["banana"]))
    assert caught.value.close_code == 1008


def test_full_server_refuses_with_exit_75(live_server: LiveServer, tones_wav: Path) -> None:
    async def hold_all() -> None:
        sessions = [await connect(live_server.ws) for _ in range(MAX_SESSIONS)]
        try:
            with pytest.raises(errors.SessionRefusedError, match="full"):
                await connect(live_server.ws)
            result = await asyncio.to_thread(
                subprocess.run,
                [*LMUKWS, "stream", str(tones_wav), "--url", live_server.ws],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 75, result.stderr
            assert "full" in result.stderr
        finally:
            for session in sessions:
                await session.close()

    asyncio.run(hold_all())


# -- the microphone demo, headless ---------------------------------------------------------------


@pytest.fixture(scope="module")
def virtual_mic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualMic]:
    try:
        mic = VirtualMic(tmp_path_factory.mktemp("pulse"))
    except RuntimeError as error:
        if "are needed" in str(error):
            pytest.skip(str(error))
        raise
    yield mic
    mic.close()


def test_mic_list_devices(virtual_mic: VirtualMic) -> None:
    result = subprocess.run(
        [*LMUKWS, "mic", "--list-devices"],
        env=virtual_mic.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout or "pulse" in result.stdout


def test_mic_over_server(virtual_mic: VirtualMic, live_server: LiveServer, tmp_path: Path) -> None:
    wav = write_tones(tmp_path / "mic.wav", 16000, 1)
    records, _ = run_mic(virtual_mic, wav, "--url", live_server.ws, server=live_server)
    ready = records[0]
    assert 8000 <= ready["sample_rate"] <= 48000  # the device's own rate, announced
    assert keywords_of(records) == ["low", "high"]
    for r in records:
        if r["type"] == "detection":
            # end-to-end (capture to shown) includes the look-ahead wait and the server time
            assert r["e2e_ms"] is not None and r["e2e_ms"] >= r["latency"]["server_ms"]
            assert r["e2e_ms"] < 2000, "the capture loop fell behind the microphone"
    end = next(r for r in records if r["type"] == "end")
    summary = records[-1]
    assert summary["type"] == "summary" and summary["detections"] == {"low": 1, "high": 1}
    assert end["detections"] == 2 and summary["audio_s"] >= 2.9


def test_mic_local_engine(virtual_mic: VirtualMic, tone_checkpoint: Path, tmp_path: Path) -> None:
    wav = write_tones(tmp_path / "mic.wav", 22050, 2)
    records, _ = run_mic(virtual_mic, wav, "--local", "--checkpoint", str(tone_checkpoint))
    assert records[0]["model"] == "lmuformer"
    assert keywords_of(records) == ["low", "high"]
    assert records[-1]["detections"] == {"low": 1, "high": 1}


def test_mic_plain_output_and_summary(
    virtual_mic: VirtualMic, live_server: LiveServer, tmp_path: Path
) -> None:
    wav = tmp_path / "low.wav"
    sf.write(wav, sequence([("low", 0.3)], 1.2), 16000, subtype="PCM_16")
    noise = virtual_mic.room_noise()
    since = live_server.audio_seconds()
    process = subprocess.Popen(
        [*LMUKWS, "mic", "--url", live_server.http, "--duration", "30", "--keywords", "low"],
        env=virtual_mic.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    header = process.stdout.readline()  # type: ignore[union-attr]
    assert "algorithmic latency" in header, process.communicate(timeout=30)[1]
    live_server.wait_for_audio(since)  # the capture runs (it can start seconds after the header)
    virtual_mic.play(wav)
    # stop once the detection is printed (the virtual source can lag seconds behind paplay on a
    # loaded machine), or after 20 s
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout],
        daemon=True,  # type: ignore[union-attr]
    )
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(" low " in line for line in seen):
        with contextlib.suppress(queue.Empty):
            seen.append(lines.get(timeout=0.2))
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    reader.join(10)  # the reader owns stdout up to its end
    err = process.stderr.read()  # type: ignore[union-attr]
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    noise.terminate()
    noise.wait()
    assert process.returncode == 0, err
    assert " low " in out and "end-to-end" in out
    assert "session summary" in out and "detections: 1 (low ×1)" in out


def test_e2e_numpy_array(live_server: LiveServer) -> None:
    x = sequence([("high", 0.4)], 1.2, rate=24000)
    result = asyncio.run(detect(live_server.ws, (x * 32767).astype(np.int16), 24000))
    assert [d.keyword for d in result.detections] == ["high"]


def test_mic_live_view_in_a_terminal(
    virtual_mic: VirtualMic, live_server: LiveServer, tmp_path: Path
) -> None:
    """On a terminal the rich view refreshes in place; Ctrl-C prints the session summary."""
    import pty
    import re
    import select
    import threading

    wav = write_tones(tmp_path / "mic.wav", 16000, 1)
    master, slave = pty.openpty()
    env = {**virtual_mic.env, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    noise = virtual_mic.room_noise()
    since = live_server.audio_seconds()
    process = subprocess.Popen(
        [*LMUKWS, "mic", "--url", live_server.ws],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    chunks: list[bytes] = []
    done = threading.Event()

    def read() -> None:  # keep the terminal drained, as a real one is
        while not done.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunks.append(os.read(master, 65536))
                except OSError:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while b"top posteriors" not in b"".join(chunks):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.1)
        live_server.wait_for_audio(since)
        virtual_mic.play(wav)
        time.sleep(0.8)
        process.send_signal(signal.SIGINT)
        process.wait(60)
    finally:
        done.set()
        reader.join(5)
        os.close(master)
        noise.terminate()
        noise.wait()
        if process.poll() is None:
            process.kill()
            process.wait()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert process.returncode == 0, process.stderr.read()  # type: ignore[union-attr]
    assert "input" in text and "dBFS" in text and "end-to-end ms" in text
    assert "detections (2)" in text
    summary = text[text.index("session summary") :]
    assert "detections: 2 (low ×1, high ×1)" in summary and "end-to-end" in summary
