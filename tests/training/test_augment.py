"""Waveform and feature augmentation: seeded, shape-preserving, SNR in range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.augment import (
    AugmentConfig,
    WaveAugmenter,
    change_speed,
    colored_noise,
    feature_noise_roll,
    item_rng,
    mixup,
    place,
    spec_augment,
    vtlp,
    warp_mel_bins,
)

S = 20720


def _utterances(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = np.arange(int(16000 * rng.uniform(0.3, 0.7))) / 16000
        out.append(
            (0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) * np.hanning(t.size)).astype(np.float32)
        )
    return out


def test_speech_is_deterministic_and_keeps_shape() -> None:
    aug = WaveAugmenter(AugmentConfig(), S, babble=_utterances(3))
    utts = _utterances()
    a = aug.speech(utts, [item_rng(1, 0, i) for i in range(len(utts))])
    b = aug.speech(utts, [item_rng(1, 0, i) for i in range(len(utts))])
    c = aug.speech(utts, [item_rng(2, 0, i) for i in range(len(utts))])
    assert isinstance(a, np.ndarray)
    assert a.shape == (len(utts), S) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0


def test_snr_within_range() -> None:
    config = AugmentConfig(noise_prob=1.0, snr_db=(5.0, 25.0), babble_share=0.5)
    aug = WaveAugmenter(config, S, babble=_utterances(4))
    utts = _utterances() * 5
    mixture, speech, noise, info = aug.speech(
        utts, [item_rng(3, 0, i) for i in range(len(utts))], return_parts=True
    )
    for b, item in enumerate(info):
        assert 5.0 <= item["snr_db"] <= 25.0
        start, end = int(item["start"]), int(item["end"])
        p_speech = np.mean(speech[b, start:end] ** 2)
        p_noise = np.mean(noise[b] ** 2)
        snr = 10 * math.log10(p_speech / p_noise)
        assert snr == pytest.approx(item["snr_db"], abs=0.5)
    assert mixture.shape == (len(utts), S)


def test_about_half_get_noise() -> None:
    aug = WaveAugmenter(AugmentConfig(), S)
    utts = _utterances() * 20
    *_, info = aug.speech(utts, [item_rng(4, 0, i) for i in range(len(utts))], return_parts=True)
    share = np.mean([not math.isnan(i["snr_db"]) for i in info])
    assert 0.3 < share < 0.7


def test_silence_kinds() -> None:
    aug = WaveAugmenter(AugmentConfig(), S, babble=_utterances(3))
    windows = [aug.silence(item_rng(0, 0, i)) for i in range(60)]
    assert all(w.shape == (S,) and w.dtype == np.float32 for w in windows)
    assert any(not w.any() for w in windows)  # digital zero
    assert any(w.any() for w in windows)
    assert max(np.abs(w).max() for w in windows) < 0.5
    again = aug.silence(item_rng(0, 0, 7))
    assert np.array_equal(again, windows[7])


def test_place_and_speed() -> None:
    x = np.ones(1000, dtype=np.float32)
    out, start, end = place(x, 4000, None)
    assert (start, end) == (1500, 2500) and out.sum() == 1000
    out, start, end = place(x, 4000, np.random.default_rng(0))
    assert end - start == 1000 and out[start:end].all()
    assert change_speed(x, 1.15).size == pytest.approx(1000 / 1.15, abs=2)
    assert change_speed(x, 0.85).size == pytest.approx(1000 / 0.85, abs=2)


def test_colored_noise_slope() -> None:
    rng = np.random.default_rng(0)
    brown = colored_noise(16000, 2.0, rng)
    white = colored_noise(16000, 0.0, rng)
    assert np.sqrt(np.mean(brown**2)) == pytest.approx(1.0, rel=1e-3)

    def low_share(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x)) ** 2
        return float(p[: p.size // 8].sum() / p.sum())

    assert low_share(brown) > 0.9 > low_share(white)


def test_spec_augment_masks() -> None:
    feats = torch.randn(8, 128, 128)
    g = torch.Generator().manual_seed(0)
    out = spec_augment(feats, 48, 48, g, fill=7.0)
    assert out.shape == feats.shape
    masked = out == 7.0
    assert masked.any()
    for b in range(8):
        cols = masked[b].all(dim=0).sum()  # frequency mask
        rows = masked[b].all(dim=1).sum()  # time mask
        assert cols < 48 and rows < 48
    again = spec_augment(feats, 48, 48, torch.Generator().manual_seed(0), fill=7.0)
    assert torch.equal(out, again)


def test_feature_noise_roll_and_mixup() -> None:
    feats = torch.randn(16, 128, 128)
    g = torch.Generator().manual_seed(0)
    rolled = feature_noise_roll(feats, 10, g)
    assert rolled.shape == feats.shape
    assert (rolled - feats).abs().mean() > 0
    targets = torch.nn.functional.one_hot(torch.arange(16) % 5, 5).float()
    mixed, mixed_t = mixup(feats, targets, 0.6, 10.0, torch.Generator().manual_seed(1))
    assert mixed.shape == feats.shape and mixed_t.shape == targets.shape
    assert torch.allclose(mixed_t.sum(1), torch.ones(16))
    lam = mixed_t.max(1).values
    assert (lam >= 0.2).all()


def test_vtlp_moves_spectral_peaks_not_frames() -> None:
    feats = torch.randn(3, 20, 128)
    unchanged = warp_mel_bins(feats, torch.ones(3), 20.0, 8000.0)
    assert torch.allclose(unchanged, feats, atol=1e-5)
    # a peak at 1,639 Hz (mel bin 60): alpha 1.1 reads it at bin 60 from 1,639 / 1.1 Hz ~ bin
    # 56.6, so it lands between bins 56 and 57; alpha 0.9 moves it up
    peak = torch.zeros(2, 4, 128)
    peak[:, :, 60] = 1.0
    warped = warp_mel_bins(peak, torch.tensor([1.1, 0.9]), 20.0, 8000.0)
    down, up = warped[0, 0], warped[1, 0]
    assert set(torch.nonzero(down).flatten().tolist()) == {56, 57}
    assert int(up.argmax()) in (63, 64)
    assert torch.equal(warped[:, 0], warped[:, 3])  # every frame warped alike, none moved
    flat = torch.full((2, 4, 128), 2.5)  # a flat spectrum stays flat, the band's top stays
    assert torch.allclose(warp_mel_bins(flat, torch.tensor([1.1, 0.9]), 20.0, 8000.0), flat)
    g = torch.Generator().manual_seed(3)
    out = vtlp(feats, 0.1, g, 20.0, 8000.0)
    assert out.shape == feats.shape and not torch.allclose(out, feats)
    assert torch.equal(out, vtlp(feats, 0.1, torch.Generator().manual_seed(3), 20.0, 8000.0))
    assert vtlp(feats, 0.0, g, 20.0, 8000.0) is feats
    with pytest.raises(ValueError, match="max_warp"):
        vtlp(feats, 1.0, g, 20.0, 8000.0)
