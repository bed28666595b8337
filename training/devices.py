"""Microphones and codecs: what a device and a transmission do to a clip after the room.

:func:`draw_device` draws one item's :class:`Device` (from a ``numpy.random.Generator``) and
:func:`apply_device` plays a clip through it, in the order of a real signal path:

1. microphone colouring: a spectral tilt (dB per octave around 1 kHz) and band limits (a
   high-pass at 50-300 Hz, a low-pass at 3.4-8 kHz), zero-phase, so nothing moves in time;
2. saturation of a hot preamp: ``tanh(g x) / g`` (identity for small x, soft limit ``1 / g``);
3. a codec: a telephone line (300-3400 Hz band, resampled to 8 kHz, 8-bit mu-law or A-law
   companding, back to 16 kHz) or an Opus round trip at a low bit rate through libsndfile
   (the Ogg Opus that :mod:`training.opus_pack` writes; the decoder trims Opus's pre-skip, so
   the clip keeps its length and alignment).

Shapes: S samples of a clip (16 kHz float32 in about [-1, 1]).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

__all__ = [
    "CODECS",
    "Device",
    "DeviceConfig",
    "a_law",
    "apply_device",
    "band_limit",
    "draw_device",
    "mu_law",
    "opus_available",
    "opus_round_trip",
    "saturate",
    "telephone",
    "tilt",
]

CODECS = ("none", "mu-law", "a-law", "opus")
TELEPHONE_BAND_HZ = (300.0, 3400.0)
TELEPHONE_RATE = 8000
MU = 255.0
A = 87.6


@dataclass(frozen=True)
class DeviceConfig:
    """Probabilities (per item) and ranges of microphone and codec colouring."""

    #: microphone colouring (tilt, band limits, maybe saturation)
    device_prob: float = 0.0
    highpass_hz: tuple[float, float] = (50.0, 300.0)
    lowpass_hz: tuple[float, float] = (3400.0, 8000.0)
    tilt_db_per_octave: float = 2.0
    saturation_prob: float = 0.3
    drive_db: tuple[float, float] = (0.0, 12.0)
    #: codecs, one at most per item: telephone (mu-law or A-law, even odds) or Opus
    telephone_prob: float = 0.0
    opus_prob: float = 0.0
    #: libsndfile Opus compression level (1.0 is its lowest bit rate)
    opus_level: tuple[float, float] = (0.95, 1.0)

    def __post_init__(self) -> None:
        for name in ("device_prob", "saturation_prob", "telephone_prob", "opus_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.telephone_prob + self.opus_prob > 1.0:
            raise ValueError(
                f"telephone_prob + opus_prob must be <= 1, got "
                f"{self.telephone_prob} + {self.opus_prob}"
            )
        lo, hi = self.opus_level
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"opus_level must be 0 <= low <= high <= 1, got {(lo, hi)}")

    @property
    def active(self) -> bool:
        return self.device_prob > 0 or self.telephone_prob > 0 or self.opus_prob > 0


@dataclass(frozen=True)
class Device:
    """One item's draws: None / 0 where a stage is off."""

    highpass_hz: float | None = None
    lowpass_hz: float | None = None
    tilt_db_per_octave: float = 0.0
    drive_db: float = 0.0
    codec: str = "none"
    opus_level: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self == Device()


def draw_device(rng: np.random.Generator, config: DeviceConfig) -> Device:
    """One item's microphone and codec (draws nothing for stages whose probability is 0)."""
    fields: dict[str, float | str | None] = {}
    if config.device_prob > 0 and rng.random() < config.device_prob:
        fields["highpass_hz"] = float(rng.uniform(*config.highpass_hz))
        fields["lowpass_hz"] = float(rng.uniform(*config.lowpass_hz))
        t = config.tilt_db_per_octave
        fields["tilt_db_per_octave"] = float(rng.uniform(-t, t))
        if rng.random() < config.saturation_prob:
            fields["drive_db"] = float(rng.uniform(*config.drive_db))
    if config.telephone_prob > 0 or config.opus_prob > 0:
        u = rng.random()
        if u < config.telephone_prob:
            fields["codec"] = "mu-law" if rng.random() < 0.5 else "a-law"
        elif u < config.telephone_prob + config.opus_prob:
            fields["codec"] = "opus"
            fields["opus_level"] = float(rng.uniform(*config.opus_level))
    return Device(**fields)  # type: ignore[arg-type]


def apply_device(x: np.ndarray, device: Device, sample_rate: int = 16000) -> np.ndarray:
    """``x`` [S] through the microphone, preamp and codec of ``device``: [S] float32."""
    y = x.astype(np.float32, copy=True)
    if device.tilt_db_per_octave or device.highpass_hz or device.lowpass_hz:
        y = tilt(y, device.tilt_db_per_octave, sample_rate)
        y = band_limit(y, sample_rate, device.highpass_hz, device.lowpass_hz)
    if device.drive_db > 0:
        y = saturate(y, device.drive_db)
    if device.codec in ("mu-law", "a-law"):
        y = telephone(y, sample_rate, device.codec)
    elif device.codec == "opus":
        y = opus_round_trip(y, sample_rate, device.opus_level)
    elif device.codec != "none":
        raise ValueError(f"unknown codec {device.codec!r}; known: {CODECS}")
    return y


# -- stages ------------------------------------------------------------------------------------


