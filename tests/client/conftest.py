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
