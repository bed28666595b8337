"""Online augmentation: waveforms (per item, seeded) and features (per batch, in the trainer).

Waveform side (:class:`WaveAugmenter`), for each trimmed utterance of a training batch:
speed by resampling (0.85-1.15, also shifts formants), placement at a random offset in the
window, a random channel (EQ bumps, high-/low-pass band limits), light reverb (a short synthetic
room impulse response), then on about half the items colored noise or babble (mixtures of
``_unknown_`` words) at 5-25 dB SNR, a faint noise floor on some others, and a random gain.
``_silence_`` items are made from colored noise, digital zero or faint babble. The channel and
reverb of a whole batch are applied with one batched FFT.

Rooms, devices and codecs (off by default; ``room_prob``, ``device_prob``, ``telephone_prob``,
``opus_prob``) follow a real signal path: the voice goes through a simulated room
(:mod:`training.rooms`: an image-source RIR of a random shoebox, RT60 and talker distance, in
place of the light reverb, in the same batched FFT, aligned on the direct path), then the
background noise joins it at the drawn SNR (noise is in the room too, but diffuse: it is not
convolved with the talker's RIR), then the random gain, and last the microphone, preamp and
codec (:mod:`training.devices`: tilt, band limits, saturation, telephone or Opus) act on the
mixture, speech and noise alike, as a device does; ``_silence_`` items pass the same device,
so a codec's traces never tell speech from silence.

Feature side (paper recipe, torch, on the normalised fbank [B, T, F]): SpecAugment frequency
and time masks, uniform noise, a random roll of up to ±10 frames, and mixup. Beyond the paper,
optional vocal-tract-length perturbation (:func:`vtlp`): each item's mel axis is warped by a
random factor, which moves formants without touching pitch or timing (speed perturbation moves
all three together), so the model sees more "speakers" than the corpus has.

Every random draw comes from a ``numpy.random.Generator`` (waveforms, one per item, so an item
augments the same way whatever batch it lands in) or a ``torch.Generator`` (features), so a
seed fixes the result. Shapes: B batch, S samples in the window, T frames, F mel bins, K labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.frontend import mel_scale
from training.devices import Device, DeviceConfig, apply_device, draw_device, opus_available
from training.rooms import RirPool, RoomConfig, rir_spectrum

__all__ = [
    "AugmentConfig",
    "WaveAugmenter",
    "change_speed",
    "colored_noise",
    "feature_noise_roll",
    "item_rng",
    "mixup",
    "place",
    "spec_augment",
    "vtlp",
    "warp_mel_bins",
]

EPS = 1e-10


@dataclass(frozen=True)
class AugmentConfig:
    """Knobs of the waveform augmentation (probabilities are per item)."""

    speed_prob: float = 0.8
    speed_min: float = 0.85
    speed_max: float = 1.15
    gain_db_min: float = -18.0
    gain_db_max: float = 6.0
    eq_prob: float = 0.5
    eq_bands_max: int = 3
    eq_db_max: float = 8.0
    highpass_prob: float = 0.3
    highpass_hz: tuple[float, float] = (60.0, 400.0)
    lowpass_prob: float = 0.3
    lowpass_hz: tuple[float, float] = (2800.0, 7500.0)
    reverb_prob: float = 0.25
    rt60_s: tuple[float, float] = (0.1, 0.5)
    rir_max_s: float = 0.3
    noise_prob: float = 0.5
    babble_share: float = 0.35
    babble_words: tuple[int, int] = (3, 7)
    snr_db: tuple[float, float] = (5.0, 25.0)
    noise_alpha: tuple[float, float] = (-1.0, 2.0)
    floor_prob: float = 0.5
    floor_dbfs: tuple[float, float] = (-90.0, -55.0)
    silence_noise_share: float = 0.6
    silence_zero_share: float = 0.15
    silence_noise_dbfs: tuple[float, float] = (-75.0, -25.0)
    silence_babble_dbfs: tuple[float, float] = (-55.0, -30.0)
    # rooms (training.rooms; 0 = off): an image-source RIR in place of the light reverb
    room_prob: float = 0.0
    room_rt60_s: tuple[float, float] = RoomConfig.rt60_s
    #: talker-microphone distance (log-uniform): sets the DRR and the level (direct path -6 dB
    #: per doubling; the dry clip's energy at the range's geometric mean)
    room_distance_m: tuple[float, float] = RoomConfig.distance_m
    #: distinct RIRs an augmenter renders (each once, cached; ~1 ms each)
    room_pool: int = 512
    # devices and codecs (training.devices; 0 = off), on the mixture after the gain; the
    # ranges' defaults are DeviceConfig's (and RoomConfig's above)
    device_prob: float = 0.0
    device_highpass_hz: tuple[float, float] = DeviceConfig.highpass_hz
    device_lowpass_hz: tuple[float, float] = DeviceConfig.lowpass_hz
    device_tilt_db: float = DeviceConfig.tilt_db_per_octave
    device_saturation_prob: float = DeviceConfig.saturation_prob
    device_drive_db: tuple[float, float] = DeviceConfig.drive_db
    telephone_prob: float = 0.0
    opus_prob: float = 0.0
    #: libsndfile Opus compression level: 0.95 ~ 19 kbps, 1.0 ~ 7 kbps of 16 kHz speech
    opus_level: tuple[float, float] = DeviceConfig.opus_level

    def __post_init__(self) -> None:
        if not 0.0 <= self.room_prob <= 1.0:
            raise ValueError(f"room_prob must be in [0, 1], got {self.room_prob}")
        self.room_config()
        self.device_config()

    def room_config(self) -> RoomConfig:
        """The ranges rooms are drawn from."""
        return RoomConfig(rt60_s=self.room_rt60_s, distance_m=self.room_distance_m)

    def device_config(self) -> DeviceConfig:
        """The microphone and codec knobs."""
        return DeviceConfig(
            device_prob=self.device_prob,
            highpass_hz=self.device_highpass_hz,
            lowpass_hz=self.device_lowpass_hz,
            tilt_db_per_octave=self.device_tilt_db,
            saturation_prob=self.device_saturation_prob,
            drive_db=self.device_drive_db,
            telephone_prob=self.telephone_prob,
            opus_prob=self.opus_prob,
            opus_level=self.opus_level,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(fields)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item in one epoch: independent of batch composition and order."""
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index])


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster by linear-interpolation resampling (pitch moves too)."""
    if factor == 1.0 or x.size < 2:
        return x
    positions = np.arange(0.0, x.size - 1, factor)
    return np.interp(positions, np.arange(x.size), x).astype(np.float32)


def place(
    utterance: np.ndarray, window: int, rng: np.random.Generator | None
) -> tuple[np.ndarray, int, int]:
    """Put ``utterance`` in a zero window of ``window`` samples.

    With ``rng`` the offset is uniform (longer utterances are cropped at a random point);
    without, the utterance is centred. Returns (window [S], start, end) of the speech in it.
    """
    out = np.zeros(window, dtype=np.float32)
    n = utterance.size
    if n >= window:
        skip = int(rng.integers(0, n - window + 1)) if rng is not None else (n - window) // 2
        out[:] = utterance[skip : skip + window]
        return out, 0, window
    start = int(rng.integers(0, window - n + 1)) if rng is not None else (window - n) // 2
    out[start : start + n] = utterance
    return out, start, start + n


def colored_noise(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1 / f^alpha (0 white, 1 pink, 2 brown, -1 blue), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n).astype(np.float32))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec *= f ** (-alpha / 2.0)
    x = np.fft.irfft(spec, n).astype(np.float32)
    return x / (np.sqrt(np.mean(x * x)) + EPS)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + EPS))


def _db(value: float) -> float:
    return 10.0 ** (value / 20.0)


class WaveAugmenter:
    """Seeded waveform augmentation of utterances into fixed windows of ``window`` samples.

    ``babble``: utterances (float32) that babble is mixed from (the ``_unknown_`` words of the
    same split); without them, babble falls back to colored noise.
    """

    def __init__(
        self,
        config: AugmentConfig,
        window: int,
        sample_rate: int = 16000,
        babble: Sequence[np.ndarray] = (),
    ) -> None:
        self.config = config
        self.window = window
        self.sample_rate = sample_rate
        self.babble = list(babble)
        rir_len = max(1, int(config.rir_max_s * sample_rate))
        self.rir_len = rir_len
        self.rooms: RirPool | None = None
        span = rir_len
        if config.room_prob > 0:
            self.rooms = RirPool(config.room_pool, sample_rate, config.room_config())
            span = max(rir_len, self.rooms.max_len)
        self.n_fft = _fast_len(window + span)
        self.device = config.device_config()
        if self.device.opus_prob > 0 and not opus_available():
            raise ValueError(
                f"opus_prob {self.device.opus_prob} needs Ogg Opus in libsndfile "
                "(soundfile.available_subtypes('OGG') has no OPUS here)"
            )
        self._freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        self._logf = np.log2(np.maximum(self._freqs, 20.0))
        rel = np.maximum(self._freqs, self._freqs[1]) / self._freqs[1]
        self._log_rel = np.log(rel)  # for 1 / f^alpha shaping

    # -- building blocks ------------------------------------------------------------------

    def _white(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(self.window, dtype=np.float32)

    def _babble(self, rng: np.random.Generator) -> np.ndarray:
        """A mixture of a few words at random offsets and levels, unit RMS."""
        if not self.babble:
            return colored_noise(self.window, 0.0, rng)
        lo, hi = self.config.babble_words
        out = np.zeros(self.window, dtype=np.float32)
        for _ in range(int(rng.integers(lo, hi + 1))):
            word = self.babble[int(rng.integers(len(self.babble)))]
            word = change_speed(word, float(rng.uniform(0.85, 1.15)))
            placed, _, _ = place(word, self.window, rng)
            out += placed * np.float32(_db(rng.uniform(-10.0, 0.0)) / (_rms(word) + EPS))
        return out / np.float32(_rms(out))

    def _channel(self, rng: np.random.Generator, reverb: bool) -> np.ndarray:
        """Frequency response [n_fft // 2 + 1] (complex) of a random EQ, band limits, reverb."""
        c = self.config
        freqs = self._freqs
        gain_db = np.zeros_like(freqs)
        if rng.random() < c.eq_prob:
            logf = self._logf
            for _ in range(int(rng.integers(1, c.eq_bands_max + 1))):
                centre = rng.uniform(np.log2(100.0), np.log2(7000.0))
                width = rng.uniform(0.3, 1.5)
                gain_db += rng.uniform(-c.eq_db_max, c.eq_db_max) * np.exp(
                    -0.5 * ((logf - centre) / width) ** 2
                )
        response = (10.0 ** (gain_db / 20.0)).astype(np.complex64)
        if rng.random() < c.highpass_prob:
            fc = rng.uniform(*c.highpass_hz)
            response *= 1.0 / np.sqrt(1.0 + (fc / np.maximum(freqs, 1.0)) ** 4)
        if rng.random() < c.lowpass_prob:
            fc = rng.uniform(*c.lowpass_hz)
            response *= 1.0 / np.sqrt(1.0 + (freqs / fc) ** 8)
        if reverb:
            rt60 = rng.uniform(*c.rt60_s)
            n = min(self.rir_len, int(rt60 * self.sample_rate))
            t = np.arange(n) / self.sample_rate
            rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
            rir *= _db(rng.uniform(-14.0, -6.0)) / (np.sqrt(np.sum(rir**2)) + EPS)
            rir[0] = 1.0  # direct path
            response *= np.fft.rfft(rir, self.n_fft).astype(np.complex64)
        return response

    def _room(self, rng: np.random.Generator) -> tuple[np.ndarray, float, float] | None:
        """With ``room_prob``, (RIR spectrum [n_fft // 2 + 1], RT60, distance) of a pool room;
        draws nothing when rooms are off."""
        if self.rooms is None or rng.random() >= self.config.room_prob:
            return None
        rir, lead, room = self.rooms.get(int(rng.integers(self.rooms.size)))
        return rir_spectrum(rir, lead, self.n_fft), room.rt60_s, room.distance_m

    def _device(self, rng: np.random.Generator) -> Device | None:
        """This item's microphone and codec; draws nothing when they are off."""
        return draw_device(rng, self.device) if self.device.active else None

    def _through_device(self, x: np.ndarray, device: Device | None) -> np.ndarray:
        if device is None or device.is_identity:
            return x
        return apply_device(x, device, self.sample_rate)

    # -- public -----------------------------------------------------------------------------

    def speech(
        self,
        utterances: Sequence[np.ndarray],
        rngs: Sequence[np.random.Generator],
        return_parts: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, float]]]:
        """Augmented windows [B, S] of trimmed utterances (float32 in [-1, 1]).

        With ``return_parts``: (mixture, speech, noise, info) where speech and noise are the two
        components before the final gain, device and clipping, and info holds each item's draws
        (``snr_db`` is NaN where no SNR noise was added; SNR is measured over the speech span
        ``start:end``; ``rt60_s`` and ``distance_m`` are NaN where no room was simulated).
        """
        c = self.config
        B, S = len(utterances), self.window
        stacked = np.zeros((2 * B, self.n_fft), dtype=np.float32)  # speech rows, then noise
        responses = np.ones((2 * B, self.n_fft // 2 + 1), dtype=np.complex64)
        spans: list[tuple[int, int]] = []
        info: list[dict[str, float]] = []
        devices: list[Device | None] = []
        for b, (utt, rng) in enumerate(zip(utterances, rngs, strict=True)):
            x = utt.astype(np.float32, copy=False)
            if rng.random() < c.speed_prob:
                x = change_speed(x, float(rng.uniform(c.speed_min, c.speed_max)))
            placed, start, end = place(x, S, rng)
            stacked[b, :S] = placed
            spans.append((start, end))
            reverb = bool(rng.random() < c.reverb_prob)
            room = self._room(rng)
            reverb = reverb and room is None  # a simulated room replaces the light reverb
            channel = self._channel(rng, reverb)
            responses[b] = channel if room is None else channel * room[0]
            item = {"snr_db": math.nan, "noise_dbfs": math.nan, "gain_db": 0.0}
            item.update(start=float(start), end=float(end))
            item.update(rt60_s=math.nan if room is None else room[1])
            item.update(distance_m=math.nan if room is None else room[2])
            if rng.random() < c.noise_prob:
                item["snr_db"] = float(rng.uniform(*c.snr_db))
                babble = rng.random() < c.babble_share
                noise = self._babble(rng) if babble else self._white(rng)
            elif rng.random() < c.floor_prob:
                item["noise_dbfs"] = float(rng.uniform(*c.floor_dbfs))
                babble, noise = False, self._white(rng)
            else:
                noise = None
            if noise is not None:
                stacked[B + b, :S] = noise
                response = _magnitude(channel) if reverb else channel
                if not babble:  # color white noise: power ~ 1 / f^alpha
                    alpha = float(rng.uniform(*c.noise_alpha))
                    response = response * np.exp(-alpha / 2.0 * self._log_rel).astype(np.float32)
                responses[B + b] = response
            item["gain_db"] = float(rng.uniform(c.gain_db_min, c.gain_db_max))
            devices.append(self._device(rng))
            info.append(item)
        spec = np.fft.rfft(stacked, axis=1) * responses
        filtered = np.fft.irfft(spec, self.n_fft, axis=1)[:, :S].astype(np.float32)
        speech, noise = filtered[:B], filtered[B:]
        for b, item in enumerate(info):
            start, end = spans[b]
            level = _rms(speech[b, start:end])
            if not math.isnan(item["snr_db"]):
                target = level / _db(item["snr_db"])
            elif not math.isnan(item["noise_dbfs"]):
                target = _db(item["noise_dbfs"])
            else:
                continue
            noise[b] *= np.float32(target / _rms(noise[b]))
        gains = np.array([_db(i["gain_db"]) for i in info], dtype=np.float32)[:, None]
        mixture = (speech + noise) * gains
        for b, device in enumerate(devices):
            mixture[b] = self._through_device(mixture[b], device)
        mixture = np.clip(mixture, -1.0, 1.0)
        if return_parts:
            return mixture, speech, noise, info
        return mixture

    def silence(self, rng: np.random.Generator) -> np.ndarray:
        """One ``_silence_`` window [S]: colored noise, digital zero or faint babble (through the
        item's device, when devices are on)."""
        c = self.config
        S = self.window
        kind = rng.random()
        if kind < c.silence_zero_share:
            x = np.zeros(S, dtype=np.float32)
        elif kind < c.silence_zero_share + c.silence_noise_share or not self.babble:
            x = colored_noise(S, float(rng.uniform(*c.noise_alpha)), rng)
            x = x * np.float32(_db(rng.uniform(*c.silence_noise_dbfs)))
        else:
            x = self._babble(rng)
            x = x * np.float32(_db(rng.uniform(*c.silence_babble_dbfs)))
        return np.clip(self._through_device(x, self._device(rng)), -1.0, 1.0)


def _magnitude(response: np.ndarray) -> np.ndarray:
    """The channel without its reverb phase: noise is not reverberated twice."""
    return np.abs(response).astype(np.complex64)


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


# -- feature-side augmentation (the paper's recipe) --------------------------------------------


def spec_augment(
    feats: Tensor, freq_mask: int, time_mask: int, generator: torch.Generator, fill: float = 0.0
) -> Tensor:
    """SpecAugment as torchaudio's masking, one frequency and one time mask per item.

    Mask widths are uniform in [0, max) and start uniform in [0, size - width]; masked values
    become ``fill``. feats: [B, T, F] -> new tensor [B, T, F].
    """
    B, T, F = feats.shape
    out = feats.clone()
    for size, max_width, dim in ((F, freq_mask, 2), (T, time_mask, 1)):
        if max_width <= 0:
            continue
        width = (torch.rand(B, generator=generator) * min(max_width, size)).long()
        start = (torch.rand(B, generator=generator) * (size - width + 1).float()).long()
        idx = torch.arange(size)
        mask = (idx[None] >= start[:, None]) & (idx[None] < (start + width)[:, None])  # [B, n]
        mask = mask.to(feats.device)  # drawn on the CPU generator whatever the device
        out = out.masked_fill(mask[:, None, :] if dim == 2 else mask[:, :, None], fill)
    return out


def feature_noise_roll(feats: Tensor, roll_frames: int, generator: torch.Generator) -> Tensor:
    """The paper's feature noise and shift: x + U(0,1) * U(0,1) / 10, rolled by ±roll frames."""
    B, T, _ = feats.shape
    scale = torch.rand(B, 1, 1, generator=generator) / 10.0
    out = feats + (torch.rand(feats.shape, generator=generator) * scale).to(feats.device)
    if roll_frames > 0:
        shifts = torch.randint(-roll_frames, roll_frames, (B,), generator=generator)
        idx = ((torch.arange(T)[None, :] - shifts[:, None]) % T).to(feats.device)  # [B, T]
        out = out.gather(1, idx[:, :, None].expand_as(out))
    return out


def mixup(
    feats: Tensor, targets: Tensor, prob: float, alpha: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Mix each item, with probability ``prob``, with a random other item of the batch.

    λ ~ Beta(alpha, alpha); feats [B, T, F] and targets [B, K] (one-hot) are mixed alike.
    """
    B = feats.shape[0]
    if prob <= 0 or B < 2:
        return feats, targets
    partner = torch.randint(0, B, (B,), generator=generator)
    use = torch.rand(B, generator=generator) < prob
    # Beta(a, a) from two Gammas, drawn with numpy seeded from the torch generator.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam_np = np.random.default_rng(seed).beta(alpha, alpha, size=B)
    lam = torch.where(use, torch.from_numpy(lam_np).float(), torch.ones(B))
    lam_f = lam.to(feats.device)[:, None, None]  # feats may be on the training device
    mixed = lam_f * feats + (1 - lam_f) * feats[partner.to(feats.device)]
    mixed_targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]
    return mixed, mixed_targets


def warp_mel_bins(
    feats: Tensor,
    alphas: Tensor,
    low_freq: float,
    high_freq: float,
    boundary_hz: float = 4800.0,
) -> Tensor:
    """Warp each item's mel axis by its factor (Jaitly & Hinton's VTLP, on log-mel features).

    Output bin k takes the (linearly interpolated) value the input has at the warped frequency
    of bin k's centre: f -> alpha * f up to a boundary, then linear so that the top of the band
    stays put. alpha > 1 moves spectral features down (a longer vocal tract), alpha < 1 up.
    feats: [B, T, F] on Kaldi's mel bins between ``low_freq`` and ``high_freq`` (Hz),
    alphas: [B] -> [B, T, F].
    """
    F = feats.shape[2]
    mel_low, mel_high = mel_scale(torch.tensor(low_freq)), mel_scale(torch.tensor(high_freq))
    delta = (mel_high - mel_low) / (F + 1)
    centre_mel = mel_low + (torch.arange(F, dtype=torch.float64) + 1.0) * delta
    centre = 700.0 * torch.expm1(centre_mel / 1127.0)  # [F] Hz
    a = alphas.to(torch.float64)[:, None]  # [B, 1]
    knee = boundary_hz * torch.clamp(a, max=1.0) / a  # [B, 1]: where the linear part starts
    top = high_freq - (high_freq - boundary_hz * torch.clamp(a, max=1.0)) / (high_freq - knee) * (
        high_freq - centre
    )
    source = torch.where(centre <= knee, a * centre, top).clamp(low_freq, high_freq)  # [B, F]
    position = ((mel_scale(source) - mel_low) / delta - 1.0).clamp(0.0, F - 1.0)  # fractional bin
    lower = position.floor().long().clamp(max=F - 2).to(feats.device)
    weight = (position.to(feats.device) - lower).to(feats.dtype)[:, None, :]  # [B, 1, F]
    below = feats.gather(2, lower[:, None, :].expand(-1, feats.shape[1], -1))
    above = feats.gather(2, (lower + 1)[:, None, :].expand(-1, feats.shape[1], -1))
    return below + weight * (above - below)


def vtlp(
    feats: Tensor,
    max_warp: float,
    generator: torch.Generator,
    low_freq: float,
    high_freq: float,
) -> Tensor:
    """VTLP with alpha ~ U(1 - max_warp, 1 + max_warp) per item; feats [B, T, F] -> [B, T, F].

    ``max_warp`` 0 returns ``feats`` unchanged. Jaitly & Hinton (2013) used 0.1.
    """
    if not 0.0 <= max_warp < 1.0:
        raise ValueError(f"vtlp max_warp must be in [0, 1), got {max_warp}")
    if max_warp == 0.0:
        return feats
    alphas = 1.0 + (torch.rand(feats.shape[0], generator=generator) * 2.0 - 1.0) * max_warp
    return warp_mel_bins(feats, alphas, low_freq, high_freq)