def _freqs(n: int, sample_rate: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / sample_rate)


def _filter(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Zero-phase filtering of ``x`` [S] by the real ``gain`` [S // 2 + 1] (no padding needed:
    a short, smooth response wraps by a negligible amount)."""
    return np.fft.irfft(np.fft.rfft(x) * gain, x.size).astype(np.float32)


def tilt(x: np.ndarray, db_per_octave: float, sample_rate: int = 16000) -> np.ndarray:
    """``x`` [S] with a spectral tilt of ``db_per_octave`` around 1 kHz (40 Hz-8 kHz): [S]."""
    if db_per_octave == 0.0:
        return x
    f = np.clip(_freqs(x.size, sample_rate), 40.0, None)
    return _filter(x, 10.0 ** (db_per_octave * np.log2(f / 1000.0) / 20.0))


def band_limit(
    x: np.ndarray,
    sample_rate: int = 16000,
    low_hz: float | None = None,
    high_hz: float | None = None,
    order: int = 4,
) -> np.ndarray:
    """``x`` [S] through Butterworth-shaped high- and low-pass magnitudes (zero phase): [S]."""
    f = np.maximum(_freqs(x.size, sample_rate), 1e-3)
    gain = np.ones_like(f)
    if low_hz:
        gain /= np.sqrt(1.0 + (low_hz / f) ** (2 * order))
    if high_hz and high_hz < sample_rate / 2:
        gain /= np.sqrt(1.0 + (f / high_hz) ** (2 * order))
    return _filter(x, gain)


def saturate(x: np.ndarray, drive_db: float) -> np.ndarray:
    """Soft clipping ``tanh(g x) / g`` with g = 10^(drive_db / 20): [S] -> [S]."""
    g = 10.0 ** (drive_db / 20.0)
    return (np.tanh(g * x) / g).astype(np.float32)


def _quantise(y: np.ndarray, bits: int = 8) -> np.ndarray:
    """Companded values in [-1, 1] on 2^bits levels (mid-riser, as G.711's codes)."""
    half = 2 ** (bits - 1)
    return (np.clip(np.floor(y * half), -half, half - 1) + 0.5) / half


def mu_law(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """An 8-bit mu-law (mu = 255) encode-decode round trip of ``x`` [S] (clipped to [-1, 1])."""
    x = np.clip(x.astype(np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / math.log1p(MU)
    q = _quantise(y, bits)
    return (np.sign(q) * np.expm1(np.abs(q) * math.log1p(MU)) / MU).astype(np.float32)


def a_law(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """An 8-bit A-law (A = 87.6) encode-decode round trip of ``x`` [S] (clipped to [-1, 1])."""
    x = np.clip(x.astype(np.float64), -1.0, 1.0)
    ax = np.abs(x)
    norm = 1.0 + math.log(A)
    y = np.where(ax < 1.0 / A, A * ax / norm, (1.0 + np.log(np.maximum(A * ax, 1.0))) / norm)
    q = _quantise(np.sign(x) * y, bits)
    aq = np.abs(q)
    out = np.where(aq < 1.0 / norm, aq * norm / A, np.exp(aq * norm - 1.0) / A)
    return (np.sign(q) * out).astype(np.float32)


def telephone(x: np.ndarray, sample_rate: int = 16000, law: str = "mu-law") -> np.ndarray:
    """A narrow-band phone line: 300-3400 Hz, 8 kHz, 8-bit ``law`` companding; [S] -> [S]."""
    if law not in ("mu-law", "a-law"):
        raise ValueError(f"telephone law must be 'mu-law' or 'a-law', got {law!r}")
    g = math.gcd(sample_rate, TELEPHONE_RATE)
    up, down = TELEPHONE_RATE // g, sample_rate // g
    y = band_limit(x, sample_rate, *TELEPHONE_BAND_HZ, order=8)
    narrow = resample_poly(y, up, down)
    narrow = mu_law(narrow) if law == "mu-law" else a_law(narrow)
    wide = resample_poly(narrow, down, up)
    out = np.zeros(x.size, dtype=np.float32)
    n = min(x.size, wide.size)
    out[:n] = wide[:n]
    return out


def opus_available() -> bool:
    """Whether libsndfile (through soundfile) writes Ogg Opus here."""
    try:
        import soundfile as sf
    except ImportError:
        return False
    return "OPUS" in sf.available_subtypes("OGG")


def opus_round_trip(x: np.ndarray, sample_rate: int = 16000, level: float = 1.0) -> np.ndarray:
    """``x`` [S] encoded to Ogg Opus in memory at libsndfile compression ``level`` (0 best,
    1 smallest: about 7 kbps of 16 kHz speech, 0.95 about 19) and decoded: [S] float32."""
    import soundfile as sf

    buffer = io.BytesIO()
    clipped = np.clip(x, -1.0, 1.0).astype(np.float32)
    sf.write(buffer, clipped, sample_rate, format="OGG", subtype="OPUS", compression_level=level)
    buffer.seek(0)
    y, rate = sf.read(buffer, dtype="float32")
    if rate != sample_rate:
        raise ValueError(f"Opus decoded at {rate} Hz, expected {sample_rate}")
    out = np.zeros(x.size, dtype=np.float32)
    n = min(x.size, y.size)
    out[:n] = y[:n]
    return out
