"""A window model (spiking-attention) served by recomputing its window every hop."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from models import build_model
from streaming.engine import EngineConfig, StreamingEngine
from streaming.session import End, Event, Posteriors
from tests.models.conftest import randomise_batchnorm

WINDOW, HOP = 32, 5  # frames: a 320 ms window recomputed every 50 ms
LABELS = ["yes", "no", "_unknown_", "_silence_"]


@pytest.fixture(scope="module")
def engine() -> Iterator[StreamingEngine]:
    torch.manual_seed(0)  # weights that spike, whatever tests ran before in this process
    model = build_model("spiking-attention", dim=16, num_classes=4, num_heads=4, window=WINDOW)
    model = randomise_batchnorm(model, 3).eval()
    config = EngineConfig(max_sessions=8, window_hop_ms=HOP * 10.0)
    engine = StreamingEngine(model, {"labels": LABELS}, config)
    yield engine
    engine.close()


def audio(seconds: float, seed: int) -> np.ndarray:
    """Noise with tone bursts [n]: features that move, so the spikes do."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = np.sin(2 * np.pi * (300 + 700 * seed) * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)
    return (0.2 * tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def posteriors(events: list[Event]) -> np.ndarray:
    """The per-frame posteriors [T, K] of a session's ``Posteriors`` events."""
    chunks = [e for e in events if isinstance(e, Posteriors)]
    assert [c.frame for c in chunks] == list(np.cumsum([0] + [len(c.values) for c in chunks])[:-1])
    return np.concatenate([c.values for c in chunks])


@torch.inference_mode()
def expected(engine: StreamingEngine, x: np.ndarray) -> np.ndarray:
    """Posteriors [T, K] by the parallel form: at hop frame t (t % HOP == 0), the model on the
    window ending at t (left-padded with the pad value), held until the next hop."""
    feats = engine.fbank(torch.from_numpy(x)[None])[0]  # [T, F]
    T = feats.shape[0]
    padded = torch.cat(
        (feats.new_full((WINDOW - 1, feats.shape[1]), engine.served.pad_value), feats)
    )
    hops = list(range(0, T, HOP))
    windows = torch.stack([padded[t : t + WINDOW] for t in hops])  # [P, W, F]
    logits = engine.model(windows).double().numpy()  # [P, K]
    return engine.posteriors(logits[np.arange(T) // HOP])


def test_served_facts(engine: StreamingEngine) -> None:
    served = engine.served
    assert not served.streaming and served.lookahead_frames == 0
    assert (served.window_frames, served.hop_frames) == (WINDOW, HOP)
    assert (served.model_window_ms, served.hop_ms) == (320.0, 50.0)
    assert served.algorithmic_latency_ms == 25.0 + (HOP - 1) * 10.0
    assert engine.slab.pooling_frames == 1  # the window is the pooling


@pytest.mark.parametrize("chunk", [160, 1337, 16000])
def test_scores_at_each_hop_are_the_parallel_form_on_that_window(
    engine: StreamingEngine, chunk: int
) -> None:
    x = audio(1.5, 1)  # 148 frames: past the first full window
    session = engine.create_session(record_posteriors=True)
    events: list[Event] = []
    for i in range(0, x.size, chunk):
        events += session.accept(x[i : i + chunk])
    events += session.finish()
    session.close()
    got, want = posteriors(events), expected(engine, x)
    assert got.shape == want.shape == (148, 4)
    assert np.abs(got - want).max() <= 1e-5
    assert np.ptp(want, axis=0).max() > 1e-3  # the scores do move from hop to hop
    assert isinstance(events[-1], End) and events[-1].frames == 148


def test_batched_sessions_at_different_offsets_equal_each_alone(engine: StreamingEngine) -> None:
    """Sessions started at different times (so their hops fall on different steps and frames)
    batched in the same steps score as each alone; a reset session scores like a new one."""
    signals = [audio(1.2, seed) for seed in range(3)]
    alone = []
    for x in signals:
        session = engine.create_session(record_posteriors=True)
        alone.append(posteriors(session.accept(x)))
        session.close()
    sessions = [engine.create_session(record_posteriors=True) for _ in signals]
    sessions[2].accept(audio(0.33, 7))  # then reset: it must behave like a new session
    sessions[2].reset()
    got: list[list[Event]] = [[] for _ in signals]
    offsets = [0, 1130, 2770]  # samples each session is ahead of the others' start
    for i, x in enumerate(signals):
        sessions[i].push(x[: offsets[i]])
    for start in range(0, 20000, 1600):
        for i, x in enumerate(signals):
            sessions[i].push(x[offsets[i] + start : offsets[i] + start + 1600])
        while engine.ready_sessions:
            engine.step_ready()  # every ready session in one step
        for i, s in enumerate(sessions):
            got[i] += s.poll()
    for s in sessions:
        s.close()
    for mine, theirs in zip(got, alone, strict=True):
        assert np.abs(posteriors(mine) - theirs).max() <= 1e-5
