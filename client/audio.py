"""Audio helpers of the client: read files, fit rates into the protocol's range, cut chunks.

Shapes: S samples, C channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from server.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, TARGET_SAMPLE_RATE


def to_mono_float32(samples: np.ndarray) -> np.ndarray:
    """Samples [S] or [S, C] (float in [-1, 1], or signed integer PCM) -> float32 mono [S].

    Channels are averaged; integer PCM is divided by its full scale (32768 for int16).
    """
    array = np.asarray(samples)
    if array.ndim not in (1, 2):
        raise ValueError(f"audio must have shape [S] or [S, C], got {array.shape}")
    if array.dtype.kind == "i":
        out = array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    elif array.dtype.kind == "f":
        out = array.astype(np.float32, copy=False)
    else:
        raise ValueError(f"audio must be float or signed integer PCM, got dtype {array.dtype}")
    return out.mean(axis=1, dtype=np.float32) if out.ndim == 2 else out


def fit_rate(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Resample [S] to 16 kHz when ``sample_rate`` is outside the protocol's 8–48 kHz range.

    Rates inside the range pass unchanged (the server resamples them).
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        return samples, sample_rate
    from scipy.signal import resample_poly

    g = math.gcd(sample_rate, TARGET_SAMPLE_RATE)
    out = resample_poly(samples, TARGET_SAMPLE_RATE // g, sample_rate // g)
    return out.astype(np.float32), TARGET_SAMPLE_RATE


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file (WAV, FLAC, OGG: whatever libsndfile reads) -> (float32 mono [S], rate).

    The rate is brought into 8–48 kHz when it lies outside (see ``fit_rate``).
    """
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        raise ValueError(f"cannot read audio file {str(path)!r}: {error}") from None
    return fit_rate(to_mono_float32(data), int(rate))


def chunks(samples: np.ndarray, sample_rate: int, chunk_ms: float) -> Iterator[np.ndarray]:
    """Consecutive pieces of [S] of ``chunk_ms`` milliseconds each (the last may be shorter)."""
    if chunk_ms <= 0:
        raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
    size = max(1, round(sample_rate * chunk_ms / 1000.0))
    for begin in range(0, len(samples), size):
        yield samples[begin : begin + size]


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level of [S] float samples in dB relative to full scale (-120 for silence)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * math.log10(rms + 1e-12))


__all__ = ["chunks", "fit_rate", "level_dbfs", "read_audio", "to_mono_float32"]
