"""Shared fixtures (keep this small): checkpoints for tests that serve a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tone_checkpoint(request: pytest.FixtureRequest) -> Path:
    """A tiny LMUFormer trained (a few seconds, once, cached) to detect tone bursts; see
    tests/streaming/tone_model.py for its labels and signals."""
    from tests.streaming.tone_model import VERSION, train_tone_model

    cache = getattr(request.config, "cache", None)
    if cache is not None:
        folder = Path(cache.mkdir("lmukws-tone-model"))
    else:  # -p no:cacheprovider
        folder = request.getfixturevalue("tmp_path_factory").mktemp("tone-model")
    path = folder / f"tone-v{VERSION}-torch{torch.__version__.split('+')[0]}.safetensors"
    if not path.is_file():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train_tone_model(path)
        finally:
            torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained spiking LMUFormer with 4 labels (seeded)."""
    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("spiking-lmuformer", dim=16, num_classes=4, num_embed_convs=2)
    path = tmp_path_factory.mktemp("ckpt") / "random.safetensors"
    return save_checkpoint(path, model, {"labels": ["yes", "no", "_unknown_", "_silence_"]})
