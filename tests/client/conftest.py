"""Fixtures of the client tests: a real server on the tone model, tone WAVs, a virtual mic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.client.live_server import LiveServer
from tests.streaming.tone_model import sequence

# The tone model fires "low" for a 440 Hz burst and "high" for a 2 kHz burst.
TONE_EVENTS = [("low", 0.5), ("high", 2.0)]
MAX_SESSIONS = 3


def write_tones(path: Path, rate: int = 16000, channels: int = 1, total_s: float = 3.0) -> Path:
    """A WAV (PCM16) with a low burst at 0.5 s and a high burst at 2.0 s."""
    x = sequence(TONE_EVENTS, total_s, rate=rate)
    sf.write(path, np.stack([x] * channels, axis=1), rate, subtype="PCM_16")
    return path


def calibrated_copy(checkpoint: Path, out: Path) -> Path:
    """``checkpoint`` with a two-point calibration (20 and 100 FA/h) for the clients to show."""
    from models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    keywords = [k for k in meta["labels"] if not k.startswith("_")]
    points = [
        {"target_fa_per_hour": 20.0, "thresholds": dict.fromkeys(keywords, 0.8), "recall": 0.5,
         "fa_per_hour": 19.0, "heldout_recall": 0.42, "heldout_fa_per_hour": 21.4,
         "sets": {"mixed": 30.0, "negatives/recorded": 11.9}},
        {"target_fa_per_hour": 100.0, "thresholds": dict.fromkeys(keywords, 0.5),
         "recall": 0.61, "fa_per_hour": 88.0},
    ]  # fmt: skip
    calibration = {"target_fa_per_hour": 20.0, "operating_points": points}
    meta["detector"] = {**meta["detector"], "calibration": calibration}
    return save_checkpoint(out, model, meta)


@pytest.fixture(scope="session")
def live_server(
    tone_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """``lmukws serve`` on the tone model, at most MAX_SESSIONS sessions."""
    server = LiveServer(
        tone_checkpoint,
        tmp_path_factory.mktemp("client-serve"),
        LMUKWS_MAX_SESSIONS=str(MAX_SESSIONS),
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tones_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tone sequence at 44.1 kHz stereo (the client and server handle any rate and channels)."""
    return write_tones(tmp_path_factory.mktemp("tones") / "tones-44k-stereo.wav", 44100, 2)
