"""Audio front end: Kaldi-compatible log-mel filterbank, offline and streaming.

Both front ends compute each frame with the same function, :func:`log_mel_frames`, from a tensor
of analysis windows, so the streaming one gives exactly the offline frames for any chunking.
The math equals ``torchaudio.compliance.kaldi.fbank(wav, htk_compat=True, sample_frequency=16000,
use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)``
(snip_edges, DC removal, pre-emphasis 0.97, FFT size rounded up to a power of two, power
spectrum, log floored at float32 epsilon), written in pure torch.

Shapes: B batch (sessions), S samples in a whole signal, n samples in a chunk, T frames,
m frames emitted by one streaming call, L window length in samples (400), N FFT size (512),
F mel bins (128). Waveforms are float32 in [-1, 1] at ``FeatureConfig.sample_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.config import FeatureConfig

__all__ = [
    "Fbank",
    "FbankState",
    "StreamingFbank",
    "kaldi_mel_banks",
    "log_mel_frames",
    "mel_band",
    "mel_scale",
]

#: Kaldi's floor before the log: numeric_limits<float>::epsilon().
LOG_FLOOR = float(torch.finfo(torch.float32).eps)

_WINDOW_TYPES = ("hanning", "hamming", "povey", "rectangular", "blackman")
_BLACKMAN_COEFF = 0.42


def mel_scale(freq: Tensor | float) -> Tensor | float:
    """Kaldi's mel scale: 1127 ln(1 + f / 700), f in Hz."""
    if isinstance(freq, Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def mel_band(low_freq: float, high_freq: float, sample_rate: float) -> tuple[float, float]:
    """The mel filters' band in Hz, by Kaldi's rule: a ``high_freq`` <= 0 counts down from the
    Nyquist frequency."""
    return low_freq, high_freq if high_freq > 0.0 else 0.5 * sample_rate + high_freq


def kaldi_mel_banks(
    num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float
) -> Tensor:
    """Kaldi's triangular mel filters (no VTLN), computed in float32 as torchaudio does.

    Returns [N // 2 + 1, F]: one column per mel bin, with a zero row for the Nyquist FFT bin,
    ready for ``power_spectrum @ banks``.
    """
    nyquist = 0.5 * sample_rate
    low_freq, high_freq = mel_band(low_freq, high_freq, sample_rate)
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(
            f"bad mel range: low_freq {low_freq}, high_freq {high_freq}; "
            f"expected 0 <= low_freq < high_freq <= nyquist {nyquist}"
        )
    if num_bins <= 3:
        raise ValueError(f"num_mel_bins must be > 3, got {num_bins}")
    fft_bin_width = sample_rate / n_fft
    mel_low = mel_scale(low_freq)
    mel_high = mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins = torch.arange(num_bins).unsqueeze(1)  # int64, promoted to float32 as in torchaudio
    left = mel_low + bins * delta
    center = mel_low + (bins + 1.0) * delta
    right = mel_low + (bins + 2.0) * delta
    mel = mel_scale(fft_bin_width * torch.arange(float(n_fft // 2))).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp_min(torch.minimum(up, down), 0.0)  # [F, N // 2]
    banks = torch.nn.functional.pad(banks, (0, 1))  # [F, N // 2 + 1]
    return banks.t().contiguous().to(torch.float32)


def _analysis_window(window_type: str, length: int) -> Tensor:
    """The Kaldi analysis window [L] (symmetric, float32)."""
    if window_type == "hanning":
        return torch.hann_window(length, periodic=False, dtype=torch.float32)
    if window_type == "hamming":
        return torch.hamming_window(
            length, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float32
        )
    if window_type == "povey":
        return torch.hann_window(length, periodic=False, dtype=torch.float32).pow(0.85)
    if window_type == "rectangular":
        return torch.ones(length, dtype=torch.float32)
    if window_type == "blackman":
        a = 2 * math.pi / (length - 1)
        t = torch.arange(length, dtype=torch.float32)
        return (
            _BLACKMAN_COEFF
            - 0.5 * torch.cos(a * t)
            + (0.5 - _BLACKMAN_COEFF) * torch.cos(2 * a * t)
        )
    raise ValueError(f"unknown window_type {window_type!r}; expected one of {_WINDOW_TYPES}")


def log_mel_frames(
    windows: Tensor,
    window: Tensor,
    mel_banks: Tensor,
    *,
    n_fft: int,
    preemphasis: float,
    remove_dc_offset: bool,
) -> Tensor:
    """Log-mel energies of analysis windows: the per-frame math shared by both front ends.

    Args:
        windows: [B, T, L] raw samples of each frame.
        window: [L] analysis window.
        mel_banks: [N // 2 + 1, F] filters (see :func:`kaldi_mel_banks`).
        n_fft: N, FFT size (>= L; the frame is zero-padded).
        preemphasis: Kaldi pre-emphasis coefficient (0 disables it).
        remove_dc_offset: subtract each frame's mean first.

    Returns:
        [B, T, F] natural log of the mel energies, floored at float32 epsilon before the log.
    """
    B, T, _ = windows.shape
    x = windows
    if remove_dc_offset:
        x = x - x.mean(dim=-1, keepdim=True)
    if preemphasis != 0.0:
        # x[j] -= c * x[max(0, j - 1)]
        x = x - preemphasis * torch.cat((x[..., :1], x[..., :-1]), dim=-1)
    x = x * window
    power = torch.fft.rfft(x, n=n_fft).abs().square()  # [B, T, N // 2 + 1]
    mel = power.reshape(B * T, -1).mm(mel_banks)  # [B * T, F]
    return mel.clamp_min(LOG_FLOOR).log().reshape(B, T, -1)


def _check_float32(x: Tensor, name: str) -> None:
    if x.dtype != torch.float32:
        hint = " (integer PCM: divide by 32768 first)" if not x.is_floating_point() else ""
        raise ValueError(f"{name} must be torch.float32 in [-1, 1], got {x.dtype}{hint}")


class Fbank(nn.Module):
    """Offline Kaldi fbank: waveform [S] or [B, S] -> log-mel features [B, T, F].

    T = 1 + (S - L) // hop for S >= L, else 0 (Kaldi snip_edges). With ``normalize`` the
    paper's normalisation ``(x - norm_mean) / (2 * norm_std)`` is applied.
    """

    window: Tensor
    mel_banks: Tensor

    def __init__(self, config: FeatureConfig = FeatureConfig(), normalize: bool = True) -> None:
        super().__init__()
        if config.use_energy:
            raise ValueError("use_energy=True is not supported (features are F mel bins only)")
        if config.dither != 0.0:
            raise ValueError(
                f"dither must be 0.0 for a deterministic front end, got {config.dither}"
            )
        if not 0.0 <= config.preemphasis_coefficient <= 1.0:
            raise ValueError(
                f"preemphasis_coefficient must be in [0, 1], got {config.preemphasis_coefficient}"
            )
        if config.window_type not in _WINDOW_TYPES:
            raise ValueError(
                f"unknown window_type {config.window_type!r}; expected one of {_WINDOW_TYPES}"
            )
        if config.frame_length < 2 or config.frame_shift < 1:
            raise ValueError(
                f"frame_length must be >= 2 and frame_shift >= 1 samples, "
                f"got {config.frame_length} and {config.frame_shift}"
            )
        self.config = config
        self.normalize = normalize
        self.frame_length = config.frame_length
        self.frame_shift = config.frame_shift
        self.n_fft = 1 << (self.frame_length - 1).bit_length()
        self.num_mel_bins = config.num_mel_bins
        # Derived from the config, so kept out of state_dict.
        self.register_buffer(
            "window", _analysis_window(config.window_type, self.frame_length), persistent=False
        )
        self.register_buffer(
            "mel_banks",
            kaldi_mel_banks(
                config.num_mel_bins,
                self.n_fft,
                float(config.sample_rate),
                config.low_freq,
                config.high_freq,
            ),
            persistent=False,
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi (snip_edges) makes from ``num_samples`` samples."""
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.frame_shift

    def frames_to_features(self, windows: Tensor) -> Tensor:
        """Features of complete analysis windows: [B, T, L] -> [B, T, F] (normalised if set)."""
        feats = log_mel_frames(
            windows,
            self.window,
            self.mel_banks,
            n_fft=self.n_fft,
            preemphasis=self.config.preemphasis_coefficient,
            remove_dc_offset=self.config.remove_dc_offset,
        )
        if self.normalize:
            feats = (feats - self.config.norm_mean) / (2.0 * self.config.norm_std)
        return feats

    def forward(self, waveform: Tensor) -> Tensor:
        """Waveform [S] or [B, S] (float32) -> features [B, T, F]."""
        _check_float32(waveform, "waveform")
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        elif waveform.dim() != 2:
            raise ValueError(f"waveform must be [S] or [B, S], got shape {tuple(waveform.shape)}")
        B, S = waveform.shape
        T = self.num_frames(S)
        if T == 0:
            return waveform.new_empty((B, 0, self.num_mel_bins))
        windows = waveform.unfold(1, self.frame_length, self.frame_shift)  # [B, T, L] view
        return self.frames_to_features(windows)


@dataclass(frozen=True)
class FbankState:
    """Per-session streaming front-end state.

    ``pending``: [B, r] samples received but not yet consumed, r < L (the tail that the next
    frame starts with). Every session in a state has the same r.
    """

    pending: Tensor

    @property
    def batch_size(self) -> int:
        return self.pending.shape[0]

    @property
    def num_pending(self) -> int:
        """r, the samples held per session."""
        return self.pending.shape[1]

    @classmethod
    def stack(cls, states: Sequence[FbankState]) -> FbankState:
        """Concatenate states along the batch axis ([B_i, r] each -> [sum B_i, r]).

        All states must hold the same number of pending samples; otherwise their frames would
        not line up and ValueError is raised (group sessions by ``num_pending`` instead).
        """
        if not states:
            raise ValueError("stack needs at least one FbankState, got none")
        lengths = sorted({s.num_pending for s in states})
        if len(lengths) > 1:
            raise ValueError(
                f"cannot stack FbankStates with different pending lengths {lengths}; "
                "group sessions by num_pending"
            )
        return cls(torch.cat([s.pending for s in states], dim=0))

    def unstack(self) -> list[FbankState]:
        """Split into ``batch_size`` states of batch 1."""
        return [self.index(i) for i in range(self.batch_size)]

    def index(self, i: int) -> FbankState:
        """The state of session ``i`` as a batch-1 state."""
        if not -self.batch_size <= i < self.batch_size:
            raise ValueError(f"session index {i} out of range for batch size {self.batch_size}")
        return FbankState(self.pending[i : i + 1].clone())

    def to(self, device: torch.device | str) -> FbankState:
        return FbankState(self.pending.to(device))


class StreamingFbank(nn.Module):
    """Streaming Kaldi fbank: chunks of samples in, every newly complete frame out.

    Concatenating the frames of ``accept`` over any chunking of a signal equals
    ``Fbank(config, normalize)(signal)``. Nothing per stream lives on the module.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig(), normalize: bool = True) -> None:
        super().__init__()
        self.fbank = Fbank(config, normalize)
        self.config = config
        self.frame_length = self.fbank.frame_length
        self.frame_shift = self.fbank.frame_shift
        self.num_mel_bins = self.fbank.num_mel_bins

    def init_state(self, batch_size: int) -> FbankState:
        """A fresh state: no pending samples ([batch_size, 0])."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return FbankState(self.fbank.window.new_zeros((batch_size, 0)))

    def accept(self, samples: Tensor, state: FbankState) -> tuple[Tensor, FbankState]:
        """Consume samples [B, n] (float32, n may be 0) -> (frames [B, m, F], new state).

        m is the number of frames whose L-sample window became complete; the new state holds
        fewer than L samples per session.
        """
        _check_float32(samples, "samples")
        if samples.dim() != 2:
            raise ValueError(f"samples must be [B, n], got shape {tuple(samples.shape)}")
        if samples.shape[0] != state.batch_size:
            raise ValueError(
                f"samples batch {samples.shape[0]} does not match state batch {state.batch_size}"
            )
        buf = torch.cat((state.pending, samples), dim=1) if state.num_pending else samples
        B, total = buf.shape
        m = self.fbank.num_frames(total)
        if m == 0:
            frames = buf.new_empty((B, 0, self.num_mel_bins))
            return frames, FbankState(buf.clone())
        windows = buf.unfold(1, self.frame_length, self.frame_shift)  # [B, m, L] view
        frames = self.fbank.frames_to_features(windows)
        # Clone so the state never keeps the caller's buffer (or the whole chunk) alive.
        return frames, FbankState(buf[:, m * self.frame_shift :].clone())
