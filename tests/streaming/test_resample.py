"""Streaming resampler: chunking-independent output, correct length, and a clean tone."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.resample import StreamingResampler, resample


def stream(x: np.ndarray, rate: int, cuts: list[int]) -> np.ndarray:
    r = StreamingResampler(rate)
    state = r.init_state()
    out = []
    for chunk in np.split(x, cuts):
        y, state = r.process(chunk, state)
        out.append(y)
    tail, _ = r.flush(state)
    return np.concatenate([*out, tail])


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 16000, 12345])
def test_output_does_not_depend_on_chunking(rate: int) -> None:
    rng = np.random.default_rng(rate)
    x = rng.uniform(-1, 1, size=rate // 2).astype(np.float32)
    whole = resample(x, rate)
    assert whole.shape == (-(-x.size * 16000 // rate),)
    for cuts in ([1, 2, 3, 500, 501], list(range(0, x.size, 37)), list(range(0, x.size, 441))):
        assert np.array_equal(stream(x, rate, cuts), whole)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_tone_survives_resampling(rate: int) -> None:
    t = np.arange(rate) / rate
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), rate)
    ref = np.sin(2 * np.pi * 440 * np.arange(y.size) / 16000)
    middle = slice(400, y.size - 400)  # away from the zero-padded edges
    assert np.abs(y[middle] - ref[middle]).max() < 2e-3


def test_content_above_8khz_is_removed() -> None:
    rate = 48000
    t = np.arange(rate) / rate
    y = resample(np.sin(2 * np.pi * 12000 * t).astype(np.float32), rate)
    assert np.abs(y[400:-400]).max() < 1e-3


def test_identity_and_bad_rate() -> None:
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(resample(x, 16000), x)
    with pytest.raises(ValueError, match="rates must be positive"):
        StreamingResampler(0)
