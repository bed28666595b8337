"""Microphones and codecs: band limits where asked, companding near identity, clips keep their
length and alignment, draws seeded and absent when off."""

from __future__ import annotations

import numpy as np
import pytest

from training.devices import (
    Device,
    DeviceConfig,
    a_law,
    apply_device,
    band_limit,
    draw_device,
    mu_law,
    opus_available,
    opus_round_trip,
    saturate,
    telephone,
    tilt,
)

FS = 16000
S = 8000


def _noise(seed: int = 0, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(S)).astype(np.float32)


def _band_share(x: np.ndarray, lo: float, hi: float) -> float:
    """The share of ``x``'s energy between ``lo`` and ``hi`` Hz."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / FS)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def _speechlike(level: float) -> np.ndarray:
    """Harmonics of 150 Hz under a syllable envelope, peak ``level``."""
    t = np.arange(S) / FS
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    x = x * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t))
    return (level * x / np.abs(x).max()).astype(np.float32)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    err = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(err**2)))


@pytest.mark.parametrize("law", ["mu-law", "a-law"])
def test_telephone_keeps_300_to_3400_hz(law: str) -> None:
    x = _noise()
    y = telephone(x, FS, law)
    assert y.shape == x.shape and y.dtype == np.float32
    assert _band_share(y, 4000, FS / 2) < 1e-3
    assert _band_share(y, 0, 200) < 1e-3
    assert _band_share(y, 250, 3500) > 0.97  # the band and its filter skirts


@pytest.mark.parametrize("codec", [mu_law, a_law])
@pytest.mark.parametrize("level", [0.9, 0.1])
def test_companding_is_near_identity(codec: object, level: float) -> None:
    x = _speechlike(level)
    y = codec(x)  # type: ignore[operator]
    assert y.shape == x.shape
    assert _snr_db(x, y) > 30.0  # 8-bit G.711 gives ~38 dB over a wide range of levels


def test_band_limits_and_tilt() -> None:
    x = _noise()
    y = band_limit(x, FS, 300.0, 3400.0)  # 4th order: -24 dB per octave beyond the corners
    assert _band_share(y, 6000, FS / 2) < 0.02 * _band_share(x, 6000, FS / 2)
    assert _band_share(y, 0, 100) < 1e-3
    bright = tilt(x, 3.0, FS)

    def ratio(v: np.ndarray) -> float:  # 4-8 kHz against 250-500 Hz: four octaves apart
        return _band_share(v, 4000, 8000) / _band_share(v, 250, 500)

    assert ratio(bright) / ratio(x) == pytest.approx(10 ** (3.0 * 4 / 10), rel=0.3)  # +12 dB
    assert tilt(x, 0.0, FS) is x


def test_saturation_is_soft_and_bounded() -> None:
    small = np.full(4, 1e-3, np.float32)
    assert saturate(small, 12.0) == pytest.approx(small, rel=1e-3)
    loud = np.linspace(-5, 5, 101, dtype=np.float32)
    assert np.abs(saturate(loud, 12.0)).max() <= 10 ** (-12 / 20) + 1e-6


def test_a_device_keeps_a_click_in_place() -> None:
    x = np.zeros(S, np.float32)
    x[3000] = 0.5
    for codec in ("none", "mu-law", "a-law"):
        device = Device(highpass_hz=200.0, lowpass_hz=5000.0, tilt_db_per_octave=1.5, codec=codec)
        y = apply_device(x, device, FS)
        assert y.shape == (S,)
        assert abs(int(np.argmax(np.abs(y))) - 3000) <= 1


@pytest.mark.skipif(not opus_available(), reason="libsndfile without Ogg Opus")
def test_opus_round_trip_keeps_length_and_alignment() -> None:
    x = _speechlike(0.5)
    y = opus_round_trip(x, FS, level=1.0)
    assert y.shape == x.shape and y.dtype == np.float32
    lags = np.arange(-40, 41)
    corr = [float(np.dot(x[100:-100], np.roll(y, -lag)[100:-100])) for lag in lags]
    assert abs(int(lags[int(np.argmax(corr))])) <= 1
    assert _snr_db(x, y) > 3.0  # lossy at ~7 kbps, but the same signal


def test_draws_are_seeded_and_absent_when_off() -> None:
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert draw_device(rng, DeviceConfig()) == Device()
    assert rng.bit_generator.state == before
    config = DeviceConfig(device_prob=1.0, telephone_prob=0.5, opus_prob=0.5)
    a = [draw_device(np.random.default_rng(s), config) for s in range(20)]
    b = [draw_device(np.random.default_rng(s), config) for s in range(20)]
    assert a == b
    assert {d.codec for d in a} == {"mu-law", "a-law", "opus"}
    for d in a:
        assert d.highpass_hz is not None and 50.0 <= d.highpass_hz <= 300.0
        assert d.lowpass_hz is not None and 3400.0 <= d.lowpass_hz <= 8000.0
    assert apply_device(_noise(), Device(), FS) == pytest.approx(_noise())


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match="telephone_prob \\+ opus_prob"):
        DeviceConfig(telephone_prob=0.6, opus_prob=0.6)
    with pytest.raises(ValueError, match="opus_level"):
        DeviceConfig(opus_level=(0.5, 1.5))
    with pytest.raises(ValueError, match="telephone law"):
        telephone(_noise(), FS, "gsm")
    with pytest.raises(ValueError, match="unknown codec"):
        apply_device(_noise(), Device(codec="gsm"), FS)
