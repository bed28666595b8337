"""Shared fixtures (keep this small): checkpoints for tests that serve a model, and one ONNX
export cache for the whole run (servers started by tests inherit it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

pytest_plugins = ("tests.own_process",)  # tests marked own_process run in a child pytest
_TEMPORARY_CACHE = pytest.StashKey[str]()  # a cache folder made for this run alone


def pytest_configure(config: pytest.Config) -> None:
    """Exports of the streaming step (models.onnx_step) go to pytest's cache, so a run reuses
    the previous run's graphs (the cache key covers weights and model code)."""
    if "LMUKWS_CACHE_DIR" in os.environ:
        return
    cache = getattr(config, "cache", None)
    if cache is not None:
        os.environ["LMUKWS_CACHE_DIR"] = str(cache.mkdir("lmukws-cache"))
    else:  # -p no:cacheprovider: a folder for this run, removed at its end
        folder = tempfile.mkdtemp(prefix="lmukws-test-cache-")
        config.stash[_TEMPORARY_CACHE] = os.environ["LMUKWS_CACHE_DIR"] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's own cache folder (made only without pytest's cache)."""
    folder = config.stash.get(_TEMPORARY_CACHE, None)
    if folder is not None:
        os.environ.pop("LMUKWS_CACHE_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


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


def _random_checkpoint(name: str, folder: Path) -> Path:
    """A tiny untrained ``name`` model with 4 labels (seeded), saved in ``folder``."""
    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model(name, dim=16, num_classes=4, num_embed_convs=2)
    path = folder / f"random-{name}.safetensors"
    return save_checkpoint(path, model, {"labels": ["yes", "no", "_unknown_", "_silence_"]})


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained spiking LMUFormer with 4 labels (seeded)."""
    return _random_checkpoint("spiking-lmuformer", tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def random_spiking_lmu_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained spiking-lmu (no trained one is shipped yet) with 4 labels (seeded)."""
    return _random_checkpoint("spiking-lmu", tmp_path_factory.mktemp("ckpt"))
