"""Tests of models.frontend: Kaldi equality, normalisation, streaming = offline, state, errors."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from models.config import FeatureConfig
from models.frontend import Fbank, FbankState, StreamingFbank

kaldi = pytest.importorskip("torchaudio.compliance.kaldi")

SR = 16000
CFG = FeatureConfig()


def _chirp(n: int, gen: torch.Generator) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SR
    f0, f1 = 50.0, 7900.0
    k = (f1 - f0) / (n / SR)
    return (0.8 * torch.sin(2 * math.pi * (f0 * t + 0.5 * k * t * t))).float()


def _noise(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * 2 - 1


def _quiet_noise(n: int, gen: torch.Generator) -> torch.Tensor:
    return 1e-4 * torch.randn(n, generator=gen)


def _speech_like(n: int, gen: torch.Generator) -> torch.Tensor:
    """Harmonics of a gliding pitch under a 4 Hz syllabic envelope, plus a little noise."""
    t = torch.arange(n, dtype=torch.float64) / SR
    f0 = 120.0 + 40.0 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    voiced = sum(torch.sin(h * phase) / h for h in range(1, 20))
    envelope = 0.5 * (1 + torch.sin(2 * math.pi * 4.0 * t)) ** 2
    wav = 0.3 * envelope * voiced + 0.01 * torch.randn(n, generator=gen, dtype=torch.float64)
    return wav.float()


def _silence(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.zeros(n)


def _clipped(n: int, gen: torch.Generator) -> torch.Tensor:
    """Overdriven speech-like signal hard-clipped at +-1 (and digital full scale)."""
    return (4.0 * _speech_like(n, gen)).clamp(-1.0, 1.0)


def _dc(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.full((n,), 0.25) + 1e-3 * torch.randn(n, generator=gen)


SIGNALS = {
    "chirp": _chirp,
    "noise": _noise,
    "quiet_noise": _quiet_noise,
    "speech_like": _speech_like,
    "silence": _silence,
    "clipped": _clipped,
    "dc": _dc,
}


def _signal(name: str, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return SIGNALS[name](n, gen)


def _kaldi_ref(wav: torch.Tensor) -> torch.Tensor:
    """The paper's loader: kaldi.fbank on one [S] float waveform -> [T, 128]."""
    return kaldi.fbank(
        wav.unsqueeze(0),
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )


def _stream(sf: StreamingFbank, wav: torch.Tensor, chunk_sizes: list[int]) -> torch.Tensor:
    """Feed [B, S] through ``sf`` in chunks of the given sizes (cycled); -> [B, T, F]."""
    state = sf.init_state(wav.shape[0])
    outs, pos, i = [], 0, 0
    while pos < wav.shape[1]:
        n = chunk_sizes[i % len(chunk_sizes)]
        frames, state = sf.accept(wav[:, pos : pos + n], state)
        assert state.num_pending < sf.frame_length
        outs.append(frames)
        pos += n
        i += 1
    return torch.cat(outs, dim=1)


# --- equality with torchaudio's Kaldi fbank ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_fbank_matches_torchaudio_kaldi(name: str) -> None:
    wav = _signal(name, 16000)
    ours = Fbank(normalize=False)(wav)
    ref = _kaldi_ref(wav)
    assert ours.shape == (1, 98, 128)
    assert ours.dtype == torch.float32
    # Measured: 0.0 (bit-identical) on CPU with torch 2.14 / torchaudio 2.11.
    assert (ours[0] - ref).abs().max().item() <= 1e-3


