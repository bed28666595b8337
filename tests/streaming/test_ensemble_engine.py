"""An ensemble checkpoint served by the engine: its pooled posteriors are those of the members'
averaged pooled logits (log-odds averaged under a sigmoid, log-posteriors renormalised under a
softmax), and it detects like any checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from models import load_checkpoint, read_metadata, save_checkpoint
from models.ensemble_checkpoint import write_ensemble
from streaming.engine import EngineConfig, StreamingEngine
from streaming.session import Detection, Posteriors
from tests.streaming.tone_model import sequence

EVENTS = [("low", 0.5), ("high", 2.0)]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def served(path: Path, audio: np.ndarray, posterior: str) -> tuple[np.ndarray, list[str]]:
    """The engine's pooled posteriors [T, K] and detected keywords for ``audio``."""
    config = EngineConfig.from_metadata(
        read_metadata(path), runtime="torch", max_sessions=2, posterior=posterior
    )
    engine = StreamingEngine.from_checkpoint(path, config)
    try:
        session = engine.create_session(16000, record_posteriors=True)
        events = []
        for i in range(0, audio.size, 1600):
            events += session.accept(audio[i : i + 1600])
        events += session.finish()
        session.close()
    finally:
        engine.close()
    rows = np.concatenate([e.values for e in events if isinstance(e, Posteriors)])
    return rows, [e.keyword for e in events if isinstance(e, Detection)]


@pytest.mark.parametrize("posterior", ["sigmoid", "softmax"])
def test_the_served_ensemble_averages_the_members_pooled_logits(
    tone_checkpoint: Path, tmp_path: Path, posterior: str
) -> None:
    model, meta = load_checkpoint(tone_checkpoint)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a second member: the tone model, its head perturbed
        head = model.network[-1][-1]
        head.weight.add_(0.5 * torch.randn(head.weight.shape, generator=generator))
    other = save_checkpoint(tmp_path / "other.safetensors", model, meta)
    ensemble = tmp_path / "ensemble.safetensors"
    write_ensemble([tone_checkpoint, other], (0.7, 0.3), ensemble)
    audio = sequence(EVENTS, 3.0, seed=3)
    a, _ = served(tone_checkpoint, audio, posterior)
    b, _ = served(other, audio, posterior)
    e, found = served(ensemble, audio, posterior)
    assert a.shape == b.shape == e.shape and len(a) > 250
    if posterior == "sigmoid":
        expected = 1 / (1 + np.exp(-(0.7 * np.log(a / (1 - a)) + 0.3 * np.log(b / (1 - b)))))
    else:
        log = 0.7 * np.log(a) + 0.3 * np.log(b)
        expected = np.exp(log - log.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(e, expected, atol=1e-4)
    assert found == ["low", "high"]  # the tone model's bursts, still found
