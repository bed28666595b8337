"""The shipped default checkpoint hears a spoken keyword: classify in-process, stream to a real
server that serves its default model, and the headless microphone demo. Speech comes from
espeak-ng (one of the corpus's synthesisers). Skipped until models/checkpoints/ ships the model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.config import DEFAULT_MODEL
from tests.client.live_server import LiveServer
from tests.client.virtual_mic import VirtualMic, keywords_of, run_mic

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "checkpoints" / f"{DEFAULT_MODEL}.safetensors"
LMUKWS = [sys.executable, "-m", "lmukws"]
WORD = "yes"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped checkpoint in models/checkpoints"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``WORD`` spoken by espeak-ng, at 16 kHz, with 0.5 s of faint noise before, 1 s after."""
    folder = tmp_path_factory.mktemp("speech")
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), WORD], check=True, timeout=60)
    x, rate = sf.read(raw, dtype="float32")
    from scipy.signal import resample_poly

    x = resample_poly(x, 16000, rate).astype(np.float32) if rate != 16000 else x
    x = 0.5 * x / max(1e-6, float(np.abs(x).max()))
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)])
    y += (0.002 * rng.standard_normal(y.size)).astype(np.float32)
    path = folder / f"{WORD}.wav"
    sf.write(path, y, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(SHIPPED, tmp_path_factory.mktemp("shipped-serve"))
    yield server
    server.stop()


def test_classify_in_process_with_the_default_checkpoint(spoken: Path) -> None:
    result = subprocess.run(
        [*LMUKWS, "classify", str(spoken), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == WORD


def test_stream_detects_the_word(default_server: LiveServer, spoken: Path) -> None:
    result = subprocess.run(
        [*LMUKWS, "stream", str(spoken), "--url", default_server.ws, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["model"] == DEFAULT_MODEL
    assert WORD in [r["keyword"] for r in records if r["type"] == "detection"]


def test_stream_says_what_the_default_operating_point_measured(
    default_server: LiveServer, spoken: Path
) -> None:
    """Under the ready line, the served calibration's point for the session's sensitivity;
    none for a session with its own thresholds (the curve does not describe them)."""

    def text(*options: str) -> list[str]:
        argv = [*LMUKWS, "stream", str(spoken), "--url", default_server.ws, *options]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    lines = text()
    assert f"model {DEFAULT_MODEL}" in lines[1]
    assert lines[2].startswith(
        "  sensitivity 0.50: nearest calibrated point (0.50), on the validation streams: "
    )
    assert "false alarms/h (" in lines[2] and "/h on recorded speech), " in lines[2]
    assert lines[2].endswith(" % of keywords found")
    assert text("--sensitivity", "0")[2].startswith("  sensitivity 0.00: nearest calibrated")
    assert not any("calibrated point" in line for line in text("--threshold", f"{WORD}=0.9"))


def test_mic_demo_detects_the_word(
    default_server: LiveServer, spoken: Path, tmp_path: Path
) -> None:
    mic = VirtualMic(tmp_path / "pulse")
    try:
        records, _ = run_mic(mic, spoken, "--url", default_server.ws, server=default_server)
    finally:
        mic.close()
    assert WORD in keywords_of(records)