def test_batched_fbank_matches_torchaudio_per_row() -> None:
    names = sorted(SIGNALS)
    wav = torch.stack([_signal(n, 12345, seed=i) for i, n in enumerate(names)])
    ours = Fbank(normalize=False)(wav)
    assert ours.shape == (len(names), 1 + (12345 - 400) // 160, 128)
    for i in range(len(names)):
        assert (ours[i] - _kaldi_ref(wav[i])).abs().max().item() <= 1e-3


def test_silence_is_the_log_floor() -> None:
    feats = Fbank(normalize=False)(torch.zeros(2, 800))
    floor = math.log(torch.finfo(torch.float32).eps)
    assert torch.allclose(feats, torch.full_like(feats, floor))


@pytest.mark.parametrize("num_samples", [0, 1, 399, 400, 401, 559, 560, 561, 16000, 16001])
def test_frame_count_is_kaldi_snip_edges(num_samples: int) -> None:
    fb = Fbank()
    wav = _signal("noise", num_samples)
    feats = fb(wav)
    expected = 0 if num_samples < 400 else 1 + (num_samples - 400) // 160
    assert feats.shape == (1, expected, 128)
    assert fb.num_frames(num_samples) == expected
    if expected:
        assert _kaldi_ref(wav).shape[0] == expected


def test_one_dim_and_batch_of_one_agree() -> None:
    wav = _signal("speech_like", 4000)
    fb = Fbank()
    assert torch.equal(fb(wav), fb(wav.unsqueeze(0)))


# --- normalisation ------------------------------------------------------------------------------


def test_normalisation_is_the_papers_formula() -> None:
    wav = _signal("speech_like", 16000)
    raw = Fbank(normalize=False)(wav)
    norm = Fbank(normalize=True)(wav)
    assert torch.allclose(norm, (raw - CFG.norm_mean) / (2 * CFG.norm_std), atol=1e-6)
    # The paper writes it as (x + 6.845978) / (2 * 5.5654526).
    assert torch.allclose(norm, (raw + 6.845978) / (2 * 5.5654526), atol=1e-6)


def test_normalisation_follows_the_config() -> None:
    cfg = FeatureConfig(norm_mean=1.5, norm_std=0.25)
    wav = _signal("noise", 2000)
    raw = Fbank(cfg, normalize=False)(wav)
    assert torch.allclose(Fbank(cfg)(wav), (raw - 1.5) / 0.5, atol=1e-6)


# --- streaming equals offline -------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 159, 160, 161, 1000, 16000])
@pytest.mark.parametrize("normalize", [False, True])
def test_streaming_equals_offline(chunk: int, normalize: bool) -> None:
    wav = _signal("speech_like", 16000, seed=chunk).unsqueeze(0)
    offline = Fbank(normalize=normalize)(wav)
    streamed = _stream(StreamingFbank(normalize=normalize), wav, [chunk])
    assert streamed.shape == offline.shape
    # Measured: <= 9.6e-7 (a few float32 ulps: the FFT/GEMM see a different number of rows).
    assert (streamed - offline).abs().max().item() <= 1e-4


@pytest.mark.parametrize("chunk", [1, 159, 160, 161, 1000, 16000])
def test_streaming_batch_of_sessions_equals_offline(chunk: int) -> None:
    names = ["chirp", "noise", "speech_like", "silence", "clipped"]
    wav = torch.stack([_signal(n, 16000, seed=i) for i, n in enumerate(names)])
    offline = Fbank()(wav)
    streamed = _stream(StreamingFbank(), wav, [chunk])
    assert streamed.shape == offline.shape == (5, 98, 128)
    assert (streamed - offline).abs().max().item() <= 1e-4


def test_streaming_irregular_chunks_with_empty_ones() -> None:
    wav = torch.stack([_signal("speech_like", 9000, seed=s) for s in range(3)])
    chunks = [0, 7, 393, 0, 1, 160, 2, 0, 640, 399, 400, 401, 13]
    streamed = _stream(StreamingFbank(), wav, chunks)
    offline = Fbank()(wav)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= 1e-4


def test_accept_empty_chunk() -> None:
    sf = StreamingFbank()
    state = sf.init_state(3)
    frames, state = sf.accept(torch.zeros(3, 0), state)
    assert frames.shape == (3, 0, 128)
    assert state.pending.shape == (3, 0)
    _, state = sf.accept(torch.rand(3, 250), state)
    frames, state2 = sf.accept(torch.zeros(3, 0), state)
    assert frames.shape == (3, 0, 128)
    assert torch.equal(state2.pending, state.pending)


def test_streaming_works_under_inference_mode() -> None:
    wav = _signal("chirp", 3000).unsqueeze(0)
    sf = StreamingFbank()
    with torch.inference_mode():
        streamed = _stream(sf, wav, [160])
        offline = Fbank()(wav)
    assert (streamed - offline).abs().max().item() <= 1e-4


# --- state ------------------------------------------------------------------------------------


def test_state_stays_bounded_over_a_long_stream() -> None:
    sf = StreamingFbank()
    state = sf.init_state(2)
    gen = torch.Generator().manual_seed(7)
    total_samples, total_frames = 0, 0
    while total_samples < 10 * 60 * SR:  # ten minutes
        n = int(torch.randint(0, 4000, (1,), generator=gen))
        frames, state = sf.accept(torch.rand(2, n, generator=gen) * 2 - 1, state)
        total_samples += n
        total_frames += frames.shape[1]
        assert state.num_pending < 400
        # The state owns its storage: it never keeps a whole chunk alive.
        assert state.pending.untyped_storage().nbytes() < 2 * 400 * 4
    assert total_frames == sf.fbank.num_frames(total_samples)


def test_state_does_not_alias_the_callers_buffer() -> None:
    sf = StreamingFbank()
    chunk = torch.rand(1, 300)
    _, state = sf.accept(chunk, sf.init_state(1))
    before = state.pending.clone()
    chunk.zero_()
    assert torch.equal(state.pending, before)


def test_stacked_sessions_equal_separate_sessions() -> None:
    sf = StreamingFbank()
    wavs = [_signal("speech_like", 5000, seed=s) for s in range(3)]
    # Warm each session up alone with the same first chunk length, then stack them.
    states, first = [], []
    for w in wavs:
        f, st = sf.accept(w[None, :1234], sf.init_state(1))
        states.append(st)
        first.append(f)
    stacked = FbankState.stack(states)
    assert stacked.batch_size == 3
    frames, stacked = sf.accept(torch.stack([w[1234:] for w in wavs]), stacked)
    for i, (w, st) in enumerate(zip(wavs, stacked.unstack(), strict=True)):
        full = torch.cat([first[i], frames[i : i + 1]], dim=1)
        assert (full - Fbank()(w)).abs().max().item() <= 1e-4
        assert torch.equal(st.pending, stacked.index(i).pending)
        assert st.batch_size == 1


def test_stack_rejects_different_pending_lengths() -> None:
    sf = StreamingFbank()
    _, a = sf.accept(torch.rand(1, 100), sf.init_state(1))
    _, b = sf.accept(torch.rand(1, 200), sf.init_state(1))
    with pytest.raises(ValueError, match=r"different pending lengths \[100, 200\]"):
        FbankState.stack([a, b])
    with pytest.raises(ValueError, match="at least one"):
        FbankState.stack([])
    with pytest.raises(ValueError, match="session index 5 out of range"):
        a.index(5)


def test_state_is_frozen() -> None:
    state = StreamingFbank().init_state(1)
    with pytest.raises(AttributeError):
        state.pending = torch.zeros(1, 3)  # type: ignore[misc]


# --- errors ------------------------------------------------------------------------------------


def test_fbank_rejects_bad_shapes_and_dtypes() -> None:
    fb = Fbank()
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 800\)"):
        fb(torch.zeros(2, 1, 800))
    with pytest.raises(ValueError, match=r"torch.int16.*divide by 32768"):
        fb(torch.zeros(800, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"torch\.float64"):
        fb(torch.zeros(800, dtype=torch.float64))


def test_streaming_rejects_bad_shapes_and_dtypes() -> None:
    sf = StreamingFbank()
    state = sf.init_state(2)
    with pytest.raises(ValueError, match=r"got shape \(160,\)"):
        sf.accept(torch.zeros(160), state)
    with pytest.raises(ValueError, match="samples batch 3 does not match state batch 2"):
        sf.accept(torch.zeros(3, 160), state)
    with pytest.raises(ValueError, match=r"torch\.float16"):
        sf.accept(torch.zeros(2, 160, dtype=torch.float16), state)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        sf.init_state(0)


def test_unsupported_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="use_energy"):
        Fbank(FeatureConfig(use_energy=True))
    with pytest.raises(ValueError, match=r"dither must be 0\.0.*0\.1"):
        Fbank(FeatureConfig(dither=0.1))
    with pytest.raises(ValueError, match="'hann'"):
        Fbank(FeatureConfig(window_type="hann"))
    with pytest.raises(ValueError, match="high_freq 9000"):
        Fbank(FeatureConfig(high_freq=9000.0))


def test_buffers_are_not_in_the_state_dict() -> None:
    assert list(Fbank().state_dict()) == []
    assert list(StreamingFbank().state_dict()) == []


def test_models_frontend_does_not_import_torchaudio() -> None:
    source = Path(__file__).resolve().parents[2] / "models" / "frontend.py"
    tree = ast.parse(source.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "torchaudio" not in imported
